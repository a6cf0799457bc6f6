"""`python -m rlto ...`: the same command line as the `rlto` console script."""

import sys

from rlto.cli import main

sys.exit(main())
