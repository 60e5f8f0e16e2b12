"""`python -m jaxdyn.cli ...` is the `jaxdyn` command."""

import sys

from . import main

if __name__ == "__main__":  # importing this module (e.g. to list the package) runs nothing
    sys.exit(main())
