"""SGD simulations against the ODE: paper 001 fig. 1 and the simulation symbols of paper 000 figs. 1, 2.

Every figure shows the simulation mean +- one standard deviation over seeds (bands), the ODE from
the prescribed initial overlaps ("nominal", dashed) and, where a symmetric plateau makes the escape
time depend on the finite-N fluctuations of the first steps, the ODE started per seed from the
measured overlaps at alpha = 2 / eta ("matched", dotted; `jaxdyn.matched_theory`, see the
`jaxdyn._simulate` docstring). Student units are relabelled per seed (`jaxdyn.align_units`) to the
nominal ODE's specialisation before averaging.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import jaxdyn as jd

from .._reproduce import register
from . import new_axes, save


def pyplot():
    """matplotlib.pyplot (the backend is the caller's: the CLI and CI set MPLBACKEND=Agg)."""
    import matplotlib.pyplot as plt

    return plt


def _grid(alpha_max, n, start=1e-2, extra=()):
    return np.unique(np.concatenate([[0.0], np.geomspace(start, alpha_max, n - 1), list(extra)]))


def _band(ax, a, X, color, label=None):
    m, s = np.nanmean(X, 0), np.nanstd(X, 0, ddof=1 if X.shape[0] > 1 else 0)
    ax.plot(a, m, "-", color=color, lw=1.2, label=label)
    ax.fill_between(a, m - s, m + s, color=color, alpha=0.25, lw=0)


def compare(sc, op0, *, eta, N, seeds, alphas, eta2=True, matched=True, dtype=None):
    """Simulate, integrate (nominal and matched) and align units. Returns a dict of NumPy arrays."""
    sim = jd.simulate(sc, op0, eta=eta, N=N, alphas=alphas, seeds=seeds,
                      dtype=jnp.float32 if dtype is None else dtype)
    tr = jd.integrate(sc, op0, eta=eta, alphas=sim.alpha, eta2=eta2, throw=False)
    Qs, Rs, perms = jd.align_units(sim.Q, sim.R, np.asarray(tr.R[-1]))
    out = dict(alpha=np.asarray(sim.alpha), Q=Qs, R=Rs, eps_g=np.asarray(sim.eps_g),
               ode_Q=np.asarray(tr.Q), ode_R=np.asarray(tr.R), ode_eps_g=np.asarray(tr.eps_g))
    if matched:
        am, mQ, mR, mE = jd.matched_theory(sc, sim, eta2=eta2)
        # each matched ODE is a theory curve of its own: label its units by its own specialisation
        mQ, mR, _ = jd.align_units(mQ, mR, np.asarray(tr.R[-1]))
        out.update(m_alpha=np.asarray(am), m_Q=mQ, m_R=mR, m_eps_g=np.asarray(mE))
    return out


def _pairs(K, M, which):
    if which == "Q":
        return [(i, j) for i in range(K) for j in range(i, K)]
    return [(i, n) for i in range(K) for n in range(M)]


def plot_compare(axs, d, *, log=True, matched=True):
    """Three panels (Q, R, eps_g) into `axs` (or a new figure if None; the figure is returned):
    bands = simulation, dashed = nominal ODE, dotted = matched ODE. `d` as from `compare`."""
    fig, axs = new_axes(axs, 3, figsize=(13, 3.6))
    a = d["alpha"]
    K, M = d["R"].shape[-2:]
    for ax, which in zip(axs[:2], ("Q", "R")):
        for c, (i, j) in enumerate(_pairs(K, M, which)):
            col = f"C{c}"
            _band(ax, a, d[which][:, :, i, j], col, label=f"${which}_{{{i + 1}{j + 1}}}$")
            ax.plot(a, d["ode_" + which][:, i, j], "--", color="k", lw=0.8)
            if matched and "m_" + which in d:
                ax.plot(d["m_alpha"], np.mean(d["m_" + which][:, :, i, j], 0), ":", color=col, lw=1.5)
        ax.set_ylabel(f"${which}$")
    _band(axs[2], a, d["eps_g"], "C3", label="simulation")
    axs[2].plot(a, d["ode_eps_g"], "--", color="k", lw=0.8, label="ODE (nominal start)")
    if matched and "m_eps_g" in d:
        axs[2].plot(d["m_alpha"], np.mean(d["m_eps_g"], 0), ":", color="C3", lw=1.5,
                    label="ODE (matched start)")
    axs[2].set_ylabel(r"$\epsilon_g$")
    for ax in axs:
        ax.set_xlabel(r"$\alpha$")
        if log:
            ax.set_xscale("log")
        ax.legend(fontsize=7)
    return fig


def _summary(d, alphas_at):
    """Numbers for the JSON: simulation mean/std and ODEs at a few alphas."""
    a = d["alpha"]
    rows = {}
    for x in alphas_at:
        i = int(np.argmin(np.abs(a - x)))
        r = {"alpha": float(a[i]), "sim_eps_g_mean": float(np.mean(d["eps_g"][:, i])),
             "sim_eps_g_std": float(np.std(d["eps_g"][:, i], ddof=1)),
             "ode_eps_g": float(d["ode_eps_g"][i])}
        if "m_eps_g" in d and a[i] >= d["m_alpha"][0]:
            j = int(np.argmin(np.abs(d["m_alpha"] - a[i])))
            r["matched_ode_eps_g"] = float(np.mean(d["m_eps_g"][:, j]))
        rows[f"{a[i]:.3g}"] = r
    return rows


def _rms_z(d, lo=0.0, hi=np.inf):
    """RMS over records (lo <= alpha <= hi) of |sim mean - ODE| / (std / sqrt(S)) for eps_g."""
    a = d["alpha"]
    sel = (a >= lo) & (a <= hi) & (a > 0)
    S = d["eps_g"].shape[0]
    m, s = d["eps_g"].mean(0), d["eps_g"].std(0, ddof=1)
    z = np.abs(m - d["ode_eps_g"]) / (s / np.sqrt(S) + 1e-12)
    return float(np.sqrt(np.mean(z[sel] ** 2)))


@register("001-fig1", "Paper 001 fig. 1: K=M=2 ReLU, T=diag(1,2), eta=1, SGD (N=1000, 10 seeds) vs ODE (exact I4)")
def fig001_1(outdir, *, fast=False):
    sc, op0 = jd.papers.paper001()
    N, S, amax, n = (200, 4, 60.0, 50) if fast else (1000, 10, 200.0, 120)
    d = compare(sc, op0, eta=1.0, N=N, seeds=S, alphas=_grid(amax, n, extra=[2.0]), matched=not fast)
    fig = plot_compare(None, d)
    fig.suptitle(rf"paper 001 fig. 1: $K=M=2$ ReLU, $T=$diag(1,2), $\eta=1$; SGD $N={N}$, {S} seeds "
                 r"(mean $\pm$ std) vs ODE")
    save(fig, outdir / "001-fig1.png")
    return {"N": N, "seeds": S, "at": _summary(d, [1.0, 10.0, 30.0, 50.0, amax]),
            "z_rms_before_escape": _rms_z(d, 0.0, 15.0),
            "final_R_sim_mean": d["R"][:, -1].mean(0), "final_R_ode": d["ode_R"][-1]}


@register("000-fig1-sim", "Paper 000 fig. 1 with SGD symbols: K=M=1 ReLU, N=1000, eta = 0.1 ... 1.9 (vmapped)")
def fig000_1(outdir, *, fast=False):
    sc = jd.Scenario(K=1, M=1)
    op0 = jd.OrderParams(Q=[[0.25]], R=[[0.0]])
    etas = np.array([0.1, 0.5, 1.0, 1.5, 1.9])
    N, S, amax, n = (200, 3, 50.0, 40) if fast else (1000, 5, 200.0, 80)
    alphas = _grid(amax, n)
    sim = jd.simulate(sc, op0, eta=jnp.asarray(etas), N=N, alphas=alphas, seeds=S)
    a = np.asarray(sim.alpha)
    trajs = {float(eta): jd.integrate(sc, op0, eta=float(eta), alphas=sim.alpha) for eta in etas}
    out = {"N": N, "seeds": S, "by_eta": {}}
    i = int(np.argmin(np.abs(a - 10.0)))
    for c, eta in enumerate(etas):
        E = np.asarray(sim.eps_g)[c]
        out["by_eta"][str(eta)] = {"alpha": float(a[i]), "sim_eps_g_mean": float(E[:, i].mean()),
                                   "sim_eps_g_std": float(E[:, i].std(ddof=1)),
                                   "ode_eps_g": float(trajs[float(eta)].eps_g[i])}
    save(plot_kmm1_sim(sim, trajs), outdir / "000-fig1-sim.png")
    return out


def plot_kmm1_sim(sim, trajs, *, axes=None):
    """Paper 000 fig. 1 with SGD: R, Q bands of the first eta of `sim` against the ODE (dashed,
    `trajs[eta]`), and eps_g bands for every eta of `sim` ({eta: Trajectory} `trajs`)."""
    fig, axs = new_axes(axes, 2, figsize=(10, 3.6))
    a = np.asarray(sim.alpha)
    etas = list(trajs)
    tr0 = trajs[etas[0]]
    N = sim.N if hasattr(sim, "N") else None
    for c, (f, lab) in enumerate([("R", "R"), ("Q", "Q")]):
        X = np.asarray(getattr(sim, f))[0, :, :, 0, 0]
        _band(axs[0], a, X, f"C{c}", label=f"{lab} (SGD)")
        axs[0].plot(a, np.asarray(getattr(tr0, f))[:, 0, 0], "--", color="k", lw=0.8)
    axs[0].set(xlabel=r"$\alpha$", xscale="log",
               title=rf"$K=M=1$, $\eta={etas[0]:g}$" + (f", $N={int(N)}$" if N is not None else ""))
    axs[0].legend(fontsize=7)
    for c, eta in enumerate(etas):
        E = np.asarray(sim.eps_g)[c]
        _band(axs[1], a, E, f"C{c}", label=rf"$\eta={eta:g}$")
        axs[1].plot(a, np.asarray(trajs[eta].eps_g), "--", color="k", lw=0.8)
    axs[1].set(xscale="log", yscale="log", xlabel=r"$\alpha$", ylabel=r"$\epsilon_g$",
               title="bands: SGD mean $\\pm$ std; dashed: ODE")
    axs[1].legend(fontsize=7)
    return fig


@register("000-fig2-sim", "Paper 000 fig. 2 with SGD: K=M=2 ReLU, eta=0.1, N=10^4 vs small-eta and full ODE")
def fig000_2(outdir, *, fast=False):
    sc = jd.Scenario(K=2, M=2)
    op0 = jd.OrderParams(Q=jnp.diag(jnp.array([0.2, 0.3])), R=1e-3 * jnp.eye(2))
    # full: the paper's N = 10^4 (alpha to 600: 6e6 steps per seed; 4 seeds took 18 min on 2 cores)
    N, S, amax, n = (300, 3, 150.0, 40) if fast else (10_000, 4, 600.0, 80)
    d = compare(sc, op0, eta=0.1, N=N, seeds=S, alphas=_grid(amax, n, start=0.1, extra=[20.0]),
                eta2=True, matched=not fast)
    small = jd.integrate(sc, op0, eta=0.1, alphas=jnp.asarray(d["alpha"]), eta2=False)
    fig = plot_compare(None, d, log=False)
    axs = fig.axes
    axs[2].plot(d["alpha"], np.asarray(small.eps_g), "-.", color="gray", lw=0.8,
                label=r"small-$\eta$ ODE (paper)")
    axs[2].set_yscale("log")
    axs[2].legend(fontsize=7)
    fig.suptitle(rf"paper 000 fig. 2: $K=M=2$ ReLU, $\eta=0.1$; SGD $N={N}$, {S} seeds vs ODE")
    save(fig, outdir / "000-fig2-sim.png")
    a = d["alpha"]
    i = int(np.argmin(np.abs(a - 100.0)))
    return {"N": N, "seeds": S, "at": _summary(d, [10.0, 50.0, 100.0, 200.0, amax]),
            "sim_R_mean_alpha100": d["R"][:, i].mean(0), "ode_R_alpha100": d["ode_R"][i],
            "small_eta_ode_eps_g_final": float(small.eps_g[-1])}
