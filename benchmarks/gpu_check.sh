#!/usr/bin/env bash
# The GPU check (issue 16): on a bare CUDA machine with this working tree, install what optloom
# needs from carried wheels, then within 8 minutes run the `cuda` tests and the GPU benchmark, and
# write gpu_check.json and gpu_check.md (plus gpu_check.log, parts.log, pytest-junit.xml) to
# OUTDIR (default: $OUT, else runs/gpu-check). Every part has its own timeout; a failing part is
# recorded and the next one runs. Method and the meaning of each number: docs/performance.md, "GPU".
#
#   bash benchmarks/gpu_check.sh [--smoke] [--budget S] [--only PART,...] [--skip PART,...] [OUTDIR]
#   make gpu-check [GPU_CHECK_ARGS="--smoke runs/gpu-smoke"]
#
# --smoke: the same parts on the CPU at toy sizes, eager backend (tests/test_gpu_check_smoke.py).
# Parts: machine pytest steps-adamw steps-muon train compile-adamw-cold compile-adamw-warm
#        compile-muon-cold compile-muon-warm steps-lion (run in this order, most wanted first).
#
# The device machine has torch, Triton and pytest but not lark or pydantic. The wheels travel in
# .whl/ (ignored by git). Fetch them once, on the development machine, in the repository root:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
#     lark==1.3.1 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
#     typing-extensions==4.16.0 typing-inspection==0.4.5
#
# The device run (the `device` tool's `run`): command "bash benchmarks/gpu_check.sh", carry [".whl"];
# the reports come back from $OUT. Leave the card's settings alone: this script only reads them.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
stamp() { echo "[$(date +%H:%M:%S)] gpu_check.sh: $*"; }

SMOKE=0
for a in "$@"; do [ "$a" = "--smoke" ] && SMOKE=1; done

if ! "$PY" -c "import lark, pydantic" 2>/dev/null; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    stamp "installing the carried wheels into /tmp/optloom-site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/optloom-site .whl/*.whl || { stamp "wheel install failed"; exit 3; }
    export PYTHONPATH="/tmp/optloom-site${PYTHONPATH:+:$PYTHONPATH}"
  else
    stamp "lark/pydantic missing and no .whl/ folder: see this script's header"; exit 3
  fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# the whole check stays inside 8 minutes (the orchestrator's own budget is 450 s; smoke 150 s)
LIMIT=480; [ $SMOKE = 1 ] && LIMIT=200
stamp "running the check with $PY (limit $LIMIT s)"
exec timeout -k 10 "$LIMIT" "$PY" -m optloom.benchmarks.gpu "$@"
