"""`python -m jaxdyn.cli ...` is the `jaxdyn` command."""

import sys

from . import main

sys.exit(main())
