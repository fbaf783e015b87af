"""optloom benchmark harness: times compiled specs against torch.optim on the same parameters.

Run it as ``optloom bench SPEC...`` (or ``python -m benchmarks SPEC...`` from the repository root);
see docs/performance.md for the method. Modules:

- ``machine``: device, thread count, streaming bandwidth and matmul throughput of this machine
- ``paramsets``: the parameter shapes the steps run over (GPT-2-shaped, many small tensors, Muon)
- ``baselines``: torch.optim baselines per spec and a foreach Lion
- ``timing``: interleaved (A B A B …) step timing with fresh random gradients, medians
- ``steps``: one (spec, parameter set) case — candidates, ratios, bandwidth/matmul floors, memory
- ``memory``: persistent state bytes and a step's peak extra memory
- ``compile_time``: cold / warm-second-process compile times in subprocesses, scaling table
- ``runner``: the whole run as one JSON-able report; ``report``: text and markdown tables;
  ``targets``: the issue's targets checked against a report
"""
