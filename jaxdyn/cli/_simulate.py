"""`jaxdyn simulate`: SGD simulations averaged over seeds, written as JSON + NPZ, and a comparison
plot against `jaxdyn.integrate` (nominal start; `--matched` adds the ODE started from each seed's
measured overlaps at alpha = 2 / eta).

Example:
    jaxdyn simulate --K 2 --M 2 --T 1,2 --Q0 0.1,0.2 --R0 1e-3 --eta 1 --N 1000 \
        --seeds 10 --alpha-max 200 --out out/sim

Matrices (`--T`, `--Q0`, `--R0`): a number (x I), a comma list (diagonal) or a JSON nested list.
"""

from __future__ import annotations

import argparse
import json
import pathlib

from ._args import (get, init_arguments, init_from_args, ode_arguments, ode_options, renamed,
                    scenario_arguments, scenario_from_args)


def add_parser(subparsers):
    p = subparsers.add_parser("simulate", help="online SGD simulations vs the ODE",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    scenario_arguments(p)
    init_arguments(p)
    p.add_argument("--eta", type=float, default=1.0)
    renamed(p, "--batch-size", "--minibatch", "minibatch", type=int)
    p.add_argument("--N", type=int, default=1000, help="input dimension")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--alpha-max", type=float, default=100.0)
    p.add_argument("--n-records", type=int, default=100, help="recording times (log-spaced from 0.01)")
    p.add_argument("--linear-alpha", action="store_true", help="linearly spaced recording times")
    p.add_argument("--float64", action="store_true", help="simulate in float64 (default float32)")
    ode_arguments(p)
    p.add_argument("--matched", action="store_true", help="also the per-seed matched-start ODE")
    p.add_argument("--n-test", type=int, default=0, help="also a test-set error on this many inputs")
    p.add_argument("--out", default="out/simulate", help="output folder")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    # deferred: x64 is switched on (by `main`) before jaxdyn is imported, and `--help` stays quick
    import jax.numpy as jnp
    import numpy as np

    import jaxdyn as jd

    from ..figures.simulations import plot_compare, pyplot

    sc = scenario_from_args(args)
    op0 = init_from_args(args, sc)
    K, M = sc.K, sc.M
    T = np.asarray(sc.T)
    if args.linear_alpha:
        alphas = np.linspace(0.0, args.alpha_max, args.n_records)
    else:
        alphas = np.unique(np.concatenate(
            [[0.0], np.geomspace(min(1e-2, args.alpha_max), args.alpha_max, args.n_records - 1)]))
    g = get(args, "g")
    sim = jd.simulate(sc, op0, eta=args.eta, N=args.N, alphas=alphas, seeds=args.seeds,
                      dtype=jnp.float64 if args.float64 else jnp.float32, n_test=args.n_test)
    ode = ode_options(args)
    eta2 = ode["eta2"]
    tr = jd.integrate(sc, op0, eta=args.eta, alphas=sim.alpha, throw=False, **ode)
    Qs, Rs, perms = jd.align_units(sim.Q, sim.R, np.asarray(tr.R[-1]))
    d = dict(alpha=np.asarray(sim.alpha), Q=Qs, R=Rs, eps_g=np.asarray(sim.eps_g),
             ode_Q=np.asarray(tr.Q), ode_R=np.asarray(tr.R), ode_eps_g=np.asarray(tr.eps_g))
    if args.matched:
        am, mQ, mR, mE = jd.matched_theory(sc, sim, **ode)
        mQ, mR, _ = jd.align_units(mQ, mR, np.asarray(tr.R[-1]))
        d.update(m_alpha=np.asarray(am), m_Q=mQ, m_R=mR, m_eps_g=np.asarray(mE))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arrays = dict(d, perms=perms, Q_raw=np.asarray(sim.Q), R_raw=np.asarray(sim.R),
                  Q_mean=Qs.mean(0), Q_std=Qs.std(0, ddof=1) if args.seeds > 1 else 0 * Qs[0],
                  R_mean=Rs.mean(0), R_std=Rs.std(0, ddof=1) if args.seeds > 1 else 0 * Rs[0],
                  eps_g_mean=d["eps_g"].mean(0),
                  eps_g_std=d["eps_g"].std(0, ddof=1) if args.seeds > 1 else 0 * d["eps_g"][0])
    if sim.eps_test is not None:
        arrays["eps_test"] = np.asarray(sim.eps_test)
    np.savez(out / "simulate.npz", **arrays)
    summary = {
        "scenario": {"K": K, "M": M, "T_diag": np.diag(T).tolist(), "activation": g,
                     "teacher_activation": args.g_teacher or g,
                     "noise": float(sc.noise), "weight_decay": float(sc.weight_decay),
                     "batch_size": int(sc.batch_size)},
        "Q0_diag": np.diag(np.asarray(op0.Q)).tolist(), "R0": np.asarray(op0.R).tolist(), "eta": args.eta, "N": args.N, "seeds": args.seeds,
        "dtype": "float64" if args.float64 else "float32", "eta2": eta2,
        "alpha": d["alpha"].tolist(),
        "eps_g_mean": arrays["eps_g_mean"].tolist(), "eps_g_std": np.asarray(arrays["eps_g_std"]).tolist(),
        "ode_eps_g": d["ode_eps_g"].tolist(),
        "Q_mean": arrays["Q_mean"].tolist(), "R_mean": arrays["R_mean"].tolist(),
        "ode_diverged": bool(tr.diverged),
        "note": "student units relabelled per seed to the ODE's specialisation (see perms in the NPZ)",
    }
    (out / "simulate.json").write_text(json.dumps(summary, indent=1))
    plt = pyplot()
    fig, axs = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    plot_compare(axs, d, log=not args.linear_alpha, matched=args.matched)
    fig.suptitle(f"K={K}, M={M}, {g}, eta={args.eta}, N={args.N}, {args.seeds} seeds")
    fig.savefig(out / "simulate.png", dpi=120)
    plt.close(fig)
    print(f"wrote {out}/simulate.json, simulate.npz, simulate.png")
    i = -1
    print(f"alpha={d['alpha'][i]:.4g}: eps_g sim {arrays['eps_g_mean'][i]:.6g} "
          f"+- {float(np.asarray(arrays['eps_g_std'])[i]):.2g}, ODE {d['ode_eps_g'][i]:.6g}")
    return 0
