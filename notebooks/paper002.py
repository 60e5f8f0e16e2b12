# ---
# jupyter:
#   jupytext: {formats: "py:percent"}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %%
import jaxdyn as jd; jd.enable_x64()  # noqa: E702

# %% [markdown]
# # Paper 002 — hidden-unit specialisation, ReLU vs. sigmoid (Oostwal, Straat & Biehl, Physica A 2021)
#
# High-temperature Gibbs learning of the K = M soft committee machine (outputs `1/sqrt(K)`,
# normalised students, orthonormal teacher): `beta f = alpha K eps_g - 1/2 ln det(Q - R R^T)`.
# The paper's sigmoid `1 + erf(x/sqrt 2)` has the same `eps_g` as `jd.Erf()`.
# Set `JAXDYN_FAST_NB=1` for a quick run (the test suite does).

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

FAST = os.environ.get("JAXDYN_FAST_NB") == "1"
relu, erf = jd.ReLU(), jd.Erf()

# %% [markdown]
# ## The constant of the paper's sigmoid cancels
# A non-site-symmetric state, eps_g of `1 + erf(x/sqrt 2)` (generic quadrature route) and of `erf`.

# %%
sig = jd.Activation(lambda x: 1 + jax.scipy.special.erf(x / jnp.sqrt(2.0)), name="1+erf")
R = jnp.array([[0.6, 0.1], [-0.2, 0.3]])
Q = jnp.array([[1.0, 0.15], [0.15, 1.0]])
e_sig, e_erf = float(jd.statics_eps_g(R, Q, sig)), float(jd.statics_eps_g(R, Q, erf))
print(e_sig, e_erf)
assert abs(e_sig - e_erf) < 1e-9

# %% [markdown]
# ## K = 2: continuous transitions (pitchfork)

# %%
t_relu2 = jd.specialisation_transition(K=2, g=relu)
t_erf2 = jd.specialisation_transition(K=2, g=erf)
print("ReLU alpha_c(2) =", t_relu2.alpha_c, " (paper 6.1)")
print("erf  alpha_c(2) =", t_erf2.alpha_c, " (paper 23.7)")
assert t_relu2.continuous and round(t_relu2.alpha_c, 1) == 6.1
assert t_erf2.continuous and round(t_erf2.alpha_c, 1) == 23.7
# the closed form 2 pi sqrt(1 - r^2)/(1 - C) at the instability point
r, C = t_relu2.r_inst, t_relu2.C_inst
assert abs(t_relu2.alpha_inst - 2 * np.pi * np.sqrt(1 - r * r) / (1 - C)) < 1e-10

# %% [markdown]
# ## Sigmoid K = 5: first order, and the paper's alpha_c, alpha_d are off

# %%
t5 = jd.specialisation_transition(K=5, g=erf)
print(f"alpha_s = {t5.alpha_s:.10f} (paper 44.3)   alpha_c = {t5.alpha_c:.10f} (paper 46.6)   "
      f"alpha_d = {t5.alpha_inst:.10f} (paper 62.8);  jump R-S = {t5.jump:.4f}")
assert round(t5.alpha_s, 1) == 44.3 and not t5.continuous
assert 45.5 < t5.alpha_c < 46.2 and 62.0 < t5.alpha_inst < 62.5

bs = jd.specialised_branch(K=5, g=erf, transition=t5)
ba = jd.specialised_branch(K=5, g=erf, kind="anti", transition=t5)
bu = jd.unspecialised_branch(K=5, g=erf, alphas=jnp.linspace(1e-3, 90, 200))
fig, axs = plt.subplots(1, 2, figsize=(10, 3.5), constrained_layout=True)
for b, c in ((bu, "k"), (bs, "C0"), (ba, "C3")):
    a = np.asarray(b.alpha)
    m = np.asarray(b.converged) & (a < 90)
    axs[0].plot(a[m], np.asarray(b.R)[m], c)
    axs[0].plot(a[m], np.asarray(b.S)[m], c, ls="--")
    axs[1].plot(a[m], np.asarray(b.eps_g)[m], c)
for ax in axs:
    for v, ls in ((t5.alpha_s, ":"), (t5.alpha_c, "--"), (t5.alpha_inst, "-.")):
        ax.axvline(v, color="0.5", ls=ls)
    ax.set_xlabel("alpha")
axs[0].set_ylabel("R (solid), S (dashed)")
axs[1].set_ylabel("eps_g")
axs[1].set_ylim(0, 0.06)

# %% [markdown]
# ## ReLU K >= 3: a weak first-order transition (not strictly continuous)
# The cubic term `-(K-1) K (K-2) G'''(r) t^3` of the specialisation mode makes the bifurcation at
# alpha_inst transcritical: the R > S branch folds at alpha_s slightly below alpha_inst.

# %%
Ks = [3, 5] if FAST else [3, 4, 5, 10, 20]
for K in Ks:
    t = jd.specialisation_transition(K=K, g=relu)
    print(f"K={K:2d}: alpha_s={t.alpha_s:.8f} alpha_c={t.alpha_c:.8f} alpha_inst={t.alpha_inst:.8f} "
          f"jump={t.jump:.5f}")
    assert t.alpha_s < t.alpha_c < t.alpha_inst and t.jump > 0

# %% [markdown]
# ## R < S states off site symmetry: the full Hessian
# ReLU K = 3: the R < S state is a minimum within site symmetry but a saddle in the full
# K^2 + K(K-1)/2 space.

# %%
t3 = jd.specialisation_transition(K=3, g=relu)
anti3 = jd.specialised_branch(K=3, g=relu, kind="anti", transition=t3)
i = int(np.argmin(np.abs(np.asarray(anti3.alpha) - 10.0)))
eq = jd.equilibrium(K=3, g=relu, alpha=float(anti3.alpha[i]),
                    guess=(float(anti3.R[i]), float(anti3.S[i]), float(anti3.C[i])))
print(eq.kind, eq.n_negative, "site-symmetric spectrum:", np.asarray(eq.hessian_ss))
assert eq.kind == "saddle" and np.all(np.asarray(eq.hessian_ss) > 0)

# %% [markdown]
# ## K -> infinity

# %%
lk_relu, lk_erf = jd.large_K_transition(g=relu), jd.large_K_transition(g=erf)
print("ReLU alpha_c(inf) =", lk_relu.alpha_c, "= 2 pi;  erf alpha_s, alpha_c =", lk_erf.alpha_s, lk_erf.alpha_c)
assert abs(lk_relu.alpha_c - 2 * np.pi) < 1e-10
assert abs(lk_erf.alpha_s - 60.99) < 0.005 and abs(lk_erf.alpha_c - 69.09) < 0.005

# %% [markdown]
# ## Sampling the Gibbs density at finite N
# Geodesic HMC on the product of spheres, K = 2 ReLU above the transition.

# %%
eq = jd.equilibrium(K=2, g=relu, alpha=12.0, guess="specialised")
Ns = [100] if FAST else [100, 300, 1000]
for N in Ns:
    s = jd.sample_gibbs(K=2, g=relu, alpha=12.0, N=N, n_chains=4 if FAST else 16,
                        n_samples=60 if FAST else 300, n_burn=40 if FAST else 150)
    m = s.chain_means()
    print(N, "R", m["R"].mean(), "+-", m["R"].std(), " saddle", float(eq.R))
    assert abs(m["R"].mean() - float(eq.R)) < 5 / np.sqrt(N)
