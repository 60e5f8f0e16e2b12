# ---
# jupyter:
#   jupytext: {formats: "ipynb,py:percent"}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Paper 003: the ReLU population gradient (Tian, ICML 2017)
#
# Y. Tian, "An analytical formula of population gradient for two-layered ReLU network and its
# applications in convergence and critical point analysis", ICML 2017 (arXiv:1703.00560).
#
# Weight space: `x ~ N(0, I_d)`, student `sum_j v_j relu(w_j . x)`, teacher
# `sum_n u_n relu(w*_n . x)`, loss `L = E[(f - f*)^2]/2`. jaxdyn's overlaps are
# `Q = W W^T`, `R = W W*^T`, `T = W* W*^T` (`w_j = J_j / sqrt N`), and the gradient flow
# `dW/dt = -dL/dW` is the small-eta ODE at `t = eta * alpha`.

# %%
import os

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jaxdyn as jd

FAST = os.environ.get("JAXDYN_FAST_NB", "0") == "1"

# %% [markdown]
# ## Theorem 1 and the K-ReLU gradient
# `F(e, w) = E[x 1{e.x>0} relu(w.x)] = ((pi - theta) w + |w| sin(theta) e) / (2 pi)`; a Monte
# Carlo estimate agrees within its standard error.

# %%
d, n = 4, 20_000 if FAST else 400_000
e = jnp.array([1.0, 0.2, 0.0, -0.3])
w = jnp.array([-0.5, 1.0, 0.4, 0.1])
x = jax.random.normal(jax.random.PRNGKey(0), (n, d))
s = x * jnp.where(x @ e > 0, jax.nn.relu(x @ w), 0.0)[:, None]
z = (s.mean(0) - jd.population_gating(e, w)) / (s.std(0) / np.sqrt(n))
print("z-scores", np.round(np.asarray(z), 2))
assert np.max(np.abs(z)) < 5

W = jnp.array([[1.0, 0.2, 0.0, 0.1], [0.1, 0.8, 0.3, 0.0], [0.2, 0.2, 0.2, 0.9]])
Wt = jnp.array([[1.0, 0.0, 0.0, 0.0], [0.7, 1.5, 0.0, 0.0]])  # non-orthogonal, unequal norms
g = jd.population_gradient(W, Wt)
assert np.max(np.abs(g - jax.grad(lambda W: jd.population_loss(W, Wt))(W))) < 1e-14
sc = jd.population_scenario(Wt, K=3)
assert abs(float(jd.population_loss(W, Wt) - jd.eps_g(sc, jd.weight_order_params(W, Wt)))) < 1e-14

# %% [markdown]
# ## Gradient flow = small-eta order-parameter ODE (time `t = eta alpha`)

# %%
import diffrax  # noqa: E402

t = jnp.linspace(0.0, 60.0 if FAST else 300.0, 61)
tr = jd.gradient_flow(0.2 * W, Wt, times=t, rtol=1e-12, atol=1e-14)
eta = 0.5
ode = jd.integrate(sc, jd.weight_order_params(0.2 * W, Wt), eta=eta, alphas=t / eta, eta2=False,
                   solver=diffrax.Dopri8(), rtol=1e-12, atol=1e-14)
dev = max(float(jnp.max(jnp.abs(tr.Q - ode.Q))), float(jnp.max(jnp.abs(tr.R - ode.R))))
print("max |Delta Q|, |Delta R| =", dev)
assert dev < 1e-10

# %% [markdown]
# ## Symmetry breaking: the cyclic ansatz `w_j = P_j (x, y, ..., y)`
# `x0 > y0` flows to the teacher, `x0 = y0` to the saddle `y*`, and for K >= 3 `x0 < y0` to a
# point with `x < 0` (no permutation of the teacher is reachable inside the ansatz).

# %%
fig, axs = plt.subplots(1, 2, figsize=(9, 4), constrained_layout=True)
for ax, K in zip(axs, (2, 5)):
    ys = jd.symmetric_saddle(K)
    for x0, y0 in [(0.3, 0.29), (0.1, 0.1), (0.29, 0.3), (0.8, 0.1), (0.1, 0.9)]:
        ts = jnp.geomspace(1e-3, 12.0 if x0 == y0 else 300.0, 200)  # diagonal: stop at the saddle
        c = jd.cyclic_flow(x0, y0, K=K, times=ts)
        ax.plot(np.r_[x0, np.asarray(c.x)], np.r_[y0, np.asarray(c.y)])
    # x0 = y0: identical students stay identical to the last bit in the full K d flow -> y*
    # (the 2-D field is symmetric only to rounding, which the unstable direction amplifies)
    W0, Wt0 = jd.cyclic_weights(0.1, 0.1, K=K)
    full = jd.gradient_flow(W0, Wt0, times=jnp.array([0.0, 80.0]), rtol=1e-13, atol=1e-15)
    assert float(jnp.max(jnp.abs(full.W[-1] - ys))) < 1e-12
    ax.plot(ys, ys, "rx", ms=9, mew=2)
    ax.plot(1, 0, "r*", ms=10)
    ax.set(xlabel="x", ylabel="y", title=f"K = {K}, saddle y* = {ys:.4f}")

# %%
sp = jd.saddle_spectrum(3, d=4)
W3, Wt3 = jd.cyclic_weights(jd.symmetric_saddle(3), jd.symmetric_saddle(3), K=3, d=4)
ev = np.linalg.eigvalsh(np.asarray(jd.flow_jacobian(W3, Wt3)))
print(dict(zip(sp.labels, np.round(sp.values, 6))))
assert np.max(np.abs(ev - sp.all())) < 1e-13

for K, index in [(3, 1), (5, 6)]:
    c = jd.cyclic_flow(0.1, 0.2, K=K, times=jnp.array([0.0, 2000.0]))
    zK = np.asarray(jd.cyclic_fixed_point(float(c.x[-1]), float(c.y[-1]), K=K))
    WK, WtK = jd.cyclic_weights(zK[0], zK[1], K=K, d=K + 1)
    evK = np.linalg.eigvalsh(np.asarray(jd.flow_jacobian(WK, WtK)))
    print(f"K={K}: x0<y0 ends at {zK}, loss {float(jd.population_loss(WK, WtK)):.6f}, "
          f"{int(np.sum(evK > 1e-10))} unstable directions")
    assert zK[0] < 0 and int(np.sum(evK > 1e-10)) == index
