# ---
# jupyter:
#   jupytext: {formats: "py:percent"}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %%
import jaxdyn as jd; jd.enable_x64()  # noqa: E702

# %% [markdown]
# # Paper 001 — the role of the learning rate (Citton, Richert & Biehl, ESANN 2025)
#
# K = M = 2 ReLU soft committee machine, graded teacher `T = diag(1, 2)`, initial condition
# `Q0 = diag(0.1, 0.2)`, `R0 = 1e-3 I`, online SGD at finite learning rate (the `eta^2` term kept,
# with the exact ReLU `I4`). Learning-rate regimes, the plateau fixed point against `eta`, and the
# critical learning rates. Set `JAXDYN_FAST_NB=1` for a quick run (the test suite does).

# %%
import os

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jaxdyn.figures import stability as st
from jaxdyn.papers import paper001 as scenario_and_init


FAST = os.environ.get("JAXDYN_FAST_NB") == "1"
sc, op0 = scenario_and_init()

# %% [markdown]
# ## Learning-rate regimes: eps_g(alpha) for several eta
# Small eta: a plateau; the plateau shortens and rises with eta; above ~1.2175 eps_g is no longer
# monotonic; above ~1.2575 the weights run away.

# %%
etas = [0.5, 1.0, 1.21, 1.24, 1.3] if FAST else [0.25, 0.5, 0.75, 1.0, 1.15, 1.21, 1.23, 1.25, 1.257, 1.3]
n_alpha = 150 if FAST else 800
alphas = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-2, 300.0, n_alpha - 1)])
fig, ax = plt.subplots(figsize=(6, 3.6), constrained_layout=True)
colors = plt.cm.viridis(np.linspace(0, 1, len(etas)))
curves = {}
for e, c in zip(etas, colors):
    tr = jd.integrate(sc, op0, eta=jnp.asarray(e), alphas=alphas, throw=False)
    eg = np.asarray(tr.eps_g)
    ok = np.isfinite(eg)
    curves[e] = (eg[ok], bool(tr.diverged))
    ax.plot(np.asarray(alphas)[ok], eg[ok], color=c, label=rf"$\eta={e}$")
ax.set(xscale="log", yscale="log", xlabel=r"$\alpha$", ylabel=r"$\epsilon_g$", ylim=(1e-6, 1e2))
ax.legend(fontsize=7, ncol=2)


# physics: monotonic below the onset, non-monotonic between, divergent above the critical eta
# (after convergence eps_g ~ 1e-12 is rounding noise: compare only above 1e-7 eps_g(0))
def increases(eg):
    return np.any(np.diff(eg)[eg[1:] > 1e-7 * eg[0]] > 0)


assert not increases(curves[1.0][0]) and not curves[1.0][1]
assert increases(curves[1.24][0]) and not curves[1.24][1]
assert curves[1.3][1]

# %% [markdown]
# ## Fixed points
# The plateau fixed point lies in the unspecialised subspace (`R_1n = R_2n`, `Q11 = Q22`); it is a
# saddle with one unstable direction (specialisation). Perfect learning (`R = Q = T`) is stable
# at small eta.

# %%
fp = jd.papers.plateau_fixed_point(sc, 1.0)
print(fp.kind, int(fp.n_unstable), dict(zip(fp.labels, np.round(np.asarray(fp.x), 6))))
print("eigenvalues:", np.round(np.asarray(fp.eigenvalues).real, 6))
assert fp.kind == "saddle" and int(fp.n_unstable) == 1
pl = jd.fixed_point(sc, jd.papers.perfect_learning(sc), eta=jnp.asarray(1.0))
print("perfect learning at eta = 1:", pl.kind, np.round(np.asarray(pl.eigenvalues).real, 6))
assert pl.kind == "stable"

# %% [markdown]
# ## Paper 001 fig. 2b: the plateau fixed point against eta
# Pseudo-arclength continuation from small eta: the branch turns back at a fold (saddle-node) near
# eta = 1.2545, where it meets a second fixed point (dashed) and both disappear.

# %%
br = st.plateau_branch_001(eta_start=0.9 if FAST else 0.05, eta_stop=1.35 if FAST else 1.6,
                           ds_max=0.1 if FAST else 0.03)
k = br.folds[0]["index"] if br.folds else len(br.eta)
fig, ax = plt.subplots(figsize=(6, 3.6), constrained_layout=True)
for j, lab in enumerate(br.labels):
    if lab in ("R11", "R12", "Q11", "Q12"):
        line, = ax.plot(br.eta[:k], br.x[:k, j], label=lab)
        ax.plot(br.eta[k - 1:], br.x[k - 1:, j], "--", color=line.get_color(), lw=0.8)
ax.set(xlabel=r"$\eta$", ylabel="plateau fixed point")
ax.legend(fontsize=7)
assert br.folds, "the plateau branch must fold"
print("fold on the branch near eta =", br.folds[0]["eta"])

# %% [markdown]
# ## Critical learning rates
# Non-monotonic onset and divergence are properties of the trajectory from the paper's initial
# condition; the fold is a property of the plateau branch; the perfect-learning stability threshold
# is where `max Re lambda` of `R = Q = T` crosses zero.

# %%
if FAST:  # the fold to the branch's resolution; the two cheap thresholds at loose tolerance
    th = {
        "fold": jd.Threshold(br.folds[0]["eta"], abs(br.folds[0]["eta"] - br.folds[0]["eta_prev"]),
                             "fold", (0.9, 1.35)),
        "perfect_learning_stability": jd.stability_threshold(
            sc, jd.papers.perfect_learning(sc), eta_bracket=(1.0, 2.0), xtol=1e-6),
        "divergence": jd.divergence_eta(sc, op0, eta_bracket=(1.25, 1.27), xtol=1e-4),
    }
else:
    th = st.paper001_thresholds()
for k, t in th.items():
    print(f"{k:28s} {t.value:.10f} +- {t.tol:.1e}")
# the paper's values are the ends of 5e-4 grid cells that contain the true thresholds
assert abs(th["fold"].value - 1.2545) < 5e-4 + th["fold"].tol
assert 1.2575 < th["divergence"].value <= 1.2580
assert abs(th["perfect_learning_stability"].value - (3 - np.sqrt(3))) < 1e-6
if not FAST:
    assert 1.2170 < th["nonmonotonic"].value <= 1.2175
    assert 1.2540 < th["fold"].value <= 1.2545
    assert th["nonmonotonic"].value < th["fold"].value < th["divergence"].value < 3 - np.sqrt(3)
