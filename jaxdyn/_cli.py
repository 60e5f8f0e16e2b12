"""The `jaxdyn` command line: `jaxdyn reproduce --list | <name> | all`, and the subcommands that
other modules register (`simulate`, `stability`, `sweep`). Float64 is switched on here."""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import _cli_simulate, _cli_stability, _cli_statics, _cli_sweep

# subcommand modules: each provides add_parser(subparsers) -> parser, and run(args) (or sets
# `func` on its parser itself). Imported explicitly: a missing one is an error, not a silence.
_SUBCOMMANDS = [_cli_simulate, _cli_stability, _cli_sweep, _cli_statics]


def _reproduce(args) -> int:
    from ._reproduce import list_reproductions, reproduce

    if args.list or not args.name:
        for r in list_reproductions():
            print(f"{r.name:24s} {r.description}")
        return 0
    names = args.name
    for name in names:
        numbers = reproduce(name, args.out, fast=args.fast)
        if name != "all":
            numbers = {name: numbers}
        for n, num in numbers.items():
            print(f"[{n}] wrote {args.out}/{n}.json ({num.get('wall_time_s', '?')} s)")
            if args.verbose:
                print(json.dumps({k: v for k, v in num.items() if k != "name"}, indent=1,
                                 default=str)[:2000])
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jaxdyn", description=__doc__)
    p.add_argument("--no-cache", action="store_true",
                   help="do not use the persistent compilation cache (also: JAXDYN_NO_CACHE=1); "
                        "default folder $JAXDYN_CACHE_DIR or ~/.cache/jaxdyn/jax")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("reproduce", help="reproduce the papers' figures and numbers")
    r.add_argument("name", nargs="*", help="reproduction name(s), or 'all'")
    r.add_argument("--list", action="store_true", help="list the reproductions")
    r.add_argument("--out", default="out", help="output folder (default: out)")
    r.add_argument("--fast", action="store_true", help="small workload (smoke test)")
    r.add_argument("-v", "--verbose", action="store_true")
    r.set_defaults(func=_reproduce)
    for m in _SUBCOMMANDS:
        sp = m.add_parser(sub)
        if sp is not None and hasattr(m, "run") and sp.get_default("func") is None:
            sp.set_defaults(func=m.run)
    return p


def _use_cache(args) -> bool:
    return not (args.no_cache or os.environ.get("JAXDYN_NO_CACHE", "") not in ("", "0"))


def main(argv=None) -> int:
    # figures are written to files: a non-interactive backend unless the user chose one (the
    # library itself never switches backends)
    os.environ.setdefault("MPLBACKEND", "Agg")
    import jax

    jax.config.update("jax_enable_x64", True)
    args = build_parser().parse_args(argv)
    if _use_cache(args):
        from ._cache import enable_compilation_cache

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
