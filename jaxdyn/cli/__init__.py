"""The `jaxdyn` command line: `jaxdyn reproduce --list | <name> | all`, `simulate`, `stability`,
`statics`, `sweep`. One argument dialect for all of them (`jaxdyn.cli._args`); float64 is switched
on here, and figures are drawn with the Agg backend unless `MPLBACKEND` says otherwise.

Example:
    >>> jaxdyn.cli.main(["reproduce", "--list"])  # doctest: +ELLIPSIS
    000-fig1 ...
    0
"""

from __future__ import annotations

import argparse
import os
import sys

from . import _reproduce, _simulate, _stability, _statics, _sweep
from ._args import scenario_from_args as scenario_from_args

# each subcommand module provides add_parser(subparsers) (which sets `func`). Imported explicitly,
# so a broken one fails loudly at start-up instead of disappearing from the command.
SUBCOMMANDS = (_reproduce, _simulate, _stability, _sweep, _statics)


def build_parser() -> argparse.ArgumentParser:
    """The `jaxdyn` argument parser with every subcommand."""
    p = argparse.ArgumentParser(prog="jaxdyn", description=__doc__.split("\n\nExample")[0])
    p.add_argument("--no-cache", action="store_true",
                   help="do not use the persistent compilation cache (also: JAXDYN_NO_CACHE=1); "
                        "default folder $JAXDYN_CACHE_DIR or ~/.cache/jaxdyn/jax")
    sub = p.add_subparsers(dest="command", required=True)
    for m in SUBCOMMANDS:
        m.add_parser(sub)
    return p


def _use_cache(args) -> bool:
    return not (args.no_cache or os.environ.get("JAXDYN_NO_CACHE", "") not in ("", "0"))


def main(argv=None) -> int:
    """Run the `jaxdyn` command with the arguments `argv` (default `sys.argv[1:]`); returns the exit
    status."""
    # figures are written to files: a non-interactive backend unless the user chose one (the
    # library itself never switches backends)
    os.environ.setdefault("MPLBACKEND", "Agg")
    import jax

    jax.config.update("jax_enable_x64", True)
    args = build_parser().parse_args(argv)
    if _use_cache(args):
        from .._cache import enable_compilation_cache

        enable_compilation_cache(traces=True)
        # JAX never caches a program with host callbacks, and equinox's runtime checks are such
        # callbacks (in every diffrax solve). The command checks its inputs on the host before it
        # compiles, so it compiles those checks out, unless the user chose EQX_ON_ERROR.
        if "EQX_ON_ERROR" not in os.environ:
            _compile_out_runtime_checks()
    return args.func(args) or 0


def _compile_out_runtime_checks() -> None:
    # equinox reads EQX_ON_ERROR once, at import (which has happened by now), into this module
    # attribute, and looks it up at trace time; guarded, so a future equinox only loses the hits.
    import equinox._errors as eqx_errors

    if getattr(eqx_errors, "EQX_ON_ERROR", None) == "raise":
        eqx_errors.EQX_ON_ERROR = "nan"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
