"""Second-layer learning (issue 15): `jaxdyn reproduce readout`.

(a, b) erf K = M = 2, both layers learning: jaxdyn's Euler (dt = 0.01) against the printed output of
the reference C++ integrator (`scmpp_ode.cpp --both`, Goldt et al., NeurIPS 2019; data in
`tests/data/nn2pp-both/` of a source checkout), noiseless and with noise 0.1 + weight decay 0.001.
(c, d) K = 3 students learning an M = 2 teacher with both layers (eta = eta_v = 0.5, no noise), ReLU
and erf from the same initial condition: which student units end up carrying which teacher unit,
and does a unit get silenced (v_k -> 0)?
"""

from __future__ import annotations

import pathlib

import diffrax
import numpy as np

import jaxdyn as jd

from .._reproduce import register
from . import new_axes, save

LR, LR2, DT = 0.5, 0.3, 0.01
_DATA = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data" / "nn2pp-both"


def golden_data(folder=None):
    """The C++ reference trajectories and initial conditions: a dict with `Q0, R0, T, A, v0` and
    `noiseless`, `noisy_wd` (arrays of the printed rows)."""
    d = pathlib.Path(folder) if folder is not None else _DATA
    if not d.is_dir():
        raise FileNotFoundError(
            f"the reference trajectories are not at {d}: they ship with a source checkout of jaxdyn "
            "(tests/data/nn2pp-both); pass folder="
        )
    out = {k: np.loadtxt(d / f"ic_{k}0.dat") for k in ("Q", "R", "T", "A", "v")}
    out = {"Q0": out["Q"], "R0": out["R"], "T": out["T"], "A": out["A"], "v0": out["v"]}
    out["noiseless"] = np.loadtxt(d / "noiseless_ode.dat", delimiter=",", comments="#")
    out["noisy_wd"] = np.loadtxt(d / "noisy_wd_ode.dat", delimiter=",", comments="#")
    return out


def cpp_scenario(data, *, sigma=0.0, wd=0.0):
    """jaxdyn's Scenario for the C++ run (--lr 0.5 --lr2 0.3 [--sigma --wd]): weight decay converted,
    `weight_decay = wd / lr`, `weight_decay_v = wd / lr2` (the C++ decay carries no learning rate)."""
    extra = dict(weight_decay=wd / LR, weight_decay_v=wd / LR2) if wd else {}
    return jd.Scenario(K=2, M=2, T=data["T"], g=jd.Erf(), w=data["A"], eta_v=LR2, noise=sigma, **extra)


def euler_vs_cpp(data, rows, *, sigma=0.0, wd=0.0):
    """jaxdyn's Euler trajectory at the printed times, and the deviation in units of the 6th digit.

    Returns `(alpha, ours, ref, err)` with columns `eg, Q11, Q12, Q22, R11, R12, R21, R22, v1, v2`."""
    sc = cpp_scenario(data, sigma=sigma, wd=wd)
    alphas = np.rint(rows[:, 0] / DT) * DT
    tr = jd.integrate(sc, jd.OrderParams(Q=data["Q0"], R=data["R0"], v=data["v0"]), eta=LR,
                      alphas=alphas, solver=diffrax.Euler(),
                      stepsize_controller=diffrax.ConstantStepSize(), dt0=DT, max_steps=10_000)
    ours = np.column_stack([tr.eps_g, tr.Q[:, 0, 0], tr.Q[:, 0, 1], tr.Q[:, 1, 1],
                            np.asarray(tr.R).reshape(-1, 4), tr.v])
    ref = np.column_stack([rows[:, 1], rows[:, 6:13], rows[:, 15:17]])
    err = np.abs(ours - ref) / 10.0 ** (np.floor(np.log10(np.abs(ref))) - 5)
    return alphas, ours, ref, err


def k3_initial(K=3, M=2, seed=1):
    """A generic small random student (N = 50 Gram matrix) and readout (0.6, 0.5, 0.4)."""
    rng = np.random.default_rng(seed)
    J = rng.normal(size=(K, 50)) * 0.3
    B = np.eye(M, 50) * np.sqrt(50)
    return jd.OrderParams(Q=J @ J.T / 50, R=J @ B.T / 50, v=np.array([0.6, 0.5, 0.4])[:K])


def k3_run(g, *, alpha_max=1e4, eta=0.5, eta_v=0.5, noise=0.0, eta2=True):
    """The K = 3, M = 2 both-layer ODE from `k3_initial` to `alpha_max` (log-spaced records)."""
    sc = jd.Scenario(K=3, M=2, g=g, eta_v=eta_v, noise=noise)
    alphas = np.concatenate([[0.0], np.logspace(-1, np.log10(alpha_max), 80)])
    return jd.integrate(sc, k3_initial(), eta=eta, alphas=alphas, max_steps=400_000, eta2=eta2)


def unit_roles(tr):
    """Final state of a K = 3 run: which teacher each student follows (cosine), the readouts,
    the unit norms and the largest cosine between two student units."""
    Q, R, v = (np.asarray(a[-1]) for a in (tr.Q, tr.R, tr.v))
    norms = np.sqrt(np.diag(Q))
    cos_R = R / norms[:, None]  # T = I
    cos_Q = Q / np.outer(norms, norms)
    iu = np.triu_indices(3, 1)
    return {"v": v, "norm": norms, "teacher": np.argmax(cos_R, 1), "cos_teacher": cos_R.max(1),
            "max_student_cos": cos_Q[iu].max(), "eps_g": float(tr.eps_g[-1]),
            "min_abs_v": float(np.min(np.abs(v)))}


def plot_cpp_comparison(curves, numbers, *, axes=None):
    """(a, b): eps_g and the readout of jaxdyn's Euler run against the C++ reference rows.
    `curves`: {key: (alpha, ours, ref)} for "noiseless" and "noisy_wd"; `numbers` holds the
    `cpp_<key>_max_err_6th_digit` deviations."""
    fig, (ax_e, ax_v) = new_axes(axes, 2, figsize=(11, 4))
    for key, col in (("noiseless", "C0"), ("noisy_wd", "C3")):
        a, ours, ref = curves[key]
        lab = "noiseless" if key == "noiseless" else "noise 0.1, wd 0.001"
        lw = 4 if key == "noiseless" else 1.5  # the two runs nearly coincide: noiseless underneath
        ax_e.plot(a, ours[:, 0], color=col, lw=lw, alpha=0.6 if lw > 2 else 1,
                  label=f"jaxdyn Euler ({lab}, to alpha {a[-1]:.4g})")
        ax_e.plot(a[::8], ref[::8, 0], "o", ms=4, mfc="none", color=col, label=f"C++ --both ({lab})")
        for j, ls in ((8, "-"), (9, "--")):
            ax_v.plot(a, ours[:, j], color=col, ls=ls, lw=lw, alpha=0.6 if lw > 2 else 1,
                      label=f"jaxdyn v{j - 7} ({lab})")
            ax_v.plot(a[::8], ref[::8, j], "o", ms=4, mfc="none", color=col)
    ax_e.set(xscale="log", yscale="log", xlabel=r"$\alpha$ = steps / N", ylabel=r"$\epsilon_g$",
             title="erf K = M = 2, both layers: jaxdyn vs C++ (lr 0.5, lr2 0.3)")
    ax_e.text(0.02, 0.04, "max deviation (units of the 6th printed digit): "
              f"{numbers['cpp_noiseless_max_err_6th_digit']:.2f} / "
              f"{numbers['cpp_noisy_wd_max_err_6th_digit']:.2f}", transform=ax_e.transAxes, fontsize=8)
    ax_e.legend(fontsize=7, loc="upper right")
    ax_v.set(xscale="log", xlabel=r"$\alpha$", ylabel=r"readout $v_i$",
             title="student readout (lines jaxdyn, circles C++)")
    ax_v.legend(fontsize=7, loc="center left")
    return fig


def plot_k3(tr, roles, name, *, ax=None):
    """(c, d): the readout of the K = 3, M = 2 run `tr` with each unit's teacher (`roles` from
    `unit_roles`), eps_g dotted on a second axis."""
    fig, (ax,) = new_axes(ax, figsize=(5.5, 4))
    a = np.asarray(tr.alpha)
    for i in range(3):
        ax.plot(a[1:], np.asarray(tr.v)[1:, i], lw=1.5,
                label=f"v{i + 1} (-> teacher {roles['teacher'][i] + 1}, |J|={roles['norm'][i]:.2f})")
    ax2 = ax.twinx()
    ax2.plot(a[1:], np.asarray(tr.eps_g)[1:], "k:", lw=1.2)
    ax2.set_yscale("log")
    ax2.set_ylabel(r"$\epsilon_g$ (dotted)")
    ax.set(xscale="log", xlabel=r"$\alpha$", ylabel=r"readout $v_i$",
           title=f"{name}, K = 3, M = 2, both layers (eta = eta_v = 0.5)")
    ax.text(0.02, 0.04, f"final eps_g {roles['eps_g']:.1e}, min|v| {roles['min_abs_v']:.2f}, "
            f"max cos(J_i, J_k) {roles['max_student_cos']:.4f}", transform=ax.transAxes, fontsize=8)
    ax.legend(fontsize=7, loc="center right")
    return fig


@register("readout", "second-layer learning: erf K=M=2 both layers vs the C++ reference; ReLU/erf K=3, M=2")
def fig_readout(outdir, *, fast: bool):
    data = golden_data()
    numbers, curves = {}, {}
    # (a, b) against the C++ code
    for key, sigma, wd in (("noiseless", 0.0, 0.0), ("noisy_wd", 0.1, 0.001)):
        rows = data[key]
        a, ours, ref, err = euler_vs_cpp(data, rows, sigma=sigma, wd=wd)
        numbers[f"cpp_{key}_max_err_6th_digit"] = float(err.max())
        numbers[f"cpp_{key}_rows"] = int(len(rows))
        curves[key] = (a, ours, ref)
    # (c, d) K = 3 students, M = 2 teacher
    amax = 1e3 if fast else 1e4
    runs = {}
    for g, name in ((jd.ReLU(), "ReLU"), (jd.Erf(), "erf")):
        runs[name] = k3_run(g, alpha_max=amax)
        numbers[f"k3_{name}"] = unit_roles(runs[name])
    fig, axes = new_axes(None, 2, nrows=2, figsize=(11, 8))
    plot_cpp_comparison(curves, numbers, axes=axes[:2])
    for ax, name in zip(axes[2:], runs):
        plot_k3(runs[name], numbers[f"k3_{name}"], name, ax=ax)
    save(fig, pathlib.Path(outdir) / "readout.png")
    return numbers
