"""Learning-rate sweeps of paper 001's setting (K = M = 2 ReLU, T = diag(1, 2), full eta^2 ODE,
exact I4): figure 2a and a 1024-point phase diagram, both with `jaxdyn.sweep`.

`plot_phase_diagram(ds)` draws any eta sweep (used by `jaxdyn sweep` and the notebook too).
"""

from __future__ import annotations

import json
import warnings

import numpy as np

import jaxdyn as jd

from .._reproduce import register
from ..papers import paper001, plateau_fixed_point
from . import new_axes, save


PAPER_001 = {"nonmonotonic": 1.2175, "fold": 1.2545, "divergence": 1.2575}
REGIME_COLORS = {-1: "0.5", 0: "tab:green", 1: "tab:orange", 2: "tab:red"}
REGIME_NAMES = {-1: "failed", 0: "monotonic", 1: "non-monotonic", 2: "divergent"}


def _p001():
    return paper001()


def regime_boundaries(ds) -> dict:
    """Brackets `(last eta of the lower regime, first eta of the upper one)` along the `eta`
    dimension of a 1-D eta sweep: monotonic -> non-monotonic and -> divergent."""
    eta = ds["eta"].values
    reg = ds["regime"].values.reshape(eta.size, -1)[:, 0]
    out = {}
    for name, lo, hi in [("nonmonotonic", {0}, {1, 2}), ("divergence", {0, 1}, {2})]:
        up = np.isin(reg, list(hi))
        if up.any() and (~up[:np.argmax(up)]).any() and np.isin(reg[:np.argmax(up)], list(lo)).all():
            j = int(np.argmax(up))
            out[name] = (float(eta[j - 1]), float(eta[j])) if j > 0 else (None, float(eta[0]))
        else:
            out[name] = None
    # is the classification a clean staircase (no interleaving)?
    r = reg[reg >= 0]
    out["ordered"] = bool(np.all(np.diff(r) >= 0))
    return out


def plot_phase_diagram(ds, path=None, *, axes=None, thresholds: dict | None = None,
                       title: str | None = None):
    """Phase diagram of an eta sweep into three axes (`axes`, or a new figure; returned):
    eps_g(eta, alpha) as an image with the regimes, and the per-eta summaries (plateau height and
    length, largest rise, alpha of divergence). Extra axes beyond eta are reduced to their first
    entry. `thresholds`: {label: eta} drawn as lines. (`path`, deprecated: also write the figure
    there and close it; write it yourself with `fig.savefig`.)"""
    from matplotlib.colors import LogNorm  # deferred: matplotlib only when drawing

    sel = {d: 0 for d in ds["eps_g"].dims if d not in ("eta", "alpha")}
    d = ds.isel(sel)
    eta, alpha = d["eta"].values, d["alpha"].values
    eg = d["eps_g"].values
    reg = d["regime"].values
    fig, axs = new_axes(axes, 3, figsize=(15, 4.4))
    ax = axs[0]
    vmin = 1e-10  # below ~1e-10 eps_g is integration noise (it may even be < 0): clip
    img = np.where(np.isfinite(eg), np.clip(eg, vmin, None), np.nan)  # nan = after a divergence
    pm = ax.pcolormesh(alpha, eta, img, norm=LogNorm(vmin=vmin, vmax=np.nanmax(img)), shading="auto",
                       cmap="viridis")
    ax.set_facecolor("tab:red")
    fig.colorbar(pm, ax=ax, label=r"$\epsilon_g$ (red: diverged)")
    ax.set_xscale("log")
    ax.set_xlabel(r"$\alpha$")
    ax.set_ylabel(r"$\eta$")
    ax.set_title(r"$\epsilon_g(\alpha)$")
    ax = axs[1]
    for r, c in REGIME_COLORS.items():
        m = reg == r
        if m.any():
            ax.scatter(eta[m], np.where(np.isfinite(d["plateau_height"].values[m]),
                                        d["plateau_height"].values[m], np.nan),
                       s=4, color=c, label=f"{REGIME_NAMES[r]} ({int(m.sum())})")
    ax.set_xlabel(r"$\eta$")
    ax.set_ylabel("plateau height", color="k")
    ax2 = ax.twinx()
    ax2.plot(eta, d["plateau_length"].values, "k-", lw=0.8, label="plateau length")
    ax2.set_ylabel(r"plateau length ($\alpha$)")
    ax.legend(loc="upper left", fontsize=7, markerscale=3)
    ax.set_title("regimes and plateau")
    ax = axs[2]
    rise = d["eps_rise"].values
    m = reg != 2
    ax.semilogy(eta[m], np.where(rise[m] > 0, rise[m], np.nan), "o", ms=2, color="tab:orange",
                label="largest relative rise of $\\epsilon_g$")
    axr = ax.twinx()
    axr.plot(eta, d["alpha_diverged"].values, "r.", ms=2, label=r"$\alpha$ of divergence")
    axr.set_ylabel(r"$\alpha$ of divergence", color="tab:red")
    ax.set_xlabel(r"$\eta$")
    ax.set_title("non-monotonicity and divergence")
    ax.legend(loc="upper left", fontsize=7)
    for k, (lab, val) in enumerate((thresholds or {}).items()):
        if val is not None:
            axs[0].axhline(val, color=f"C{k + 4}", ls="--", lw=0.8)
            for a in axs[1:]:
                a.axvline(val, color=f"C{k + 4}", ls="--", lw=0.8)
    if thresholds:
        txt = ", ".join(f"{k} = {v:.5g}" for k, v in thresholds.items() if v is not None)
        fig.text(0.99, 0.005, "dashed: " + txt, fontsize=7, ha="right")
    if title:
        fig.suptitle(title)
    if path is not None:
        warnings.warn("plot_phase_diagram(ds, path): write the returned figure yourself "
                      "(fig.savefig(path)); the path argument will go", FutureWarning, stacklevel=2)
        save(fig, path)
    return fig


def _thresholds_for(outdir, sc, op0, brackets, fast):
    """Critical etas for the lines: from `001-thresholds.json` in `outdir` if it is there, else
    (full mode) computed with jaxdyn's threshold finders inside the sweep's brackets, else the
    paper's printed values."""
    f = outdir / "001-thresholds.json"
    if f.exists():
        ex = json.loads(f.read_text()).get("exact", {})
        vals = {k: ex[k]["value"] for k in ("nonmonotonic", "fold", "divergence") if k in ex}
        if vals:
            return vals, "jaxdyn (001-thresholds.json)"
    if not fast and brackets.get("nonmonotonic") and brackets.get("divergence"):
        lo, hi = brackets["nonmonotonic"]
        nm = jd.nonmonotonic_eta(sc, op0, eta_bracket=(lo - 2e-3, hi + 2e-3), xtol=1e-7)
        lo, hi = brackets["divergence"]
        dv = jd.divergence_eta(sc, op0, eta_bracket=(lo - 1e-3, hi + 1e-3), xtol=1e-7)
        # the fold to the resolution of a short continuation (fold_eta refines it: 001-thresholds)
        fp = plateau_fixed_point(sc, 1.24)
        br = jd.continuation(sc, fp.x, eta_start=1.24, eta_stop=1.3, ds_max=0.01,
                             stop_at_fold=True, max_points=200)
        fold = float(np.max(br.eta)) if br.folds else PAPER_001["fold"]
        src = "jaxdyn threshold finders" + ("" if br.folds else " (fold: paper value)")
        return {"nonmonotonic": float(nm), "divergence": float(dv), "fold": fold}, src
    return dict(PAPER_001), "paper 001 (printed)"


@register("001-phase-diagram", "1024-point eta sweep in [0.1, 1.3] of paper 001's K=M=2 ReLU ODE: regimes")
def phase_diagram_001(outdir, *, fast=False):
    sc, op0 = _p001()
    n = 32 if fast else 1024
    eta = np.linspace(0.1, 1.3, n)
    alphas = np.geomspace(1e-2, 300.0 if fast else 1e3, 100 if fast else 200)
    ds = jd.sweep(sc, op0, eta=eta, alphas=alphas, progress=False,
                  path=None if fast else outdir / "001-phase-diagram.nc", overwrite=True)
    br = regime_boundaries(ds)
    th, source = _thresholds_for(outdir, sc, op0, br, fast)
    save(plot_phase_diagram(
        ds, thresholds=th,
        title=rf"paper 001, $K=M=2$ ReLU, $T=\mathrm{{diag}}(1,2)$: {n}-point $\eta$ sweep "
              rf"(full $\eta^2$ ODE, exact $I_4$); lines: {source}"), outdir / "001-phase-diagram.png")
    reg = ds["regime"].values
    out = {
        "n_points": n, "eta_range": [0.1, 1.3], "alpha_max": float(alphas[-1]),
        "counts": {REGIME_NAMES[r]: int((reg == r).sum()) for r in REGIME_NAMES},
        "boundaries_sweep": {k: v for k, v in br.items()},
        "thresholds": th, "thresholds_source": source, "paper": PAPER_001,
        "sweep_wall_time_s": float(ds.attrs["wall_time_s"]), "n_traces": int(ds.attrs["n_traces"]),
        "n_devices": int(ds.attrs["n_devices"]),
    }
    for k, v in br.items():
        if isinstance(v, tuple) and v[0] is not None:
            out[f"{k}_sweep_midpoint"] = 0.5 * (v[0] + v[1])
    return out


@register("001-fig2a", "Paper 001 fig. 2a: eps_g(alpha) of the full eta^2 ODE for several eta (one sweep)")
def fig2a_001(outdir, *, fast=False):
    sc, op0 = _p001()
    eta = (np.array([0.5, 1.0, 1.22, 1.25, 1.26]) if fast
           else np.array([0.1, 0.5, 0.8, 1.0, 1.1, 1.2, 1.22, 1.24, 1.25, 1.255, 1.257, 1.26, 1.3]))
    alphas = np.geomspace(1e-2, 300.0 if fast else 1e3, 150 if fast else 400)
    ds = jd.sweep(sc, op0, eta=eta, alphas=alphas, progress=False)
    save(plot_learning_curves(ds), outdir / "001-fig2a.png")
    return {
        "eta": eta,
        "regime": ds["regime"].values,
        "plateau_height": ds["plateau_height"].values,
        "plateau_length": ds["plateau_length"].values,
        "eps_rise": ds["eps_rise"].values,
        "alpha_diverged": ds["alpha_diverged"].values,
        "alpha_to_eps": {str(t): ds["alpha_to_eps"].sel(eps_target=t).values
                         for t in ds["eps_target"].values},
    }


def plot_learning_curves(ds, *, ax=None):
    """eps_g(alpha) of every eta of a 1-D eta sweep, the line style giving the regime (paper 001
    fig. 2a)."""
    import matplotlib  # deferred: matplotlib only when drawing

    fig, (ax,) = new_axes(ax, figsize=(6.4, 4.4))
    eta, alphas = ds["eta"].values, ds["alpha"].values
    cmap = matplotlib.colormaps["plasma"]
    for j, e in enumerate(eta):
        y = ds["eps_g"].sel(eta=e).values
        ok = np.isfinite(y) & (y > 1e-10)
        reg = int(ds["regime"].sel(eta=e))
        ax.plot(alphas[ok], y[ok], color=cmap(j / max(1, len(eta) - 1)),
                ls={0: "-", 1: "--", 2: ":"}.get(reg, "-."),
                label=rf"$\eta={e:g}$ ({REGIME_NAMES[reg]})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(1e-6, 5)
    ax.set_xlabel(r"$\alpha$")
    ax.set_ylabel(r"$\epsilon_g$")
    ax.legend(fontsize=6, ncol=2)
    ax.set_title(r"paper 001 fig. 2a: $K=M=2$ ReLU, $T=\mathrm{diag}(1,2)$, full $\eta^2$ ODE")
    return fig
