"""``python -m optloom``: the ``optloom`` command."""
import sys

from .cli import main

sys.exit(main())
