"""`jaxdyn sweep`: a learning-rate (and more) sweep written as a NetCDF dataset plus a phase diagram.

Examples:
    jaxdyn sweep --K 2 --M 2 --T 1,2 --Q0 0.1,0.2 --R0 1e-3 --eta 0.1:1.3:1024 --out sweep.nc
    jaxdyn sweep --config sweep.toml            # the same keys in a TOML (or JSON) file
    jaxdyn sweep ... --axis noise=0:0.3:4       # one more swept dimension

Grid syntax: `start:stop:num` (linspace), `geom:start:stop:num` (geomspace) or `a,b,c` (a list).
`--T`, `--Q0`: a comma list is a diagonal, a JSON nested list a full matrix; `--R0 x` is `x * I`
(K x M). Rerunning an interrupted command resumes it (finished chunks are kept in `<out>.parts/`).
With several devices (`--cpu-devices N` forces N CPU devices; GPUs are used automatically) the
sweep is sharded over all of them; `--distributed` calls `jax.distributed.initialize()` first
(one process per host, see docs/sweeps.md).
"""

from __future__ import annotations

import json
import pathlib


def _grid(spec):
    import numpy as np

    if isinstance(spec, (int, float)):
        return np.array([float(spec)])
    if isinstance(spec, (list, tuple)):
        return np.asarray(spec, float)
    if isinstance(spec, dict):
        fn = np.geomspace if spec.get("scale", "linear") in ("log", "geom") else np.linspace
        return fn(float(spec["start"]), float(spec["stop"]), int(spec["num"]))
    s = str(spec).strip()
    if s.startswith("geom:"):
        a, b, n = s[5:].split(":")
        return np.geomspace(float(a), float(b), int(n))
    if ":" in s:
        a, b, n = s.split(":")
        return np.linspace(float(a), float(b), int(n))
    return np.asarray([float(x) for x in s.split(",")], float)


def _matrix(spec, n, m=None, *, scale_identity=False):
    import numpy as np

    m = n if m is None else m
    if spec is None:
        return None
    if isinstance(spec, str) and spec.strip().startswith("["):
        spec = json.loads(spec)
    if isinstance(spec, (int, float)) or (isinstance(spec, str) and "," not in spec):
        x = float(spec)
        return x * np.eye(n, m) if scale_identity or n != m else x * np.eye(n)
    a = np.asarray([float(v) for v in spec.split(",")] if isinstance(spec, str) else spec, float)
    if a.ndim == 1:
        out = np.zeros((n, m))
        out[np.arange(len(a)), np.arange(len(a))] = a
        return out
    return a


def add_parser(subparsers):
    p = subparsers.add_parser("sweep", help="sweep eta (and more) and draw a phase diagram",
                              description=__doc__, formatter_class=_fmt())
    p.add_argument("--config", help="TOML or JSON file with any of the options below (CLI wins)")
    p.add_argument("--K", type=int)
    p.add_argument("--M", type=int)
    p.add_argument("--T", help="teacher overlaps: diagonal '1,2' or JSON matrix (default identity)")
    p.add_argument("--g", help="activation (relu, erf, linear, ...; default relu)")
    p.add_argument("--Q0", help="initial Q: diagonal '0.1,0.2' or JSON matrix (default 0.1*(1..K))")
    p.add_argument("--R0", help="initial R: a number x (x * I) or JSON matrix (default 1e-3)")
    p.add_argument("--eta", help="learning rates: start:stop:num | a,b,c (default 0.1:1.3:64)")
    p.add_argument("--alphas", help="recording times: geom:1e-2:1000:200 (default) or start:stop:num")
    p.add_argument("--axis", action="append", default=None, metavar="NAME=GRID",
                   help="another swept scalar scenario field, e.g. noise=0:0.3:4 (repeatable)")
    p.add_argument("--no-eta2", action="store_true", help="drop the eta^2 term (small-eta ODE)")
    p.add_argument("--i4", choices=["exact", "hermite"])
    p.add_argument("--rtol", type=float)
    p.add_argument("--atol", type=float)
    p.add_argument("--stop-tol", type=float, help="steady-state stop (see jaxdyn.sweep)")
    p.add_argument("--chunk-size", type=int)
    p.add_argument("--batch-size", type=int)
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
    import numpy as np

    import jaxdyn as jd

    cfg = _load_config(args.config) if args.config else {}
    opt = {k.replace("-", "_"): v for k, v in cfg.items()}
    for k, v in vars(args).items():
        if v is not None and v is not False and k not in ("func", "command", "config"):
            opt[k] = v
    K, M = int(opt.get("K", 2)), int(opt.get("M", opt.get("K", 2)))
    T = _matrix(opt.get("T"), M)
    g = opt.get("g", "relu")
    sc = jd.Scenario(K=K, M=M, T=T, g=g)
    Q0 = _matrix(opt.get("Q0"), K)
    if Q0 is None:
        Q0 = np.diag(0.1 * np.arange(1, K + 1))
    R0 = _matrix(opt.get("R0", 1e-3), K, M, scale_identity=True)
    op0 = jd.OrderParams(Q=Q0, R=R0)
    eta = _grid(opt.get("eta", "0.1:1.3:64"))
    alphas = _grid(opt.get("alphas", "geom:1e-2:1000:200"))
    axes = {}
    ax_spec = opt.get("axis") or opt.get("axes") or []
    if isinstance(ax_spec, dict):
        axes = {k: _grid(v) for k, v in ax_spec.items()}
    else:
        for a in ax_spec:
            name, _, spec = a.partition("=")
            axes[name.strip()] = _grid(spec)
    out = pathlib.Path(opt.get("out", "sweep.nc"))
    fig = pathlib.Path(opt.get("figure", out.with_suffix(".png")))
    kw = {}
    for k in ("i4", "rtol", "atol", "stop_tol", "chunk_size", "batch_size"):
        if opt.get(k) is not None:
            kw[k] = opt[k]
    eta2 = not (opt.get("no_eta2") or opt.get("eta2") is False)
    ds = jd.sweep(sc, op0, eta=eta, alphas=alphas, axes=axes or None, path=out, eta2=eta2,
                  overwrite=bool(opt.get("overwrite")), progress=not opt.get("no_progress"), **kw)
    if jax.process_index() == 0:
        from .figures.sweeps import REGIME_NAMES, plot_phase_diagram, regime_boundaries

        plot_phase_diagram(ds, fig, title=f"K={K}, M={M}, g={type(sc.g).__name__}, "
                                          f"{ds.sizes['eta']} eta values")
        reg = ds["regime"].values
        counts = {REGIME_NAMES[r]: int((reg == r).sum()) for r in REGIME_NAMES if (reg == r).any()}
        summary = {"out": str(out), "figure": str(fig), "points": int(reg.size), "regimes": counts,
                   "computed_chunks": int(ds.attrs.get("n_computed_chunks", 0)),
                   "devices": int(ds.attrs.get("n_devices", 0))}
        if ds["eps_g"].ndim == 2:
            summary["boundaries"] = regime_boundaries(ds)
        print(json.dumps(summary, default=str))
    return 0
