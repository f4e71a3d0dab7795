"""``python -m index``: the index's command line (:mod:`index.cli`)."""

import os
import sys

from index.cli import main

try:
    sys.exit(main())
except BrokenPipeError:
    # `python -m index stats | head`: the reader left; that is not an error.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)
