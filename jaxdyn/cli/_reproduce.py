"""`jaxdyn reproduce --list | <name>... | all`: the registered reproductions of the papers."""

from __future__ import annotations

import json


def add_parser(subparsers):
    r = subparsers.add_parser("reproduce", help="reproduce the papers' figures and numbers",
                              description=__doc__)
    r.add_argument("name", nargs="*", help="reproduction name(s), or 'all'")
    r.add_argument("--list", action="store_true", help="list the reproductions")
    r.add_argument("--out", default="out", help="output folder (default: out)")
    r.add_argument("--fast", action="store_true", help="small workload (smoke test)")
    r.add_argument("-v", "--verbose", action="store_true")
    r.set_defaults(func=run)
    return r


def run(args) -> int:
    # deferred: the registry imports every figure module (and jax arrays need x64 on first)
    from .._reproduce import list_reproductions, reproduce

    if args.list or not args.name:
        for r in list_reproductions():
            print(f"{r.name:24s} {r.description}")
        return 0
    for name in args.name:
        numbers = reproduce(name, args.out, fast=args.fast)
        if name != "all":
            numbers = {name: numbers}
        for n, num in numbers.items():
            print(f"[{n}] wrote {args.out}/{n}.json ({num.get('wall_time_s', '?')} s)")
            if args.verbose:
                print(json.dumps({k: v for k, v in num.items() if k != "name"}, indent=1,
                                 default=str)[:2000])
    return 0
