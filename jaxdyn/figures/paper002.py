"""Paper 002 (Oostwal, Straat & Biehl, Physica A 2021, arXiv:1910.07476): equilibrium statics of
the K = M soft committee machine at high temperature -- ReLU vs. sigmoid (1 + erf(x/sqrt 2),
whose eps_g equals that of jaxdyn.Erf()).

Figures 2-5 of the paper from jaxdyn's branches (stable parts solid, unstable thin dotted), the
table of transitions K = 2..20, the full-Hessian classification of the R < S states, and a
finite-N Gibbs-sampling check of the saddle point.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxdyn as jd

from .._reproduce import register
from . import new_axes, save


def branches(K, g, *, alpha_max, n_alpha=300):
    """The unspecialised, specialised (R > S) and anti-specialised (R < S) branches as dicts of
    numpy arrays (alpha, R, S, C, eps_g, beta_f, stable), plus the transition."""
    tr = jd.specialisation_transition(K=K, g=g)
    a_u = np.linspace(1e-3, alpha_max, n_alpha)
    bu = jd.unspecialised_branch(K=K, g=g, alphas=jnp.asarray(a_u))
    out = {"transition": tr}
    for name, b in (("unspecialised", bu),
                    ("specialised", jd.specialised_branch(K=K, g=g, transition=tr)),
                    ("anti", jd.specialised_branch(K=K, g=g, kind="anti", transition=tr))):
        d = {k: np.asarray(getattr(b, k)) for k in ("alpha", "R", "S", "C", "eps_g", "beta_f")}
        ok = np.asarray(b.converged) & (d["alpha"] <= alpha_max * 1.02)
        d = {k: v[ok] for k, v in d.items()}
        d["stable"] = np.asarray(b.min_eig_ss)[ok] > 0
        if name == "unspecialised":
            d["stable"] = d["alpha"] < tr.alpha_inst
        out[name] = d
    return out


def _plot(ax, b, key, color, label, **kw):
    a, y, st = b["alpha"], b[key], b["stable"]
    ys = np.where(st, y, np.nan)
    yu = np.where(~st, y, np.nan)
    ax.plot(a, ys, color=color, label=label, **kw)
    ax.plot(a, yu, color=color, lw=0.7, ls=":")


def _vlines(ax, tr, with_d=True):
    ax.axvline(tr.alpha_s, color="0.4", ls=":", lw=0.8)
    ax.axvline(tr.alpha_c, color="0.4", ls="--", lw=0.8)
    if with_d:
        ax.axvline(tr.alpha_inst, color="0.4", ls="-.", lw=0.8)


def plot_rs_panel(bb, title, *, ax=None):
    """R and S of the three branches `bb` (from `branches`) against alpha, stable parts solid."""
    fig, (ax,) = new_axes(ax)
    for name, c in (("unspecialised", "k"), ("specialised", "C0"), ("anti", "C3")):
        b = bb[name]
        _plot(ax, b, "R", c, f"R ({name})")
        if name != "unspecialised":
            _plot(ax, b, "S", c, f"S ({name})", ls="--")
    ax.set_xlabel(r"$\alpha = \beta P/(KN)$")
    ax.set_ylabel("R, S")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)
    return fig


def plot_eps_panel(bb, title, *, ax=None):
    """eps_g of the three branches `bb` (from `branches`) against alpha, stable parts solid."""
    fig, (ax,) = new_axes(ax)
    for name, c in (("unspecialised", "k"), ("specialised", "C0"), ("anti", "C3")):
        _plot(ax, bb[name], "eps_g", c, name)
    ax.set_xlabel(r"$\alpha$")
    ax.set_ylabel(r"$\epsilon_g$")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)
    return fig


def _tr_numbers(tr):
    return {k: v for k, v in tr.as_dict().items()}


@register("002-fig2", "paper 002 fig. 2: sigmoid K=2 (continuous, alpha_c) and K=5 (alpha_s, alpha_c, alpha_d)")
def fig2(outdir, *, fast=False):
    g = jd.Erf()
    b2 = branches(2, g, alpha_max=60.0)
    b5 = branches(5, g, alpha_max=90.0)
    fig, axs = new_axes(None, 2, nrows=2, figsize=(10, 7))
    axs = axs.reshape(2, 2)
    t2, t5 = b2["transition"], b5["transition"]
    plot_rs_panel(b2, ax=axs[0, 0], title=rf"sigmoid K=2: $\alpha_c$ = {t2.alpha_c:.4f} (paper 23.7)")
    axs[0, 0].axvline(t2.alpha_c, color="0.4", ls="--", lw=0.8)
    plot_eps_panel(b2, ax=axs[0, 1], title="sigmoid K=2: learning curve (kink at alpha_c)")
    axs[0, 1].axvline(t2.alpha_c, color="0.4", ls="--", lw=0.8)
    plot_rs_panel(b5, ax=axs[1, 0], title=rf"K=5: $\alpha_s$={t5.alpha_s:.3f}, $\alpha_c$={t5.alpha_c:.3f}, "
              rf"$\alpha_d$={t5.alpha_inst:.3f} (paper 44.3, 46.6, 62.8)")
    _vlines(axs[1, 0], t5)
    plot_eps_panel(b5, ax=axs[1, 1], title=r"K=5: dotted vertical $\alpha_s$, dashed $\alpha_c$, dash-dot $\alpha_d$")
    _vlines(axs[1, 1], t5)
    axs[1, 1].set_ylim(0, 0.06)
    axs[0, 1].set_ylim(0, 0.12)
    save(fig, outdir / "002-fig2.png")
    return {"K2": _tr_numbers(t2), "K5": _tr_numbers(t5)}


@register("002-fig3", "paper 002 fig. 3: ReLU K=2 and K=10 (R > S and R < S branches)")
def fig3(outdir, *, fast=False):
    g = jd.ReLU()
    b2 = branches(2, g, alpha_max=20.0)
    b10 = branches(10, g, alpha_max=20.0)
    t2, t10 = b2["transition"], b10["transition"]
    fig, axs = new_axes(None, 2, nrows=2, figsize=(10, 7))
    axs = axs.reshape(2, 2)
    plot_rs_panel(b2, ax=axs[0, 0], title=rf"ReLU K=2: $\alpha_c$ = {t2.alpha_c:.4f} (paper 6.1)")
    plot_eps_panel(b2, ax=axs[0, 1], title="ReLU K=2: learning curve")
    plot_rs_panel(b10, ax=axs[1, 0], title=rf"ReLU K=10: $\alpha_s$={t10.alpha_s:.4f}, $\alpha_c$={t10.alpha_c:.4f}, "
              rf"$\alpha_{{inst}}$={t10.alpha_inst:.4f} (paper 6.2)")
    plot_eps_panel(b10, ax=axs[1, 1], title="ReLU K=10: R > S (blue) vs R < S (red)")
    for ax in axs.ravel():
        ax.axvline(t2.alpha_c if ax in axs[0] else t10.alpha_c, color="0.4", ls="--", lw=0.8)
    axs[0, 1].set_ylim(0, 0.35)
    axs[1, 1].set_ylim(0, 0.12)
    save(fig, outdir / "002-fig3.png")
    return {"K2": _tr_numbers(t2), "K10": _tr_numbers(t10)}


@register("002-fig4", "paper 002 fig. 4: ReLU K -> infinity, alpha_c = 2 pi, R > 0 and R < 0 equal eps_g")
def fig4(outdir, *, fast=False):
    g = jd.ReLU()
    lk = jd.large_K_transition(g=g)
    R = np.linspace(1e-4, 0.999, 800)
    # branch alpha(R) of beta f / K = alpha eps_inf(R) - 1/2 ln(1 - R^2): alpha eps_inf' = -R/(1-R^2)

    de = jax.vmap(jax.grad(lambda r: jd.large_K_eps_g(r, g)))(jnp.asarray(R))
    a = np.asarray(-R / ((1 - R**2) * de))
    eps = np.asarray(jd.large_K_eps_g(jnp.asarray(R), g))
    fig, axs = new_axes(None, 2, figsize=(10, 3.6))
    amax = 30.0
    m = a <= amax
    axs[0].plot(a[m], R[m], "C0", label="R > 0")
    axs[0].plot(a[m], -R[m], "C3", ls="-.", label="R < 0")
    axs[0].plot([0, lk.alpha_c], [0, 0], "k", label="unspecialised (R = 0, S = 1/K)")
    axs[0].plot([lk.alpha_c, amax], [0, 0], "k:", lw=0.7)
    axs[0].axvline(lk.alpha_c, color="0.4", ls="--", lw=0.8)
    axs[0].set_xlabel(r"$\alpha$")
    axs[0].set_ylabel("R")
    axs[0].set_title(rf"ReLU, $K\to\infty$: continuous at $\alpha_c$ = {lk.alpha_c:.10f} = 2$\pi$",
                     fontsize=9)
    axs[0].legend(fontsize=7)
    axs[1].plot(a[m], eps[m], "C0", label=r"R > 0 and R < 0 (identical)")
    axs[1].plot(a[m], np.asarray(jd.large_K_eps_g(-jnp.asarray(R), g))[m], "C3", ls="-.")
    axs[1].plot([0, lk.alpha_c], [0.25 - 0.5 / np.pi] * 2, "k",
                label=r"plateau $1/4 - 1/(2\pi)$")
    axs[1].plot(a[m], 1 / (2 * a[m]), "0.5", lw=0.7, ls="--", label=r"$1/(2\alpha)$")
    axs[1].set_ylim(0, 0.12)
    axs[1].set_xlabel(r"$\alpha$")
    axs[1].set_ylabel(r"$\epsilon_g$")
    axs[1].legend(fontsize=7)
    save(fig, outdir / "002-fig4.png")
    return {"relu_large_K": lk.as_dict(), "plateau_eps_g": 0.25 - 0.5 / np.pi,
            "eps_g_at_alpha_100_times_2alpha": float(2 * 100 * np.interp(100, a, eps))}


@register("002-fig5", "paper 002 fig. 5: student-student overlap C(alpha), sigmoid K=5 and ReLU K=10")
def fig5(outdir, *, fast=False):
    b5 = branches(5, jd.Erf(), alpha_max=90.0)
    b10 = branches(10, jd.ReLU(), alpha_max=30.0)
    fig, axs = new_axes(None, 2, figsize=(10, 3.8))
    for ax, bb, title in ((axs[0], b5, "sigmoid K=5"), (axs[1], b10, "ReLU K=10")):
        for name, c in (("unspecialised", "k"), ("specialised", "C0"), ("anti", "C3")):
            _plot(ax, bb[name], "C", c, name)
        ax.axhline(0, color="0.7", lw=0.5)
        ax.set_xlabel(r"$\alpha$")
        ax.set_ylabel("C")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    _vlines(axs[0], b5["transition"])
    axs[0].set_ylim(-1.5e-3, 1.0e-3)
    axs[0].set_xlim(30, 90)
    axs[1].axvline(b10["transition"].alpha_c, color="0.4", ls="--", lw=0.8)
    # where C changes sign on the sigmoid R = S / R < S branches (paper: at alpha_d)
    anti = b5["anti"]
    i = np.nonzero(np.diff(np.sign(anti["C"])))[0]
    a0 = float(np.interp(0.0, anti["C"][i[0]:i[0] + 2], anti["alpha"][i[0]:i[0] + 2])) if i.size else None
    save(fig, outdir / "002-fig5.png")
    un = b10["unspecialised"]
    return {"erf_K5_alpha_d": b5["transition"].alpha_inst, "erf_K5_C_at_alpha_d": b5["transition"].C_inst,
            "erf_K5_C_zero_on_anti_branch": a0,
            "relu_K10_C_at_alpha_c": float(np.interp(b10["transition"].alpha_c, un["alpha"], un["C"]))}


def transition_table(Ks, g):
    return {int(K): jd.specialisation_transition(K=K, g=g).as_dict() for K in Ks}


@register("002-transitions", "paper 002: alpha_inst, alpha_s, alpha_c, jump for K=2..20 (ReLU, sigmoid), K -> inf")
def transitions(outdir, *, fast=False):
    import time


    Ks = [2, 3, 5] if fast else list(range(2, 21))
    out = {}
    t0 = time.perf_counter()
    for name, g in (("relu", jd.ReLU()), ("erf", jd.Erf())):
        out[name] = transition_table(Ks, g)
        out[name + "_large_K"] = jd.large_K_transition(g=g).as_dict()
    out["table_wall_s"] = time.perf_counter() - t0
    lines = ["| K | act | alpha_inst | alpha_s | alpha_c | jump R-S | continuous |", "|---|---|---|---|---|---|---|"]
    for name in ("relu", "erf"):
        for K, d in out[name].items():
            lines.append(f"| {K} | {name} | {d['alpha_inst']:.10f} | {d['alpha_s']:.10f} | "
                         f"{d['alpha_c']:.10f} | {d['jump']:.6f} | {d['continuous']} |")
    (outdir / "002-transitions.md").write_text("\n".join(lines) + "\n")

    fig, axs = new_axes(None, 2, figsize=(10, 3.6))
    for ax, name in zip(axs, ("relu", "erf")):
        K = np.array(list(out[name]))
        for key, st in (("alpha_inst", "-."), ("alpha_c", "--"), ("alpha_s", ":")):
            ax.plot(K, [out[name][k][key] for k in K], "o", ls=st, ms=3, label=key)
        lk = out[name + "_large_K"]
        ax.axhline(lk["alpha_c"], color="0.5", lw=0.7, label=r"$\alpha_c(K\to\infty)$")
        ax.set_xlabel("K")
        ax.set_ylabel(r"$\alpha$")
        ax.set_title(f"{name}: transition vs K", fontsize=9)
        ax.legend(fontsize=7)
    axs[0].set_ylim(6.0, 6.35)
    save(fig, outdir / "002-transitions.png")
    return out


def full_hessian_along(K, g, branch, alphas):
    """Full-Hessian eigenvalue summary on a site-symmetric branch at (approximately) `alphas`."""
    rows = []
    a = np.asarray(branch.alpha)
    ok = np.asarray(branch.converged)
    for at in alphas:
        cand = np.where(ok, np.abs(a - at), np.inf)
        i = int(np.argmin(cand))
        grad, lam = jd.full_hessian(branch.R[i], branch.S[i], branch.C[i], K=K, alpha=a[i], g=g)
        lam = np.asarray(lam)
        tol = 1e-9 * max(1.0, np.abs(lam).max())
        rows.append({"alpha": float(a[i]), "R": float(branch.R[i]), "S": float(branch.S[i]),
                     "C": float(branch.C[i]), "min_eig": float(lam[0]),
                     "n_negative": int(np.sum(lam < -tol)), "grad": float(grad)})
    return rows


@register("002-full-hessian", "paper 002: R < S (and R > S) ReLU states classified by the full Hessian, K=3,4,5,10")
def full_hessian_table(outdir, *, fast=False):
    g = jd.ReLU()
    Ks = [3, 10] if fast else [3, 4, 5, 10]
    alphas = [6.5, 8, 10, 15, 20, 40] if fast else [6.5, 7, 8, 10, 12, 15, 20, 30, 40, 60, 100, 150]
    out = {}
    fig, (ax,) = new_axes(None, figsize=(6, 3.8))
    for K in Ks:
        tr = jd.specialisation_transition(K=K, g=g)
        anti = jd.specialised_branch(K=K, g=g, kind="anti", transition=tr)
        spec = jd.specialised_branch(K=K, g=g, transition=tr)
        rows = full_hessian_along(K, g, anti, alphas)
        rows_spec = full_hessian_along(K, g, spec, [a for a in alphas if a > tr.alpha_c])
        entry = {"anti": rows, "specialised": rows_spec}
        # alpha where the R < S state becomes a full-space minimum (if it does in the range)
        mins = np.array([r["min_eig"] for r in rows])
        sgn = np.nonzero((mins[:-1] < 0) & (mins[1:] > 0))[0]
        if sgn.size:
            a_arr = np.asarray(anti.alpha)

            def lam0(at):
                return full_hessian_along(K, g, anti, [at])[0]["min_eig"]

            lo, hi = rows[sgn[0]]["alpha"], rows[sgn[0] + 1]["alpha"]
            # refine on the branch's own grid (nearest points), then by interpolation
            grid = [a for a in a_arr if lo <= a <= hi]
            vals = [lam0(a) for a in grid]
            j = np.nonzero(np.diff(np.sign(vals)))[0][0]
            entry["alpha_minimum_from"] = float(np.interp(0.0, [vals[j], vals[j + 1]], [grid[j], grid[j + 1]]))
            entry["alpha_minimum_from_bracket"] = [float(grid[j]), float(grid[j + 1])]
        out[K] = entry
        ax.plot([r["alpha"] for r in rows], [r["n_negative"] for r in rows], "o-", ms=3, label=f"K={K}")
    ax.set_xscale("log")
    ax.set_xlabel(r"$\alpha$")
    ax.set_ylabel("negative full-Hessian directions")
    ax.set_title("ReLU R < S branch: (K-1)(K-2)/2 unstable directions off site symmetry", fontsize=8)
    ax.legend(fontsize=7)
    save(fig, outdir / "002-full-hessian.png")
    return out


@register("002-gibbs", "annealed Gibbs density sampled at N = 100, 300, 1000 (geodesic HMC) vs the saddle point")
def gibbs(outdir, *, fast=False):
    Ns = [100, 300] if fast else [100, 300, 1000]
    n_chains = 4 if fast else 16
    n_samples, n_burn = (60, 40) if fast else (300, 150)
    cases = [("relu", jd.ReLU(), 3.0), ("relu", jd.ReLU(), 12.0), ("erf", jd.Erf(), 12.0),
             ("erf", jd.Erf(), 40.0)]
    out = {}
    fig, axs = new_axes(None, len(cases), figsize=(14, 3.6))
    for ax, (name, g, alpha) in zip(axs, cases):
        guess = "specialised" if (name == "relu" and alpha > 6.1) or (name == "erf" and alpha > 23.7) \
            else "unspecialised"
        eq = jd.equilibrium(K=2, g=g, alpha=alpha, guess=guess)
        rows = []
        for j, N in enumerate(Ns):
            s = jd.sample_gibbs(K=2, g=g, alpha=alpha, N=N, n_chains=n_chains, n_samples=n_samples,
                                n_burn=n_burn, key=1000 + j)
            m = s.chain_means()
            eqN = jd.equilibrium(K=2, g=g, alpha=alpha * N / (N - 5), guess=guess, full=False)
            row = {"N": N, "acceptance": float(np.mean(np.asarray(s.acceptance)))}
            for k in ("R", "S", "C", "eps_g"):
                row[k + "_mean"] = float(m[k].mean())
                row[k + "_se"] = float(m[k].std(ddof=1) / np.sqrt(len(m[k])))
            # spread of the single-sample distribution (finite-N fluctuations)
            row["R_spread"] = float(np.std(np.asarray(s.R_diag)))
            row["mode_R_finite_N"], row["mode_S_finite_N"] = float(eqN.R), float(eqN.S)
            rows.append(row)
            x = np.full(len(m["R"]), N) * (1 + 0.04 * (np.arange(len(m["R"])) - len(m["R"]) / 2) / len(m["R"]))
            ax.plot(x, m["R"], ".", color="C0", ms=3)
            ax.plot(x, m["S"], ".", color="C3", ms=3)
            ax.plot(x, m["C"], ".", color="C2", ms=3)
            ax.errorbar(N, row["R_mean"], yerr=row["R_spread"], color="C0", capsize=3)
            ax.errorbar(N, row["S_mean"], yerr=float(np.std(np.asarray(s.S_off))), color="C3", capsize=3)
        for val, c, lab in ((eq.R, "C0", "R"), (eq.S, "C3", "S"), (eq.C, "C2", "C")):
            ax.axhline(float(val), color=c, lw=0.8, ls="--", label=f"saddle {lab}")
        ax.set_xscale("log")
        ax.set_xlabel("N")
        ax.set_title(f"{name} K=2, alpha={alpha:g} ({eq.kind}, R-S={float(eq.R - eq.S):.3f})", fontsize=8)
        ax.legend(fontsize=6)
        out[f"{name}_alpha{alpha:g}"] = {"saddle": {"R": float(eq.R), "S": float(eq.S), "C": float(eq.C),
                                                   "eps_g": float(eq.eps_g)}, "samples": rows}
    axs[0].set_ylabel("chain means (dots), single-sample spread (bars)")
    save(fig, outdir / "002-gibbs.png")
    return out
