"""`jaxdyn statics`: equilibrium branches and the specialisation transition of paper 002.

Writes `<out>/statics_K<K>_<act>.nc` (an xarray Dataset: one `branch` dimension with the labels
unspecialised / specialised / anti, a `point` dimension along each branch; variables alpha, R,
S, C, eps_g, beta_f, min_eig_ss, stable, converged), `<out>/statics_K<K>_<act>.json` (the
transition with its tolerances) and a phase-diagram figure `<out>/statics_K<K>_<act>.png`.

Examples:
    jaxdyn statics --K 5 --g erf --alpha-max 90
    jaxdyn statics --K 10 --g relu --alpha-max 20 --out out
"""

from __future__ import annotations

import argparse
import json
import pathlib

from ._args import get, renamed


def add_parser(subparsers):
    p = subparsers.add_parser("statics", help="paper 002 equilibrium branches and transitions",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    _arguments(p)
    p.set_defaults(func=run)
    return p


def _arguments(p):
    p.add_argument("--K", type=int, default=2, help="hidden units (K = M), >= 2")
    p.add_argument("--g", help="activation: relu (default), erf (= the paper's 1+erf), tanh, ...")
    renamed(p, "--activation", "--g", "g")
    p.add_argument("--alpha-max", type=float, default=None,
                   help="largest alpha shown (default: 3 alpha_inst, at most 300)")
    p.add_argument("--n-alpha", type=int, default=300, help="points of the unspecialised branch")
    p.add_argument("--out", default="out", help="output folder (default: out)")
    p.add_argument("--no-figure", action="store_true")


def run(args) -> int:
    import jax.numpy as jnp
    import numpy as np
    import xarray as xr

    import jaxdyn as jd

    jd.enable_x64()
    act = get(args, "g")
    if args.K < 2:
        raise SystemExit("jaxdyn statics: --K must be >= 2 (K = 1: jaxdyn.single_unit)")
    if args.alpha_max is not None and not args.alpha_max > 0:
        raise SystemExit("jaxdyn statics: --alpha-max must be > 0")
    g = act
    tr = jd.specialisation_transition(K=args.K, g=g)
    amax = args.alpha_max or min(3 * tr.alpha_inst, 300.0)
    bu = jd.unspecialised_branch(K=args.K, g=g, alphas=jnp.linspace(1e-3, amax, args.n_alpha))
    bs = jd.specialised_branch(K=args.K, g=g, transition=tr)
    ba = jd.specialised_branch(K=args.K, g=g, kind="anti", transition=tr)
    names = ["unspecialised", "specialised", "anti"]
    n = max(len(np.asarray(b.alpha)) for b in (bu, bs, ba))
    data = {}
    for key in ("alpha", "R", "S", "C", "eps_g", "beta_f", "min_eig_ss", "converged"):
        arr = np.full((3, n), np.nan)
        for i, b in enumerate((bu, bs, ba)):
            v = np.asarray(getattr(b, key), float)
            arr[i, : v.size] = v
        data[key] = (("branch", "point"), arr)
    stable = data["min_eig_ss"][1] > 0
    stable[0] = data["alpha"][1][0] < tr.alpha_inst
    data["stable"] = (("branch", "point"), stable)
    ds = xr.Dataset(data, coords={"branch": names, "point": np.arange(n)},
                    attrs={"K": args.K, "activation": str(g), "convention":
                           "paper 002: K = M, outputs 1/sqrt(K), Q_ii = 1, T = I; beta f = alpha K eps_g - s",
                           **{k: (json.dumps(v) if isinstance(v, (list, bool)) else v)
                              for k, v in tr.as_dict().items()}})
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"statics_K{args.K}_{act}"
    ds.to_netcdf(f"{stem}.nc", engine="netcdf4")
    (pathlib.Path(f"{stem}.json")).write_text(json.dumps(tr.as_dict(), indent=1))
    print(f"K = {args.K}, {act}:")
    for k in ("alpha_inst", "alpha_s", "alpha_c", "jump"):
        print(f"  {k:10s} = {getattr(tr, k):.12f}")
    print(f"  continuous = {tr.continuous}; tolerances inst/s/c = {tr.tol_inst:.1e}/{tr.tol_s:.1e}/{tr.tol_c:.1e}")
    if not args.no_figure:
        import matplotlib.pyplot as plt

        fig, axs = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
        for i, (name, c) in enumerate(zip(names, ("k", "C0", "C3"))):
            a = data["alpha"][1][i]
            m = (a <= amax) & (data["converged"][1][i] > 0)
            st = data["stable"][1][i] & m
            for ax, key in zip(axs, ("R", "C", "eps_g")):
                y = data[key][1][i]
                ax.plot(a[st], y[st], color=c, label=f"{key} {name}" if key != "R" else f"R {name}")
                ax.plot(a[m & ~st], y[m & ~st], ".", color=c, ms=1)
                if key == "R" and name != "unspecialised":
                    ax.plot(a[st], data["S"][1][i][st], color=c, ls="--", label=f"S {name}")
        for ax, lab in zip(axs, ("R, S", "C", r"$\epsilon_g$")):
            for k, ls in (("alpha_s", ":"), ("alpha_c", "--"), ("alpha_inst", "-.")):
                ax.axvline(getattr(tr, k), color="0.5", ls=ls, lw=0.8)
            ax.set_xlabel(r"$\alpha$")
            ax.set_ylabel(lab)
            ax.legend(fontsize=6)
        axs[0].set_title(f"K={args.K} {act}: alpha_s={tr.alpha_s:.4f} (:), "
                         f"alpha_c={tr.alpha_c:.4f} (--), alpha_inst={tr.alpha_inst:.4f} (-.)", fontsize=8)
        fig.savefig(f"{stem}.png", dpi=110)
        plt.close(fig)
    print(f"wrote {stem}.nc, .json" + ("" if args.no_figure else ", .png"))
    return 0
