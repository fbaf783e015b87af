"""Test session setup. Under pytest-xdist (``make test`` runs two workers; tests are spread one by
one, except groups such as the distributed tests, which share one expensive spawn) each worker
uses one torch thread: two processes each running two threads on this 2-core machine slow small
ops by orders of magnitude."""
from __future__ import annotations

import os

import torch

# optimizers built without a backend run eager here (the library default is inductor, whose cold
# compiles take seconds each on this machine); the inductor tests name their backend
os.environ.setdefault("OPTLOOM_BACKEND", "eager")

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
