"""Former home of the `jaxdyn` command, kept so `python -m jaxdyn._cli ...` and
`from jaxdyn._cli import main` keep working; the command lives in `jaxdyn.cli`."""

from __future__ import annotations

import sys

from .cli import build_parser as build_parser, main as main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
