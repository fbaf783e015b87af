"""On-disk cache of compiled whole steps: a second process loads the step instead of compiling it.

Without it, a second process still runs Dynamo on the whole-step graph and looks up AOTAutograd's
and Inductor's caches (seconds for the GPT-2-small set). With it, the compiled step (Inductor's
output code and AOTAutograd's wrappers, bundled by ``torch.compile(...).aot_compile``) is one file,
loaded with ``torch.compiler.load_compiled_function``: no Dynamo tracing, no AOTAutograd.

**Key.** The file name is a SHA-256 of everything the compiled code depends on:

- the whole step itself: the generated Python code of every bucket graph (the lowered aten ops
  with every structural value baked in) and the bytes of any tensor constant in them. Nothing
  about the spec is trusted: an edited spec, primitive or lowering that changes one op or one
  constant changes the code, hence the key;
- the inputs: shape, stride, dtype, device of each, and which inputs share storage;
- the environment: torch and Python versions, the CPU's vector ISA, the thread count, Inductor's
  portable config and the compile options, and this module's ``FORMAT``.

Files are written atomically (temporary file, then ``os.replace``) with a header holding the
SHA-256 of the payload. A file whose header, checksum or contents do not load is reported with a
warning, deleted, and the step is compiled again (then saved again). Loaded steps keep Dynamo's
serializable guards (tensor shapes, dtypes, strides, duplicate inputs); a guard failure also falls
back to compiling.

**Where.** ``OPTLOOM_CACHE_DIR`` if set, else ``optloom/`` inside Inductor's cache directory
(``TORCHINDUCTOR_CACHE_DIR``, default ``/tmp/torchinductor_<user>``), so that clearing Inductor's
cache clears this one too. ``OPTLOOM_COMPILE_CACHE=0`` disables it. The files are pickles: the
cache directory must be as trusted as Inductor's (which also holds code that is executed).
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.fx as fx

FORMAT = 1
MAGIC = b"OPTLOOM-STEP\n"
log = logging.getLogger(__name__)

# what happened to each whole step this process built: "loaded", "saved", "compiled" (cache off or
# not serializable), "recompiled" (a bad file was replaced). Read by tests and benchmarks.
events: list[str] = []
# seconds spent compiling whole steps ahead of time (Dynamo + AOTAutograd + Inductor + C++ build) and
# loading them from the cache, in this process (a plain torch.compile fallback shows in Dynamo's timers)
seconds: dict[str, float] = {"compile": 0.0, "load": 0.0}


def enabled() -> bool:
    return os.environ.get("OPTLOOM_COMPILE_CACHE", "1").lower() not in ("0", "false", "off", "no")


def cache_dir() -> Path:
    env = os.environ.get("OPTLOOM_CACHE_DIR")
    if env:
        return Path(env)
    from torch._inductor.runtime.cache_dir_utils import cache_dir as inductor_cache_dir

    return Path(inductor_cache_dir()) / "optloom"


def _hash_tensor(h: Any, t: torch.Tensor) -> None:
    h.update(repr((tuple(t.shape), t.dtype, str(t.device))).encode())
    h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def graph_fingerprint(gm: fx.GraphModule) -> str:
    """Code of a GraphModule and all its submodules, plus the bytes of tensor constants."""
    h = hashlib.sha256()
    for name, mod in sorted(gm.named_modules(), key=lambda kv: kv[0]):
        if isinstance(mod, fx.GraphModule):
            h.update(name.encode() + b"\0" + mod.code.encode())
            for node in mod.graph.nodes:
                if node.op == "get_attr":
                    value = getattr(mod, str(node.target), None)
                    h.update(str(node.target).encode())
                    if isinstance(value, torch.Tensor):
                        _hash_tensor(h, value)
                    else:
                        h.update(repr(value).encode())
    return h.hexdigest()


def input_signature(args: Sequence[Any]) -> tuple:
    """Shape, stride, dtype, device of each input and which inputs share storage (the compiled
    code assumes the aliasing it was compiled with)."""
    first: dict[tuple, int] = {}
    out = []
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor):
            where = (a.untyped_storage().data_ptr(), str(a.device))
            alias = first.setdefault(where, i)
            out.append((tuple(a.shape), a.stride(), a.storage_offset(), str(a.dtype), str(a.device), alias))
        else:
            out.append(("value", repr(a)))
    return tuple(out)


def _environment(options: dict[str, Any]) -> str:
    try:
        from torch._inductor import config as inductor_config

        portable = repr(sorted(inductor_config.save_config_portable().items()))
    except Exception:  # pragma: no cover - inductor internals moved
        portable = "?"
    return repr((FORMAT, torch.__version__, sys.version, torch.backends.cpu.get_cpu_capability(),
                 torch.get_num_threads(), sorted(options.items()), portable))


def key(gm: fx.GraphModule, args: Sequence[Any], options: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for part in (graph_fingerprint(gm), repr(input_signature(args)), _environment(options)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _guard_filter(entries: Sequence[Any]) -> list[bool]:
    """Keep the guards that can be saved and that speak about the inputs (tensor properties,
    duplicate inputs); drop those on the GraphModule object itself, which differs per process."""
    from torch._dynamo.guards import CheckFunctionManager

    bad = set(CheckFunctionManager.UNSUPPORTED_SERIALIZATION_GUARD_TYPES)
    return [not (e.is_global or e.guard_type in bad or set(e.derived_guard_types) & bad
                 or re.search(r"\bself\b", e.name)) for e in entries]


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise ValueError("not an optloom compiled step (bad header)")
    digest, payload = data[len(MAGIC): len(MAGIC) + 64], data[len(MAGIC) + 65:]
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        raise ValueError("checksum mismatch (truncated or corrupted file)")
    return payload


def _write(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def compile_step(gm: fx.GraphModule, options: dict[str, Any]) -> Callable[..., Any]:
    """A callable running ``gm(*args)`` compiled by Inductor: loaded from the cache when a file
    for this graph, these inputs and this environment exists, else compiled (and saved)."""
    state: dict[str, Any] = {}

    def plain() -> Callable[..., Any]:
        return torch.compile(gm, backend="inductor", fullgraph=True, dynamic=False, options=options)

    def first_call(args: tuple) -> Callable[..., Any]:
        if not enabled():
            events.append("compiled")
            return plain()
        try:
            path = cache_dir() / f"step-{key(gm, args, options)}.bin"
        except Exception as e:  # noqa: BLE001 - an unhashable constant: no cache for this step
            log.info("optloom: no compile-cache key for this step (%s: %s)", type(e).__name__, e)
            events.append("compiled")
            return plain()
        bad = False
        if path.exists():
            try:
                t0 = time.perf_counter()
                loaded = torch.compiler.load_compiled_function(io.BytesIO(_read(path)))
                if not loaded.guard_check(gm, *args):
                    raise ValueError("its guards reject these inputs")
                seconds["load"] += time.perf_counter() - t0
                events.append("loaded")
                return lambda *a: loaded(gm, *a)
            except Exception as e:  # noqa: BLE001 - any failure: compile again
                warnings.warn(f"optloom: ignoring compiled-step cache file {path} ({type(e).__name__}: {e}); "
                              "compiling the step again", RuntimeWarning, stacklevel=4)
                path.unlink(missing_ok=True)
                bad = True
        try:
            t0 = time.perf_counter()
            fn = _aot_compile(gm, args, options)
            seconds["compile"] += time.perf_counter() - t0
        except Exception as e:  # noqa: BLE001 - not capturable this way: plain torch.compile
            log.info("optloom: whole step not saved to the compile cache (%s: %s)", type(e).__name__, e)
            events.append("compiled")
            return plain()
        try:
            from torch._dynamo.aot_compile import AOTCompiledFunction

            _write(path, AOTCompiledFunction.serialize(fn).serialized_data)
            events.append("recompiled" if bad else "saved")
        except Exception as e:  # noqa: BLE001 - unwritable directory, unpicklable constant...
            warnings.warn(f"optloom: could not save the compiled step to {path} ({type(e).__name__}: {e})",
                          RuntimeWarning, stacklevel=4)
            events.append("compiled")
        return lambda *a: fn(gm, *a)

    def run(*args: Any) -> Any:
        # Dynamo folds an input passed twice (a 0-d hyperparameter shared by buckets of one param
        # group) into one: the compiled code is only valid for the same pattern of repeats
        first: dict[int, int] = {}
        sig = tuple(first.setdefault(id(a), i) for i, a in enumerate(args))
        fn = state.get(sig)
        if fn is None:
            fn = state[sig] = first_call(args)
        return fn(*args)

    return run


def _aot_compile(gm: fx.GraphModule, args: tuple, options: dict[str, Any]) -> Any:
    compiled = torch.compile(gm.forward, backend="inductor", fullgraph=True, dynamic=False,
                             options={**options, "guard_filter_fn": _guard_filter})
    from torch._dynamo.exc import TensorifyScalarRestartAnalysis

    for _ in range(3):  # Dynamo restarts its analysis once when it specializes a scalar
        try:
            return compiled.aot_compile((tuple(args), {}))
        except TensorifyScalarRestartAnalysis:
            continue
    raise RuntimeError("Dynamo kept restarting its analysis")
