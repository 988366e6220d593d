"""`python -m llmbench.cli`: the `llmbench` command."""

import sys

from . import main

sys.exit(main())
