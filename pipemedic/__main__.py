"""``python -m pipemedic``: the same command line as ``pipemedic``."""

import sys

from pipemedic.cli import main

sys.exit(main())
