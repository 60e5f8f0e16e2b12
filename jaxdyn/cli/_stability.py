"""`jaxdyn stability`: fixed points, spectra and critical learning rates as a table and JSON.

Examples:
    jaxdyn stability --preset 000-plateau            # paper 000 K=M=2 plateau (small eta)
    jaxdyn stability --preset 003-saddle --K 3        # paper 003 identical-student saddle
    jaxdyn stability --preset 001 --thresholds        # paper 001 fixed points + critical etas
    jaxdyn stability --K 2 --M 2 --T 1,2 --eta 0.8    # plateau and perfect learning at eta
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from ._args import ode_arguments, ode_options, scenario_arguments, scenario_from_args


def add_parser(subparsers):
    p = subparsers.add_parser("stability", help="fixed points, spectra and critical learning rates",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=["000-kmm1", "000-plateau", "003-saddle", "001"], default=None)
    scenario_arguments(p, extras=False)
    p.add_argument("--eta", type=float, default=1.0)
    ode_arguments(p)
    p.add_argument("--thresholds", action="store_true",
                   help="(preset 001) also compute the critical learning rates")
    p.add_argument("--fast", action="store_true", help="loose tolerances for the thresholds")
    p.add_argument("--json", default=None, help="write the results to this JSON file ('-': stdout)")
    p.set_defaults(func=run)
    return p


def _row(name, fp, eta):
    ev = np.asarray(fp.eigenvalues)
    return {
        "name": name, "eta": float(eta), "x": dict(zip(fp.labels, np.asarray(fp.x).tolist())),
        "residual": float(fp.residual), "converged": bool(fp.converged), "kind": fp.kind,
        "n_unstable": int(fp.n_unstable), "eigenvalues_real": ev.real.tolist(),
        "eigenvalues_imag": ev.imag.tolist(),
        "leading_eigenvector": np.asarray(fp.eigenvectors)[:, 0].real.tolist(),
    }


def _print_table(rows, thresholds):
    for r in rows:
        print(f"\n== {r['name']}  (eta = {r['eta']:g}; {r['kind']}, {r['n_unstable']} unstable; "
              f"residual {r['residual']:.1e})")
        labels = list(r["x"])
        print("  " + " ".join(f"{lab:>11s}" for lab in labels))
        print("  " + " ".join(f"{v:11.8f}" for v in r["x"].values()))
        lam = [complex(a, b) for a, b in zip(r["eigenvalues_real"], r["eigenvalues_imag"])]
        print("  eigenvalues: " + ", ".join(
            f"{z.real:.8f}" + (f"{z.imag:+.2e}j" if abs(z.imag) > 1e-12 else "") for z in lam))
        print("  leading eigenvector: " + ", ".join(f"{v:+.4f}" for v in r["leading_eigenvector"]))
    if thresholds:
        print(f"\n{'critical learning rate':34s} {'value':>16s} {'tol':>9s}")
        for k, t in thresholds.items():
            print(f"{k:34s} {t['value']:16.12f} {t['tol']:9.1e}")


def run(args) -> int:
    # deferred: x64 is switched on (by `main`) before jaxdyn is imported
    import jax.numpy as jnp

    import jaxdyn as jd
    from jaxdyn.figures.stability import paper001_thresholds

    papers = jd.papers
    rows, thresholds = [], {}
    eta = args.eta
    opts = ode_options(args)
    eta2 = opts["eta2"]
    kw = dict(i4=opts["i4"], order=opts["order"])
    K = args.K or 2
    if args.preset == "000-kmm1":
        sc = jd.Scenario(K=1, M=1)
        fp = jd.fixed_point(sc, papers.perfect_learning(sc), eta=jnp.asarray(eta), **opts)
        rows.append(_row("perfect learning (R, Q) = (1, 1)", fp, eta))
        if eta2:
            th = jd.stability_threshold(sc, papers.perfect_learning(sc), eta_bracket=(0.5, 3.0), **kw)
            thresholds["perfect-learning stability (eta_c)"] = th.as_dict()
    elif args.preset == "000-plateau":
        sc = jd.Scenario(K=2, M=2)
        fp = papers.plateau_fixed_point(sc, eta, eta2=False)
        rows.append(_row("paper 000 plateau (small-eta ODE)", fp, eta))
    elif args.preset == "003-saddle":
        fp = papers.tian_saddle(K, eta)
        rows.append(_row(f"paper 003 identical-student saddle, K = {K} "
                         f"(formula R = {papers.tian_R(K):.12f})", fp, eta))
    else:
        sc = papers.paper001_scenario() if args.preset == "001" else scenario_from_args(args)
        fp = papers.plateau_fixed_point(sc, eta, **opts)
        rows.append(_row("unspecialised plateau", fp, eta))
        if sc.K == sc.M:
            fp = jd.fixed_point(sc, papers.perfect_learning(sc), eta=jnp.asarray(eta), **opts)
            rows.append(_row("perfect learning R = Q = T", fp, eta))
        if args.preset == "001" and args.thresholds:
            res = paper001_thresholds(fast=args.fast, **kw)
            thresholds = {k: v.as_dict() for k, v in res.items()}
    _print_table(rows, thresholds)
    out = {"fixed_points": rows, "thresholds": thresholds}
    if args.json == "-":
        print(json.dumps(out, indent=1, default=str))
    elif args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)
        print(f"\nwrote {args.json}")
    return 0
