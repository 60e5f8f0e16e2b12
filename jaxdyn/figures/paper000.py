"""Paper 000 (Straat & Biehl, ESANN 2019): ReLU soft committee machines, theory side.

Figures 1-4 with the paper's initial conditions. Paper 000 keeps the eta^2 term only for K=M=1;
its K=M=2, K=3/M=2 and K=2/M=3 runs are the small-learning-rate dynamics (eta2=False), where
eta only rescales time.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import jaxdyn as jd

from .._reproduce import register
from . import new_axes, save


def _grid(alpha_max, n=400, start=1e-2):
    return jnp.concatenate([jnp.zeros(1), jnp.geomspace(start, alpha_max, n - 1)])


def kmm1(eta, alpha_max=200.0, n=400, eta2=True):
    """K = M = 1 ReLU from (R, Q) = (0, 0.25) (paper 000 fig. 1)."""
    sc = jd.Scenario(K=1, M=1)
    op0 = jd.OrderParams(Q=[[0.25]], R=[[0.0]])
    return jd.integrate(sc, op0, eta=eta, alphas=_grid(alpha_max, n), eta2=eta2)


def k2m2_plateau(eta=0.1, alpha_max=3000.0, n=600):
    """K = M = 2 ReLU, small-eta dynamics, R = 1e-3 I, Q = diag(.2, .3) (paper 000 fig. 2)."""
    sc = jd.Scenario(K=2, M=2)
    op0 = jd.OrderParams(Q=jnp.diag(jnp.array([0.2, 0.3])), R=1e-3 * jnp.eye(2))
    return jd.integrate(sc, op0, eta=eta, alphas=_grid(alpha_max, n), eta2=False)


def plateau_summary(traj):
    """The symmetric plateau: the recorded time (alpha > 1, eps_g still above a tenth of its
    value at alpha = 1) where eps_g is flattest, |d ln eps_g / d ln alpha| smallest."""
    a = np.asarray(traj.alpha)
    e = np.asarray(traj.eps_g)
    R = np.asarray(traj.R).reshape(len(a), -1)
    ok = (a > 1.0) & np.isfinite(e)
    e1 = np.interp(1.0, a, e)
    ok &= e > 0.1 * e1
    sel = np.nonzero(ok)[0]
    rate = np.abs(np.gradient(np.log(e[sel]), np.log(a[sel])))
    j = int(sel[np.argmin(rate)])
    return {
        "alpha": float(a[j]),
        "R_mean": float(R[j].mean()),
        "R_min": float(R[j].min()),
        "R_max": float(R[j].max()),
        "eps_g": float(e[j]),
    }


def k3m2(g, eta=0.1, alpha_max=2e4, n=400):
    """K = 3, M = 2: R11 = 1e-3, Q = diag(.2, .3, .25), small-eta dynamics (paper 000 fig. 3)."""
    sc = jd.Scenario(K=3, M=2, g=g)
    R0 = jnp.zeros((3, 2)).at[0, 0].set(1e-3)
    op0 = jd.OrderParams(Q=jnp.diag(jnp.array([0.2, 0.3, 0.25])), R=R0)
    return jd.integrate(sc, op0, eta=eta, alphas=_grid(alpha_max, n), eta2=False, max_steps=400_000)


def k2m3(eta=0.1, alpha_max=2e4, n=400):
    """K = 2, M = 3: R11 = 1e-3, Q = 0.2 I, small-eta dynamics (paper 000 fig. 4)."""
    sc = jd.Scenario(K=2, M=3)
    R0 = jnp.zeros((2, 3)).at[0, 0].set(1e-3)
    op0 = jd.OrderParams(Q=0.2 * jnp.eye(2), R=R0)
    return jd.integrate(sc, op0, eta=eta, alphas=_grid(alpha_max, n), eta2=False, max_steps=400_000)


def plot_overlaps(traj, which, *, ax=None):
    """Draw every `which` ("R" or "Q", upper triangle) overlap of a `Trajectory` against alpha."""
    fig, (ax,) = new_axes(ax)
    a = np.asarray(traj.alpha)
    X = np.asarray(getattr(traj, which))
    K, L = X.shape[1:]
    for i in range(K):
        for j in range(L):
            if which == "Q" and j < i:
                continue
            ax.plot(a, X[:, i, j], label=f"${which}_{{{i + 1}{j + 1}}}$")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel(r"$\alpha$")
    ax.legend(fontsize=7, ncol=2)
    return fig


def plot_fig1(tr, curves, *, axes=None):
    """Paper 000 fig. 1: R, Q of the K = M = 1 trajectory `tr` (left) and eps_g of every
    trajectory in `curves` ({eta: Trajectory}, right; diverged parts left out)."""
    fig, axs = new_axes(axes, 2, figsize=(9, 3.4))
    a = np.asarray(tr.alpha)
    axs[0].plot(a, np.asarray(tr.R[:, 0, 0]), label="R")
    axs[0].plot(a, np.asarray(tr.Q[:, 0, 0]), label="Q")
    axs[0].set(xlabel=r"$\alpha$", title=r"$K=M=1$, $\eta=0.1$")
    axs[0].legend()
    for eta, t in curves.items():
        eg = np.asarray(t.eps_g)
        ok = np.isfinite(eg)
        axs[1].plot(np.asarray(t.alpha)[ok], eg[ok], label=rf"$\eta={eta}$")
    axs[1].set(xscale="log", yscale="log", xlabel=r"$\alpha$", ylabel=r"$\epsilon_g$")
    axs[1].legend(fontsize=7)
    return fig


def plot_fig2(tr, plateau, *, axes=None):
    """Paper 000 fig. 2: R, Q and eps_g of the K = M = 2 trajectory, the plateau R dotted."""
    fig, axs = new_axes(axes, 3, figsize=(12, 3.4))
    plot_overlaps(tr, "R", ax=axs[0])
    plot_overlaps(tr, "Q", ax=axs[1])
    axs[2].plot(np.asarray(tr.alpha), np.asarray(tr.eps_g))
    axs[2].set(xscale="symlog", yscale="log", xlabel=r"$\alpha$", ylabel=r"$\epsilon_g$")
    axs[0].axhline(plateau["R_mean"], color="k", lw=0.5, ls=":")
    fig.suptitle(r"paper 000 fig. 2: $K=M=2$, $\eta=0.1$ (small-$\eta$ ODE)")
    return fig


def plot_fig3(trajs, *, axes=None):
    """Paper 000 fig. 3: R of the K = 3, M = 2 trajectories `trajs` ({title: Trajectory})."""
    fig, axs = new_axes(axes, len(trajs), figsize=(9, 3.4))
    for ax, (name, tr) in zip(axs, trajs.items()):
        plot_overlaps(tr, "R", ax=ax)
        ax.set_title(name)
    return fig


def plot_fig4(tr, *, axes=None):
    """Paper 000 fig. 4: R and Q of the K = 2, M = 3 trajectory."""
    fig, axs = new_axes(axes, 2, figsize=(9, 3.4))
    plot_overlaps(tr, "R", ax=axs[0])
    plot_overlaps(tr, "Q", ax=axs[1])
    return fig


@register("000-fig1", "K=M=1 ReLU: R, Q at eta=0.1 and eps_g for several eta (with eta^2)")
def fig1(outdir, *, fast=False):
    etas = [0.1, 0.5, 1.0, 1.5, 1.9, 2.1, 2.5]
    n = 100 if fast else 400
    tr = kmm1(0.1, alpha_max=400.0, n=n)
    curves = {eta: kmm1(eta, alpha_max=400.0, n=n) for eta in etas}
    finals = {}
    for eta, t in curves.items():
        eg = np.asarray(t.eps_g)
        ok = np.isfinite(eg)
        finals[str(eta)] = {"eps_g_final": float(eg[ok][-1]), "diverged": bool(t.diverged),
                            "alpha_diverged": float(t.alpha_diverged)}
    save(plot_fig1(tr, curves), outdir / "000-fig1.png")
    return {"eta0.1_final_R": float(tr.R[-1, 0, 0]), "eta0.1_final_Q": float(tr.Q[-1, 0, 0]),
            "by_eta": finals}


@register("000-fig2", "K=M=2 ReLU small-eta: symmetric plateau R_in ~ 0.52 and specialisation")
def fig2(outdir, *, fast=False):
    tr = k2m2_plateau(n=200 if fast else 600)
    plat = plateau_summary(tr)
    save(plot_fig2(tr, plat), outdir / "000-fig2.png")
    return {"plateau": plat, "paper_R_plateau": 0.52, "final_R": np.asarray(tr.R[-1]),
            "final_eps_g": float(tr.eps_g[-1])}


@register("000-fig3", "K=3, M=2 ReLU vs erf small-eta: final Q table")
def fig3(outdir, *, fast=False):
    n = 150 if fast else 400
    trajs = {name: k3m2(g, n=n) for name, g in [("ReLU", jd.ReLU()), ("Erf", jd.Erf())]}
    out = {name: {"Q_final": np.asarray(tr.Q[-1]), "R_final": np.asarray(tr.R[-1]),
                  "eps_g_final": float(tr.eps_g[-1]), "alpha_final": float(tr.alpha[-1])}
           for name, tr in trajs.items()}
    out["paper_table"] = {"ReLU": {"Q22": 0.24, "Q23": 0.25, "Q33": 0.27},
                          "Erf": {"Q22": 0.0, "Q23": 0.0, "Q33": 1.0}}
    save(plot_fig3(trajs), outdir / "000-fig3.png")
    return out


@register("000-fig4", "K=2, M=3 ReLU small-eta (unrealisable): R22 = R23 ~ 0.94, eps_g > 0")
def fig4(outdir, *, fast=False):
    tr = k2m3(n=150 if fast else 400)
    save(plot_fig4(tr), outdir / "000-fig4.png")
    return {"R_final": np.asarray(tr.R[-1]), "Q_final": np.asarray(tr.Q[-1]),
            "eps_g_final": float(tr.eps_g[-1]), "paper": {"R22": 0.94, "R23": 0.94}}
