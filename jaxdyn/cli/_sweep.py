"""`jaxdyn sweep`: a learning-rate (and more) sweep written as a NetCDF dataset plus a phase diagram.

Examples:
    jaxdyn sweep --K 2 --M 2 --T 1,2 --Q0 0.1,0.2 --R0 1e-3 --eta 0.1:1.3:1024 --out sweep.nc
    jaxdyn sweep --config sweep.toml            # the same keys in a TOML (or JSON) file
    jaxdyn sweep ... --axis noise=0:0.3:4       # one more swept dimension

Grid syntax: `start:stop:num` (linspace), `geom:start:stop:num` (geomspace) or `a,b,c` (a list).
`--T`, `--Q0`, `--R0`: a number `x` is `x * I`, a comma list a diagonal, a JSON nested list a full
matrix (the dialect of every `jaxdyn` subcommand). A config file uses the same keys and values. Rerunning an interrupted command resumes it (finished chunks are kept in `<out>.parts/`).
With several devices (`--cpu-devices N` forces N CPU devices; GPUs are used automatically) the
sweep is sharded over all of them; `--distributed` calls `jax.distributed.initialize()` first
(one process per host, see docs/sweeps.md).
"""

from __future__ import annotations

import json
import pathlib

from ._args import (init_arguments, init_from_args, ode_arguments, ode_options, parse_grid,
                    scenario_arguments, scenario_from_args)


def add_parser(subparsers):
    p = subparsers.add_parser("sweep", help="sweep eta (and more) and draw a phase diagram",
                              description=__doc__, formatter_class=_fmt())
    p.add_argument("--config", help="TOML or JSON file with any of the options below (CLI wins)")
    scenario_arguments(p, extras=False)
    init_arguments(p)
    p.add_argument("--eta", help="learning rates: start:stop:num | a,b,c (default 0.1:1.3:64)")
    p.add_argument("--alphas", help="recording times: geom:1e-2:1000:200 (default) or start:stop:num")
    p.add_argument("--axis", action="append", default=None, metavar="NAME=GRID",
                   help="another swept scalar scenario field, e.g. noise=0:0.3:4 (repeatable)")
    ode_arguments(p)
    p.add_argument("--rtol", type=float)
    p.add_argument("--atol", type=float)
    p.add_argument("--stop-tol", type=float, help="steady-state stop (see jaxdyn.sweep)")
    p.add_argument("--chunk-size", type=int)
    p.add_argument("--batch-size", type=int, help="points per vmapped batch (see jaxdyn.sweep)")
    p.add_argument("--cpu-devices", type=int, help="force this many CPU devices (shards the sweep)")
    p.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() first (multi-host; one process per host)")
    p.add_argument("--out", help="dataset path (default sweep.nc)")
    p.add_argument("--figure", help="phase-diagram path (default: <out> with .png)")
    p.add_argument("--overwrite", action="store_true", help="replace a different sweep at --out")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
    return p


def _fmt():
    import argparse

    return argparse.RawDescriptionHelpFormatter


def _load_config(path) -> dict:
    path = pathlib.Path(path)
    text = path.read_text()
    if path.suffix == ".json":
        return json.loads(text)
    import tomllib

    return tomllib.loads(text)


def run(args) -> int:
    import jax

    if args.distributed:
        jax.distributed.initialize()
    if args.cpu_devices:
        jax.config.update("jax_num_cpu_devices", int(args.cpu_devices))
    jax.config.update("jax_enable_x64", True)

    import jaxdyn as jd

    cfg = _load_config(args.config) if args.config else {}
    for k, v in cfg.items():  # the config fills what the command line leaves out
        k = k.replace("-", "_")
        if getattr(args, k, None) in (None, False):
            setattr(args, k, v)
    sc = scenario_from_args(args)
    op0 = init_from_args(args, sc)
    K, M = sc.K, sc.M
    eta = parse_grid(args.eta if args.eta is not None else "0.1:1.3:64", name="--eta")
    alphas = parse_grid(args.alphas if args.alphas is not None else "geom:1e-2:1000:200",
                        name="--alphas")
    axes = {}
    ax_spec = args.axis or getattr(args, "axes", None) or []
    if isinstance(ax_spec, dict):
        axes = {k: parse_grid(v, name=k) for k, v in ax_spec.items()}
    else:
        for a in ax_spec:
            name, _, spec = a.partition("=")
            axes[name.strip()] = parse_grid(spec, name=f"--axis {name}")
    out = pathlib.Path(args.out or "sweep.nc")
    fig = pathlib.Path(args.figure or out.with_suffix(".png"))
    kw = {k: getattr(args, k) for k in ("rtol", "atol", "stop_tol", "chunk_size", "batch_size")
          if getattr(args, k, None) is not None}
    kw.update(ode_options(args))
    ds = jd.sweep(sc, op0, eta=eta, alphas=alphas, axes=axes or None, path=out,
                  overwrite=bool(args.overwrite), progress=not args.no_progress, **kw)
    if jax.process_index() == 0:
        # deferred: matplotlib and the figure modules only on the host that draws
        from ..figures import save
        from ..figures.sweeps import REGIME_NAMES, plot_phase_diagram, regime_boundaries

        save(plot_phase_diagram(ds, title=f"K={K}, M={M}, g={type(sc.g).__name__}, "
                                          f"{ds.sizes['eta']} eta values"), fig)
        reg = ds["regime"].values
        counts = {REGIME_NAMES[r]: int((reg == r).sum()) for r in REGIME_NAMES if (reg == r).any()}
        summary = {"out": str(out), "figure": str(fig), "points": int(reg.size), "regimes": counts,
                   "computed_chunks": int(ds.attrs.get("n_computed_chunks", 0)),
                   "devices": int(ds.attrs.get("n_devices", 0))}
        if ds["eps_g"].ndim == 2:
            summary["boundaries"] = regime_boundaries(ds)
        print(json.dumps(summary, default=str))
    return 0
