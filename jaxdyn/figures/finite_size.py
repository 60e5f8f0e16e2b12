"""Finite-size effects of online SGD from the exact overlap chain (`simulate(method="overlaps")`).

K = M = 2 ReLU, T = I, v = w = 1 (paper 000's soft committee machine, Straat & Biehl, ESANN 2019),
eta = 1 with the eta^2 term, Q0 = diag(0.2, 0.3). Two starts: paper 000's R0 = 1e-3 I (the ODE
escapes the symmetric plateau at a finite alpha) and the teacher-symmetric R0 = 0 (the ODE never
escapes: only the O(1/sqrt N) fluctuations break the symmetry).

Theory of the escape: near the plateau the specialisation mode grows as exp(lambda alpha), lambda
the unstable eigenvalue of the plateau fixed point (of the same ODE); it is seeded by the
fluctuations, of size ~ 1/sqrt(N), so the escape time grows like `alpha_esc = a + ln(N) / (2 lambda)`
until N is so large that the prescribed R0 dominates the seed; then it saturates at the ODE's
escape time. The spread of eps_g across seeds before the escape shrinks like 1/sqrt(N).
"""

from __future__ import annotations

import time

import numpy as np

from .._reproduce import register


def _setup(symmetric: bool):
    import jax.numpy as jnp

    import jaxdyn as jd

    sc = jd.Scenario(K=2, M=2)
    R0 = jnp.zeros((2, 2)) if symmetric else 1e-3 * jnp.eye(2)
    return sc, jd.OrderParams(Q=jnp.diag(jnp.array([0.2, 0.3])), R=R0)


def plateau(eta=1.0):
    """The symmetric plateau fixed point: (eps_g, unstable eigenvalue lambda)."""
    import jax.numpy as jnp

    import jaxdyn as jd

    sc, _ = _setup(True)
    guess = jd.OrderParams(Q=[[0.7, 0.4], [0.4, 0.7]], R=[[0.5, 0.5], [0.5, 0.5]])
    fp = jd.symmetric_fixed_point(sc, guess, eta=jnp.array(eta))
    lam = float(np.max(np.real(np.asarray(fp.eigenvalues))))
    return float(jd.eps_g(sc, fp.op)), lam


def escape_times(alpha, eps_g, threshold):
    """First recorded alpha with eps_g < threshold, per seed (inf if never)."""
    below = np.asarray(eps_g) < threshold
    hit = below.any(axis=-1)
    first = np.argmax(below, axis=-1)
    return np.where(hit, np.asarray(alpha)[first], np.inf)


def escape_study(Ns, seeds, *, eta=1.0, alpha_max=90.0, every=0.5, alpha_spread=10.0):
    """Run the chain for every N (float64) and both starts; returns a dict of NumPy results."""
    import jax.numpy as jnp

    import jaxdyn as jd

    eps_pl, lam = plateau(eta)
    alphas = np.arange(0.0, alpha_max + every / 2, every)
    out = {"Ns": list(map(int, Ns)), "seeds": list(map(int, seeds)), "eta": eta,
           "eps_plateau": eps_pl, "lambda": lam, "alpha": alphas, "runs": {}}
    starts = {"R0=1e-3 I": _setup(False)[1], "R0=0": _setup(True)[1]}
    sc = _setup(True)[0]
    odes = {k: np.asarray(jd.integrate(sc, op, eta=eta, alphas=jnp.asarray(alphas)).eps_g)
            for k, op in starts.items()}
    rows = {k: [] for k in starts}
    for N, S in zip(Ns, seeds):
        # both starts in one vmapped run (one start per seed): the per-step cost at few seeds
        # is loop overhead, so the second start is nearly free
        op = jd.OrderParams(Q=jnp.concatenate([jnp.broadcast_to(o.Q, (S, 2, 2)) for o in starts.values()]),
                            R=jnp.concatenate([jnp.broadcast_to(o.R, (S, 2, 2)) for o in starts.values()]))
        t0, c0 = time.perf_counter(), time.process_time()
        sim = jd.simulate(sc, op, eta=eta, N=int(N), alphas=alphas, seeds=2 * int(S),
                          method="overlaps", dtype=jnp.float64)
        egs = np.asarray(sim.eps_g)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        i10 = int(np.argmin(np.abs(alphas - alpha_spread)))
        for j, k in enumerate(starts):
            eg = egs[j * S:(j + 1) * S]
            esc = escape_times(alphas, eg, eps_pl / 2)
            rows[k].append(dict(N=int(N), S=int(S), wall_s=wall, cpu_s=cpu,
                                steps=2 * int(S) * int(round(alpha_max * N)),
                                escape=esc, eps_mean=eg.mean(0),
                                eps_q=np.quantile(eg, [0.16, 0.5, 0.84], 0),
                                spread=float(eg[:, i10].std(ddof=1)),
                                spread_se=float(eg[:, i10].std(ddof=1) / np.sqrt(2 * (int(S) - 1))),
                                mean_dev=float(eg[:, i10].mean() - odes[k][i10]),
                                final_eps=float(np.median(eg[:, -1]))))
    for k in starts:
        ode_esc = escape_times(alphas, odes[k][None], eps_pl / 2)[0]
        out["runs"][k] = dict(rows=rows[k], ode_eps=odes[k], ode_escape=float(ode_esc))
    return out


def slope_fit(Ns, esc):
    """Least-squares slope of median escape time against ln N (finite escapes only)."""
    med = np.array([np.median(e) for e in esc])
    ok = np.isfinite(med)
    return float(np.polyfit(np.log(np.asarray(Ns, float)[ok]), med[ok], 1)[0]), med


def plot(d, path):
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, 3, figsize=(15, 4.4))
    a = d["alpha"]
    cols = plt.cm.viridis(np.linspace(0, 0.85, len(d["Ns"])))
    # (a) learning curves, paper 000's start
    ax = axs[0]
    run = d["runs"]["R0=1e-3 I"]
    for c, r in zip(cols, run["rows"]):
        q = r["eps_q"]
        ax.fill_between(a, q[0], q[2], color=c, alpha=0.25, lw=0)
        ax.plot(a, q[1], color=c, lw=1.3, label=f"N = {r['N']:.0e} ({r['S']} seeds)".replace("e+0", "e"))
    ax.plot(a, run["ode_eps"], "k--", lw=1.5, label="ODE (N = ∞)")
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 1)
    ax.set_xlabel("α = examples / N")
    ax.set_ylabel("ε_g (median, 16–84% band)")
    ax.set_title("(a) K=M=2 ReLU, η=1, R0 = 1e-3 I")
    ax.legend(fontsize=7, loc="lower left")
    # (b) escape time against ln N
    ax = axs[1]
    lam = d["lambda"]
    for key, mk in (("R0=1e-3 I", "o"), ("R0=0", "s")):
        run = d["runs"][key]
        Ns = np.array([r["N"] for r in run["rows"]], float)
        esc = [r["escape"] for r in run["rows"]]
        slope, med = slope_fit(Ns, esc)
        lo = np.array([np.quantile(e, 0.16) for e in esc])
        hi = np.array([np.quantile(e, 0.84) for e in esc])
        h = ax.errorbar(Ns, med, yerr=[med - lo, hi - med], fmt=mk + "-", capsize=3,
                        label=f"{key}: slope {slope:.2f} per ln N")
        if np.isfinite(run["ode_escape"]):
            ax.axhline(run["ode_escape"], color=h[0].get_color(), ls=":", label=f"{key}: ODE escape")
    Ns = np.array(d["Ns"], float)
    med0 = np.median(d["runs"]["R0=0"]["rows"][0]["escape"])
    ax.plot(Ns, med0 + np.log(Ns / Ns[0]) / (2 * lam), "k--", lw=1,
            label=f"theory slope 1/(2λ) = {1 / (2 * lam):.2f} (λ = {lam:.3f})")
    ax.set_xscale("log")
    ax.set_xlabel("N")
    ax.set_ylabel("escape α (ε_g < ε_plateau / 2), median, 16–84%")
    ax.set_title("(b) plateau escape time vs ln N")
    ax.legend(fontsize=7, loc="upper left")
    # (c) spread of eps_g across seeds against 1/sqrt(N)
    ax = axs[2]
    for key, mk in (("R0=1e-3 I", "o"), ("R0=0", "s")):
        rows = d["runs"][key]["rows"]
        x = 1 / np.sqrt([r["N"] for r in rows])
        y = np.array([r["spread"] for r in rows])
        ax.errorbar(x, y, yerr=[r["spread_se"] for r in rows], fmt=mk, label=key)
    x = 1 / np.sqrt(Ns)
    c0 = np.median(np.array([r["spread"] for r in d["runs"]["R0=0"]["rows"]]) * np.sqrt(Ns))
    ax.plot(x, c0 * x, "k--", lw=1, label=f"{c0:.3f} / √N")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("1/√N")
    ax.set_ylabel("std of ε_g across seeds at α = 10")
    ax.set_title("(c) spread of ε_g vs 1/√N (ODE: 0)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@register("000-escape-vs-N", "Finite-N SGD (exact overlap chain): K=M=2 ReLU plateau escape time vs ln N "
          "(N = 10^2..10^6) and the 1/sqrt(N) spread of eps_g, ODE as N -> infinity")
def fig_escape(outdir, *, fast=False):
    if fast:
        Ns, seeds, amax = [200, 2000], [64, 32], 60.0
    else:
        Ns, seeds, amax = [10**2, 10**3, 10**4, 10**5, 10**6], [256, 128, 64, 16, 4], 80.0
    t0 = time.perf_counter()
    d = escape_study(Ns, seeds, alpha_max=amax)
    total = time.perf_counter() - t0
    plot(d, outdir / "000-escape-vs-N.png")
    res = {"lambda": d["lambda"], "theory_slope": 1 / (2 * d["lambda"]), "eps_plateau": d["eps_plateau"],
           "total_time_s": total}
    for key, run in d["runs"].items():
        Nsr = [r["N"] for r in run["rows"]]
        slope, med = slope_fit(Nsr, [r["escape"] for r in run["rows"]])
        res[key] = dict(N=Nsr, seeds=[r["S"] for r in run["rows"]], median_escape=med.tolist(),
                        escaped_fraction=[float(np.mean(np.isfinite(r["escape"]))) for r in run["rows"]],
                        slope_per_lnN=slope, ode_escape=run["ode_escape"],
                        spread_at_alpha10=[r["spread"] for r in run["rows"]],
                        spread_x_sqrtN=[r["spread"] * np.sqrt(r["N"]) for r in run["rows"]],
                        mean_minus_ode_at_alpha10=[r["mean_dev"] for r in run["rows"]],
                        final_eps_median=[r["final_eps"] for r in run["rows"]],
                        wall_s_both_starts=[r["wall_s"] for r in run["rows"]],
                        cpu_s_both_starts=[r["cpu_s"] for r in run["rows"]],
                        seed_steps_both_starts=[r["steps"] for r in run["rows"]])
    return res
