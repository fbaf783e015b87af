"""``python -m optloom.benchmarks.gpu [OUTDIR] [--smoke] …``: the GPU check (see ``check``)."""
import sys

from .check import main

sys.exit(main())
