# ---
# jupyter:
#   jupytext: {formats: "py:percent"}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %%
import jaxdyn as jd; jd.enable_x64()  # noqa: E702

# %% [markdown]
# # SGD simulations against the order-parameter ODE
#
# `jaxdyn.simulate` runs online SGD of the student (update rule of docs/conventions.md) on fresh
# Gaussian examples, vmapped over seeds, recording `Q`, `R` and the analytic `eps_g` of the
# measured overlaps. The initial overlaps are exact (Gram–Schmidt/Cholesky construction); the
# first O(N) steps then add O(1/sqrt N) fluctuations that a prescribed symmetry breaking of
# `R0 = 1e-3` cannot dominate. So we compare against two ODE curves: the *nominal* one (from the
# prescribed `op0`) and the *matched* one (per seed, from the measured overlaps at
# `alpha = 2 / eta`; `jaxdyn.matched_theory`). Set `JAXDYN_FAST_NB=1` for a quick run.

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jaxdyn.figures.simulations import _grid, compare, plot_compare

FAST = os.environ.get("JAXDYN_FAST_NB") == "1"

# %% [markdown]
# ## Exact initial overlaps, including a graded teacher

# %%
sc = jd.Scenario(K=2, M=2, T=jnp.diag(jnp.array([1.0, 2.0])))
op0 = jd.OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=1e-3 * jnp.eye(2))
B, J = jd.init_weights(jax.random.key(0), sc, op0, 1000, jnp.float64)
print("J J^T/N - Q0:", np.abs(J @ J.T / 1000 - op0.Q).max(), " J B^T/N - R0:", np.abs(J @ B.T / 1000 - op0.R).max(),
      " B B^T/N - T:", np.abs(B @ B.T / 1000 - sc.T).max())
assert np.abs(J @ B.T / 1000 - op0.R).max() < 1e-14 and np.abs(B @ B.T / 1000 - sc.T).max() < 1e-13

# %% [markdown]
# ## Paper 001, figure 1: K = M = 2 ReLU, T = diag(1, 2), eta = 1 (exact I4)
# Paper: N = 1000, 10 runs. Student units are relabelled per seed to the ODE's specialisation:
# which student unit ends on which teacher unit is decided by the fluctuations, about half the
# seeds each way (hence the Q band at small alpha spanning 0.1 to 0.2).

# %%
N, S, amax, n = (200, 4, 60.0, 40) if FAST else (1000, 10, 200.0, 120)
d = compare(sc, op0, eta=1.0, N=N, seeds=S, alphas=_grid(amax, n, extra=[2.0]))
fig, axs = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
plot_compare(axs, d)
fig.suptitle(f"paper 001 fig. 1: N={N}, {S} seeds")
plt.show()

# %%
a = d["alpha"]
sel = (a > 0) & (a <= 10)  # before the plateau escape: simulation mean and ODE agree
m, s = d["eps_g"].mean(0), d["eps_g"].std(0, ddof=1)
dev = np.abs(m - d["ode_eps_g"])[sel]
print("max |sim mean - ODE| for alpha <= 10:", dev.max(), " typical seed std:", s[sel].mean())
assert dev.max() < 4 * s[sel].max() + 0.02
# after the escape both reach perfect learning, each student unit on one teacher unit
assert np.all(np.abs(d["eps_g"][:, -1]) < 1e-2)
Rf = np.sort(np.abs(d["R"][:, -1]).max(axis=1), axis=-1)
assert np.allclose(Rf, [1.0, 2.0], atol=0.05), Rf
# the matched start carries the realised symmetry breaking: it escapes with the simulation
i = int(np.argmin(np.abs(a - (30.0 if not FAST else 40.0))))
j = int(np.argmin(np.abs(d["m_alpha"] - a[i])))
print(f"alpha={a[i]:.3g}: sim {m[i]:.4f} +- {s[i]:.3f}, matched ODE {d['m_eps_g'][:, j].mean():.4f}, "
      f"nominal ODE {d['ode_eps_g'][i]:.4f}")
assert abs(d["m_eps_g"][:, j].mean() - m[i]) < abs(d["ode_eps_g"][i] - m[i]) + 2 * s[i]

# %% [markdown]
# ## Paper 000, figure 1: K = M = 1 ReLU from (R, Q) = (0, 0.25), several eta (vmapped)

# %%
sc1 = jd.Scenario(K=1, M=1)
op1 = jd.OrderParams(Q=[[0.25]], R=[[0.0]])
etas = jnp.array([0.1, 0.5, 1.0, 1.5, 1.9])
N1, S1, amax1 = (200, 3, 30.0) if FAST else (1000, 5, 200.0)
sim = jd.simulate(sc1, op1, eta=etas, N=N1, alphas=_grid(amax1, 40), seeds=S1)
fig, ax = plt.subplots(figsize=(5, 3.5))
for c, eta in enumerate(np.asarray(etas)):
    tr = jd.integrate(sc1, op1, eta=float(eta), alphas=sim.alpha)
    ax.plot(sim.alpha, sim.eps_g[c].mean(0), "o", ms=3, color=f"C{c}", label=f"eta={eta}")
    ax.plot(sim.alpha, tr.eps_g, "-", color=f"C{c}", lw=0.8)
    k = int(np.argmin(np.abs(np.asarray(sim.alpha) - 5.0)))
    mm, ss = float(sim.eps_g[c, :, k].mean()), float(sim.eps_g[c, :, k].std(ddof=1))
    assert abs(mm - float(tr.eps_g[k])) < 4 * ss + 0.1 * float(tr.eps_g[k]), (eta, mm, float(tr.eps_g[k]))
ax.set(xscale="log", yscale="log", xlabel="alpha", ylabel="eps_g", title=f"K=M=1, N={N1}")
ax.legend(fontsize=7)
plt.show()

# %% [markdown]
# ## The deviation from the ODE shrinks like 1/sqrt(N)
# K = M = 1 ReLU, eta = 0.5, alpha in [0.5, 4] (no plateau): RMS deviation of (Q, R) from the ODE.

# %%
Ns = [250, 1000] if FAST else [250, 1000, 4000, 16000]
rms = []
for NN in Ns:
    r = jd.simulate(sc1, op1, eta=0.5, N=NN, alphas=np.linspace(0.5, 4, 8), seeds=8 if FAST else 24)
    t = jd.integrate(sc1, op1, eta=0.5, alphas=r.alpha)
    # the simulation runs in float32, the theory in float64
    dQ, dR = r.Q[..., 0, 0].astype(t.Q.dtype) - t.Q[:, 0, 0], r.R[..., 0, 0].astype(t.R.dtype) - t.R[:, 0, 0]
    rms.append(float(np.sqrt(np.mean(dQ**2 + dR**2))))
slope = np.polyfit(np.log(Ns), np.log(rms), 1)[0]
print("N:", Ns, " RMS deviation:", np.round(rms, 5), " fitted exponent:", round(slope, 3))
assert -0.8 < slope < -0.25
