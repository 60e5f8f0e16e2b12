# ---
# jupyter:
#   jupytext: {formats: "py:percent"}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Paper 000 — ReLU soft committee machines (Straat & Biehl, ESANN 2019)
#
# The order-parameter ODEs of online SGD for ReLU units, with the paper's initial conditions.
# Convention (docs/conventions.md): `x_i = J_i·ξ/√N`, `Q = JJᵀ/N`, `R = JBᵀ/N`, `α = steps/N`.
# Set `JAXDYN_FAST_NB=1` for a quick run (the test suite does).

# %%
import os

import jaxdyn as jd


jd.enable_x64()
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jaxdyn.figures import paper000 as p000


FAST = os.environ.get("JAXDYN_FAST_NB") == "1"
N = 60 if FAST else 400

# %% [markdown]
# ## K = M = 1: learning curves and the critical learning rate
# At the perfect-learning fixed point `(R, Q) = (1, 1)` the Jacobian (by `jax.jacfwd`, through the
# exact averages, which stay differentiable although the covariance is singular there) has the
# eigenvalues `-η/2` and `η²/2 - η`: the fixed point is stable for `η < η_c = 2`.

# %%
sc1 = jd.Scenario(K=1, M=1)


def flat_field(x, eta):
    d = jd.vector_field(sc1, jd.OrderParams(Q=x[1:2, None], R=x[0:1, None]), eta)
    return jnp.stack([d.R[0, 0], d.Q[0, 0]])


for eta in [0.5, 1.0, 1.9, 2.1]:
    J = jax.jacfwd(flat_field)(jnp.array([1.0, 1.0]), eta)
    lam = np.sort(np.linalg.eigvals(np.asarray(J)).real)
    ref = np.sort([-eta / 2, eta**2 / 2 - eta])
    assert np.allclose(lam, ref, atol=1e-12), (lam, ref)
    print(f"eta={eta}: eigenvalues {lam}, paper {ref}")

# %%
fig, ax = plt.subplots(figsize=(5, 3.4), constrained_layout=True)
for eta in [0.1, 0.5, 1.0, 1.5, 1.9, 2.1, 2.5]:
    tr = p000.kmm1(eta, alpha_max=400.0, n=N)
    eg = np.asarray(tr.eps_g)
    ok = np.isfinite(eg)
    ax.plot(np.asarray(tr.alpha)[ok], eg[ok], label=rf"$\eta={eta}$" + (" (diverged)" if tr.diverged else ""))
    final = float(eg[ok][-1])
    # below eta_c = 2 the student learns perfectly; above, perfect learning is unstable: at 2.1 the
    # trajectory settles at another fixed point with eps_g > 0, and from about 2.5 it diverges
    assert (final < 1e-6) == (eta < 2), (eta, final)
ax.set(xscale="log", yscale="log", xlabel=r"$\alpha$", ylabel=r"$\epsilon_g$")
ax.legend(fontsize=7)

# %% [markdown]
# ## K = M = 2: the symmetric plateau (small-η dynamics)

# %%
tr = p000.k2m2_plateau(n=N * 2)
plat = p000.plateau_summary(tr)
print(plat)
assert 0.45 < plat["R_mean"] < 0.6
fig, axs = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
a = np.asarray(tr.alpha)
for i in range(2):
    for n in range(2):
        axs[0].plot(a, np.asarray(tr.R[:, i, n]), label=f"$R_{{{i + 1}{n + 1}}}$")
axs[0].set(xscale="symlog", xlabel=r"$\alpha$")
axs[0].legend()
axs[1].plot(a, np.asarray(tr.eps_g))
axs[1].set(xscale="symlog", yscale="log", xlabel=r"$\alpha$", ylabel=r"$\epsilon_g$")

# %% [markdown]
# ## Over-realisable K = 3, M = 2 and unrealisable K = 2, M = 3

# %%
for g in [jd.ReLU(), jd.Erf()]:
    tr = p000.k3m2(g, n=N)
    print(g.name, "final Q:\n", np.round(np.asarray(tr.Q[-1]), 3))
tr = p000.k2m3(n=N)
R = np.asarray(tr.R[-1])
print("K=2, M=3 final R:\n", np.round(R, 3), "eps_g", float(tr.eps_g[-1]))
assert abs(R[1, 1] - R[1, 2]) < 1e-6 and float(tr.eps_g[-1]) > 0
