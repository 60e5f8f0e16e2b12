"""Fixed points, spectra and critical learning rates (papers 000, 001, 003).

The physics helpers (`plateau_fixed_point`, `tian_saddle`, `perfect_learning`) live in
`jaxdyn.papers`; this module computes and plots.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import jaxdyn as jd

from .._reproduce import register
from . import new_axes, save
from .paper000 import k2m2_plateau, plateau_summary

# the physics helpers live in jaxdyn.papers (re-exported here for old imports)
from ..papers import (
    paper001,
    perfect_learning as perfect_learning,
    plateau_fixed_point as plateau_fixed_point,
    symmetric_guess as symmetric_guess,
    tian_R as tian_R,
    tian_saddle as tian_saddle,
)


def _spec(fp, eta=1.0):
    ev = np.asarray(fp.eigenvalues)
    return {"eigenvalues_real": ev.real, "eigenvalues_imag": ev.imag,
            "eigenvalues_per_eta_alpha": ev.real / eta, "kind": fp.kind,
            "n_unstable": int(fp.n_unstable), "n_marginal": int(fp.n_marginal),
            "residual": float(fp.residual)}


# --------------------------------------------------------------------------- paper 000
@register("000-kmm1-stability", "K=M=1 ReLU: eigenvalues at (R,Q)=(1,1) and eta_c = 2 by root finding")
def kmm1_stability(outdir, *, fast=False):
    sc = jd.Scenario(K=1, M=1)
    pl = perfect_learning(sc)
    etas = np.linspace(0.1, 3.0, 8 if fast else 30)
    lam = []
    for e in etas:
        fp = jd.fixed_point(sc, pl, eta=jnp.asarray(e))
        lam.append(np.sort(np.asarray(fp.eigenvalues).real))
    lam = np.array(lam)
    ref = np.sort(np.stack([-etas / 2, etas**2 / 2 - etas], 1), axis=1)
    th = jd.stability_threshold(sc, pl, eta_bracket=(0.5, 3.0))
    save(plot_kmm1_spectrum(etas, lam, ref, float(th)), outdir / "000-kmm1-stability.png")
    return {"eta_c": th.value, "eta_c_tol": th.tol, "paper_eta_c": 2.0,
            "max_abs_eigenvalue_error": float(np.max(np.abs(lam - ref)))}


def plot_kmm1_spectrum(etas, lam, ref, eta_c, *, ax=None):
    """Eigenvalues `lam` (n, 2) at perfect learning against eta (symbols), the closed forms `ref`
    (lines) and the threshold `eta_c` (dotted)."""
    fig, (ax,) = new_axes(ax, figsize=(4.5, 3.2))
    ax.plot(etas, lam, "o", ms=3)
    ax.plot(etas, ref, "k-", lw=0.7)
    ax.axvline(eta_c, ls=":", c="r")
    ax.axhline(0, c="k", lw=0.5)
    ax.set(xlabel=r"$\eta$", ylabel=r"$\lambda$ at $(R,Q)=(1,1)$", title=r"$K=M=1$: $-\eta/2$, $\eta^2/2-\eta$")
    return fig


def plot_plateau_000(tr, fp, *, axes=None):
    """The K = M = 2 trajectory's R with the plateau fixed point `fp` (left) and its spectrum."""
    fig, axs = new_axes(axes, 2, figsize=(9, 3.3))
    a = np.asarray(tr.alpha)
    for i in range(2):
        for n in range(2):
            axs[0].plot(a, np.asarray(tr.R[:, i, n]), label=f"$R_{{{i + 1}{n + 1}}}$")
    axs[0].axhline(float(fp.x[0]), c="k", ls=":", label="fixed point $r$")
    axs[0].set(xscale="symlog", xlabel=r"$\alpha$", title=r"$K=M=2$, $\eta=0.1$ (small-$\eta$)")
    axs[0].set_xlim(left=0.0)  # alpha >= 0 (symlog would otherwise show a negative side)
    axs[0].legend(fontsize=7)
    ev = np.asarray(fp.eigenvalues)
    axs[1].bar(range(len(ev)), ev.real)
    axs[1].set(xticks=range(len(ev)), ylabel=r"Re $\lambda/\eta$", title="plateau spectrum")
    return fig


@register("000-plateau-fixed-point", "K=M=2 ReLU small-eta plateau fixed point, spectrum, unstable eigenvector")
def plateau_000(outdir, *, fast=False):
    sc = jd.Scenario(K=2, M=2)
    fp = plateau_fixed_point(sc, 1.0, eta2=False)
    fp01 = plateau_fixed_point(sc, 0.1, eta2=False)
    tr = k2m2_plateau(n=200 if fast else 600)
    plat = plateau_summary(tr)
    u = np.asarray(fp.eigenvectors)[:, 0].real
    u = u / np.linalg.norm(u)
    save(plot_plateau_000(tr, fp), outdir / "000-plateau-fixed-point.png")
    return {
        "fixed_point": dict(zip(fp.labels, np.asarray(fp.x).tolist())),
        "spectrum_eta1": _spec(fp, 1.0),
        "spectrum_eta0.1": _spec(fp01, 0.1),
        "unstable_eigenvector": dict(zip(fp.labels, u.tolist())),
        "paper": {"R_plateau": 0.52, "lambda5": 0.24, "u5": [0.5, -0.5, -0.5, 0.5, 0, 0, 0]},
        "time_scaling": "eigenvalues of d/d(eta*alpha) (= d/dalpha at eta = 1); at eta = 0.1 per "
                        "unit alpha they are ten times smaller",
        "trajectory_plateau": plat,
        "eps_g_fixed_point": float(jd.eps_g(sc, fp.op)),
    }


@register("003-symmetric-saddle", "Paper 003: the saddle of identical students as a fixed point, spectrum")
def tian(outdir, *, fast=False):
    Ks = [2, 3] if fast else [2, 3, 4, 5]
    out = {}
    for K in Ks:
        fp = tian_saddle(K)
        x = np.asarray(fp.x)
        sc = jd.Scenario(K=K, M=K)
        out[f"K={K}"] = {
            "R_formula": tian_R(K), "R_fixed_point": float(x[0]),
            "abs_error": float(np.max(np.abs(x[: K * K] - tian_R(K)))),
            "Q_all": float(x[K * K]), "K_R2": K * tian_R(K) ** 2,
            "eps_g": float(jd.eps_g(sc, fp.op)),
            "subspace_eigenvalues": np.asarray(fp.subspace_eigenvalues()).real,
            **_spec(fp, 1.0),
        }
    sc2 = jd.Scenario(K=2, M=2)
    pl = plateau_fixed_point(sc2, 1.0, eta2=False)
    out["paper000_plateau_K2"] = {"x": dict(zip(pl.labels, np.asarray(pl.x).tolist())),
                                  "eps_g": float(jd.eps_g(sc2, pl.op)),
                                  "n_unstable": int(pl.n_unstable)}
    spectra = {K: out[f"K={K}"]["eigenvalues_real"] for K in Ks}
    save(plot_saddle_spectra(spectra), outdir / "003-symmetric-saddle.png")
    return out


def plot_saddle_spectra(spectra, *, ax=None):
    """Real parts of the spectra `{K: eigenvalues}` of the identical-student saddle against K."""
    fig, (ax,) = new_axes(ax, figsize=(4.5, 3.2))
    for K, ev in spectra.items():
        ev = np.asarray(ev)
        ax.plot([K] * len(ev), ev, "_", ms=14)
    ax.axhline(0, c="k", lw=0.5)
    ax.set(xlabel="K", ylabel=r"Re $\lambda$ ($\eta\alpha$ units)", title="identical-student saddle")
    return fig


# --------------------------------------------------------------------------- paper 001
def _p001():
    return paper001()


def plateau_branch_001(eta_start=0.05, eta_stop=1.6, *, i4="exact", order=10, ds_max=0.05):
    """Paper 001 fig. 2b: the plateau fixed point followed in eta (pseudo-arclength), up to and
    around its fold."""
    sc, _ = _p001()
    fp = plateau_fixed_point(sc, eta_start, i4=i4, order=order)
    return jd.continuation(sc, fp.x, eta_start=eta_start, eta_stop=eta_stop, i4=i4, order=order,
                           ds_max=ds_max, max_points=600)


def paper001_thresholds(*, i4="exact", order=10, fast=False):
    """The four critical learning rates of paper 001's setting (exact values: see
    docs/REPRODUCTION.md). `fast`: loose tolerances, and the fold only to the resolution
    of a short branch (no refinement), no non-monotonic onset."""
    sc, op0 = _p001()
    out = {}
    if fast:
        fp = plateau_fixed_point(sc, 1.24, i4=i4, order=order)
        br = jd.continuation(sc, fp.x, eta_start=1.24, eta_stop=1.3, i4=i4, order=order,
                             ds_max=0.01, stop_at_fold=True, max_points=60)
        f = br.folds[0]
        out["fold"] = jd.Threshold(f["eta"], abs(f["eta"] - f["eta_prev"]), "fold (branch resolution)",
                                   (1.24, 1.3))
    else:
        fp = plateau_fixed_point(sc, 1.0, i4=i4, order=order)
        out["fold"] = jd.fold_eta(sc, fp.x, eta_start=1.0, eta_stop=2.0, i4=i4, order=order)
    out["perfect_learning_stability"] = jd.stability_threshold(
        sc, perfect_learning(sc), eta_bracket=(1.0, 2.0), i4=i4, order=order,
        xtol=1e-6 if fast else 1e-10)
    if not fast:
        out["nonmonotonic"] = jd.nonmonotonic_eta(sc, op0, eta_bracket=(1.20, 1.23), i4=i4,
                                                  order=order, xtol=1e-9)
    out["divergence"] = jd.divergence_eta(sc, op0, eta_bracket=(1.25, 1.27), i4=i4, order=order,
                                          xtol=1e-4 if fast else 1e-9)
    return out


@register("001-fig2b", "Paper 001 fig. 2b: the symmetric plateau fixed point against eta, with its fold")
def fig2b(outdir, *, fast=False):
    br = (plateau_branch_001(eta_start=1.22, eta_stop=1.3, ds_max=0.05) if fast
          else plateau_branch_001(ds_max=0.03))
    sc, _ = _p001()
    eg = np.asarray([float(jd.eps_g(sc, br.op(i))) for i in range(len(br.eta))])
    save(plot_plateau_branch(br, eg), outdir / "001-fig2b.png")
    return {"eta": br.eta, "x": br.x, "labels": list(br.labels), "n_unstable": br.n_unstable,
            "folds": br.folds, "stability_changes": br.stability_changes, "eps_g": eg,
            "paper_fold_eta": 1.2545}


def plot_plateau_branch(br, eg, *, axes=None):
    """Paper 001 fig. 2b: a `Branch` (R11, R12, Q11, Q12; dashed past the first fold) and eps_g
    `eg` at its points with max Re lambda (right)."""
    fold = br.folds[0] if br.folds else None
    n = len(br.eta)
    k = fold["index"] if fold else n
    fig, axs = new_axes(axes, 2, figsize=(10, 3.6))
    for j, lab in enumerate(br.labels):
        if lab in ("R11", "R12", "Q11", "Q12"):
            axs[0].plot(br.eta[:k], br.x[:k, j], "-", label=lab)
            axs[0].plot(br.eta[k - 1:], br.x[k - 1:, j], "--", c=axs[0].lines[-1].get_color(), lw=0.8)
    if fold:
        axs[0].axvline(fold["eta"], c="k", ls=":", lw=0.8)
    top = max(float(np.max(br.x[:k, j])) for j, lab in enumerate(br.labels)
              if lab in ("R11", "R12", "Q11", "Q12"))
    axs[0].set_ylim(0, 1.5 * top)  # the partner branch runs off to large Q as eta decreases
    axs[0].set_xlabel(r"$\eta$")
    axs[0].set_title("plateau fixed point (dashed: partner branch past the fold)", fontsize=9)
    axs[0].legend(fontsize=7)
    axs[1].plot(br.eta[:k], eg[:k], "-", label=r"$\epsilon_g$ at the fixed point")
    axs[1].plot(br.eta[k - 1:], eg[k - 1:], "--", lw=0.8)
    axs[1].set(xlabel=r"$\eta$", ylabel=r"$\epsilon_g$", yscale="log")
    ax2 = axs[1].twinx()
    ax2.plot(br.eta, br.max_real, "r-", lw=0.6)
    ax2.set_ylabel(r"max Re $\lambda$", color="r")
    return fig


@register("001-thresholds", "Paper 001: non-monotonic onset, plateau fold, divergence, perfect-learning stability")
def thresholds_001(outdir, *, fast=False):
    out = {}
    res = paper001_thresholds(fast=fast)
    out["exact"] = {k: v.as_dict() for k, v in res.items()}
    if not fast:
        res10 = paper001_thresholds(i4="hermite", order=10)
        out["hermite10"] = {k: v.as_dict() for k, v in res10.items()}
    out["paper"] = {"nonmonotonic": 1.2175, "fold": 1.2545, "divergence": 1.2575}
    out["perfect_learning_closed_form"] = 3 - np.sqrt(3)
    return out
