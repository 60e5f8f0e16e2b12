"""Paper 001 (Citton, Richert & Biehl, ESANN 2025): ReLU at any learning rate, theory side.

K = M = 2, graded teacher T = diag(1, 2), Q0 = diag(0.1, 0.2), R0 = 1e-3 I, with the eta^2 term
and the exact ReLU I4 (no series truncation).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import jaxdyn as jd

from .._reproduce import register
from ..papers import paper001
from . import new_axes, save


def scenario_and_init():
    """Paper 001's scenario and initial condition (`jaxdyn.papers.paper001()`)."""
    return paper001()


def learning_curve(eta=1.0, alpha_max=300.0, n=400, **kw):
    """Paper 001's trajectory at `eta` on a log grid to `alpha_max` (`kw` go to `integrate`)."""
    sc, op0 = scenario_and_init()
    alphas = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-2, alpha_max, n - 1)])
    return jd.integrate(sc, op0, eta=eta, alphas=alphas, **kw)


@register("001-learning-curve", "K=M=2 ReLU, T=diag(1,2), eta=1 (exact I4): Q, R, eps_g; eta=1.3 diverges")
def learning_curve_figure(outdir, *, fast=False):
    n = 120 if fast else 400
    tr = learning_curve(1.0, n=n)
    trd = learning_curve(1.3, n=n)
    save(plot_learning_curve(tr, trd), outdir / "001-learning-curve.png")
    return {
        "eta": 1.0,
        "alpha": np.asarray(tr.alpha),
        "eps_g": np.asarray(tr.eps_g),
        "final": {"Q": np.asarray(tr.Q[-1]), "R": np.asarray(tr.R[-1]), "eps_g": float(tr.eps_g[-1])},
        "status": tr.message(),
        "eta_1.3": {"diverged": bool(trd.diverged), "alpha_diverged": float(trd.alpha_diverged),
                    "status": trd.message()},
    }


def plot_learning_curve(tr, trd, *, axes=None):
    """Q, R and eps_g of the eta = 1 trajectory `tr`, and eps_g of the diverging `trd` (eta 1.3)."""
    a = np.asarray(tr.alpha)
    fig, axs = new_axes(axes, 3, figsize=(12, 3.4))
    if axes is None:  # fixed margins: constrained layout costs ~0.6 s, a third of a cached run
        fig.set_layout_engine(None)
        fig.subplots_adjust(left=0.045, right=0.995, bottom=0.16, top=0.87, wspace=0.27)
    for i, j in [(0, 0), (0, 1), (1, 1)]:
        axs[0].plot(a, np.asarray(tr.Q[:, i, j]), label=f"$Q_{{{i + 1}{j + 1}}}$")
    for i in range(2):
        for j in range(2):
            axs[1].plot(a, np.asarray(tr.R[:, i, j]), label=f"$R_{{{i + 1}{j + 1}}}$")
    axs[2].plot(a, np.asarray(tr.eps_g), label=r"$\eta=1$")
    ed = np.asarray(trd.eps_g)
    ok = np.isfinite(ed)
    axs[2].plot(np.asarray(trd.alpha)[ok], ed[ok], "--",
                label=rf"$\eta=1.3$ (diverged at $\alpha={float(trd.alpha_end):.1f}$)")
    for ax in axs:
        ax.set_xscale("log")
        ax.set_xlabel(r"$\alpha$")
        ax.legend(fontsize=7)
    axs[2].set_yscale("log")
    axs[2].set_ylim(bottom=1e-11)  # below ~1e-11 eps_g is integration noise (it may even be < 0)
    axs[2].set_ylabel(r"$\epsilon_g$")
    fig.suptitle(r"paper 001: $K=M=2$, $T=\mathrm{diag}(1,2)$, ReLU, full $\eta^2$ ODE (exact $I_4$)")
    return fig


def series_vs_exact(n=200, order=10):
    """The eta = 1 learning curve with the exact I4 and with paper 001's order-`order` series."""
    ex = learning_curve(1.0, n=n)
    hs = learning_curve(1.0, n=n, i4="hermite", order=order)
    a = np.asarray(ex.alpha)
    d_eps = np.abs(np.asarray(ex.eps_g) - np.asarray(hs.eps_g))
    d_op = np.maximum(np.abs(np.asarray(ex.Q) - np.asarray(hs.Q)).max(axis=(1, 2)),
                      np.abs(np.asarray(ex.R) - np.asarray(hs.R)).max(axis=(1, 2)))
    return ex, hs, a, d_eps, d_op


@register("001-series-vs-exact", "eta=1 learning curve: order-10 Hermite series vs exact I4")
def series_vs_exact_figure(outdir, *, fast=False):
    ex, hs, a, d_eps, d_op = series_vs_exact(n=80 if fast else 300)
    left = float(hs.alpha_left_series)
    save(plot_series_vs_exact(ex, hs, d_eps, d_op), outdir / "001-series-vs-exact.png")
    inside = a <= left
    return {
        "alpha_left_series_region": left,
        "max_abs_d_eps_g_inside_region": float(d_eps[inside].max()),
        "max_abs_d_eps_g": float(d_eps.max()),
        "alpha_of_max_d_eps_g": float(a[np.argmax(d_eps)]),
        "max_abs_d_QR": float(d_op.max()),
        "final_eps_g": {"exact": float(ex.eps_g[-1]), "series": float(hs.eps_g[-1])},
    }


def plot_series_vs_exact(ex, hs, d_eps, d_op, *, axes=None):
    """eps_g with the exact I4 (`ex`) and the series (`hs`), and their differences."""
    a = np.asarray(ex.alpha)
    left = float(hs.alpha_left_series)
    fig, axs = new_axes(axes, 2, figsize=(9, 3.4))
    axs[0].plot(a, np.asarray(ex.eps_g), label="exact $I_4$")
    axs[0].plot(a, np.asarray(hs.eps_g), "--", label="Hermite series, order 10")
    axs[0].set(xscale="log", yscale="log", xlabel=r"$\alpha$", ylabel=r"$\epsilon_g$", ylim=(1e-11, 2))
    axs[0].legend(fontsize=7)
    axs[1].plot(a[1:], d_eps[1:], label=r"$|\Delta\epsilon_g|$")
    axs[1].plot(a[1:], d_op[1:], label=r"$\max|\Delta Q|, |\Delta R|$")
    axs[1].axvline(left, color="k", ls=":", lw=0.8, label="leaves series region (tol 1e-6)")
    axs[1].set(xscale="log", yscale="log", xlabel=r"$\alpha$")
    axs[1].legend(fontsize=7)
    return fig
