"""The GPU check: the ``cuda`` tests and the benchmark on a CUDA card, in one bounded run
(``benchmarks/gpu_check.sh`` or ``make gpu-check``; ``--smoke`` on the CPU). docs/performance.md,
"GPU", says what each number means. Modules:

- ``check``: the orchestrator — parts as subprocesses with their own timeouts inside one budget,
  progress lines, ``gpu_check.json`` / ``gpu_check.md`` rewritten after every part
- ``parts``: the benchmark parts (``machine``, ``steps-adamw``, ``steps-lion``, ``steps-muon``,
  ``train``), each a process that writes its JSON as it goes
- ``peaks``: the measured ceilings (copy bandwidth, matmul per dtype) of the card
- ``cases``: one spec on one parameter set against torch's optimizers, with a CUDA-graph variant
  and the static cost model (``optloom.lowering.cost``) next to the measured step
- ``compile_probe``: first step in a fresh process (cold, then warm from the cache)
- ``train_share``: forward + backward of GPT-2-small against the optimizer step
- ``paramsets``: the CPU benchmark's sets plus ``gpt2-1b`` and ``gpt2-nano``
- ``report``: markdown and the targets of issue 16
"""
