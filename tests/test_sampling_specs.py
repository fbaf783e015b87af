"""Properties of Drop-Muon (arXiv 2510.02239; no official code) and of its layer sampler
``sample_layers(order = "suffix")``, beyond the contract (tests/contract: agreement with
``R.DropMuon`` fed the documented draw, resume, training, compile): frozen layers stay bitwise
frozen, the sampler follows its documented draw and distribution."""
from __future__ import annotations

import math

import pytest
import torch

import optloom
from optloom.primitives import Ctx
from optloom.primitives.sampling import sample_layers
from optloom.primitives.streams import py_hash_stream
from tests.reference.draws import hash_stream, suffix_start
from tests.reference.frontier import suffix_active_set
from tests.spec_harness import MATRICES, SHAPES, SPECS, one_thread, params  # noqa: F401 (one_thread: autouse)


def test_drop_muon_frozen_layers_are_bitwise_frozen():
    """Inactive layers: weight AND momentum unchanged bitwise (no decay either, here λ = 0.1);
    active layers move; the bias (AdamW, not sampled) moves every step."""
    init = params(1)
    ps = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    opt = optloom.optimizer(f"{SPECS}/drop_muon.opt", list(ps.items()), lr=0.05, weight_decay=0.1,
                            ns_dtype="float32", seed=3)
    gen = torch.Generator().manual_seed(9)
    for t in range(1, 16):
        w0 = {k: p.detach().clone() for k, p in ps.items()}
        m0 = {k: opt.state[p]["momentum_buffer"].clone() for k, p in ps.items() if k in MATRICES and p in opt.state}
        for k, p in ps.items():
            p.grad = torch.randn(SHAPES[k], generator=gen)
        opt.step()
        active = suffix_active_set(MATRICES, suffix_start(t, len(MATRICES), seed=3))
        for k in MATRICES:
            mom = opt.state[ps[k]]["momentum_buffer"]
            if k in active:
                assert not torch.equal(ps[k].detach(), w0[k]), (t, k)
            else:
                assert torch.equal(ps[k].detach(), w0[k]), (t, k)
                assert torch.equal(mom, m0.get(k, torch.zeros_like(mom))), (t, k)
        assert not torch.equal(ps["bias"].detach(), w0["bias"])


@pytest.mark.parametrize("b", [1, 4, 7])
def test_suffix_sampler_distribution(b):
    """sample_layers(order="suffix"): the batched sampler equals its reference and the documented
    draw; every set is a non-empty contiguous suffix {s, …, b−1}; over N draws each start index
    appears, with counts within 5σ of N/b (σ = sqrt(N·(1/b)·(1−1/b)), the binomial spread of a
    uniform start); draws are constant within a period and change with the seed."""
    N = 1200
    ids = torch.arange(b) + 20
    group = tuple(int(i) for i in ids)
    counts = [0] * b
    for t in range(1, N + 1):
        c = Ctx(layout="stacked", param=torch.zeros(b), step=torch.tensor(float(t)), states={}, ids=ids, group=group)
        mask = sample_layers.fn(c, 0.25, "suffix", 1, 0)
        act = [j for j in range(b) if bool(mask[j])]
        s = suffix_start(t, b)
        assert act == list(range(s, b)), (t, act, s)
        for j in (0, b - 1):  # the per-parameter reference agrees (ends of the group)
            cj = Ctx(layout="single", param=torch.zeros(()), step=t, states={}, ids=group[j], group=group)
            assert bool(sample_layers.ref(cj, 0.25, "suffix", 1, 0)) == (j >= s)
        counts[s] += 1
    sigma = math.sqrt(N * (1 / b) * (1 - 1 / b))
    assert all(c > 0 for c in counts), counts
    assert all(abs(c - N / b) <= 5 * sigma + 1e-9 for c in counts), (counts, N / b, sigma)
    if b > 1:
        starts = [suffix_start(t, b, period=4) for t in range(1, 41)]
        assert all(len(set(starts[i:i + 4])) == 1 for i in range(0, 40, 4))
        assert [suffix_start(t, b, seed=1) for t in range(1, 41)] != [suffix_start(t, b) for t in range(1, 41)]


def test_the_primitives_stream_is_the_documented_one():
    """The stream restated in tests/reference/draws.py (the contract's Drop-Muon and low-rank Muon
    oracles draw from it) is the one the primitives compute."""
    for seed, step, pid in [(0, 0, 0), (3, 7, 2), (11, 123, 5), (2**31, 2**33, 7)]:
        assert py_hash_stream(seed, step, pid, 9) == hash_stream(seed, step, pid, 9)
