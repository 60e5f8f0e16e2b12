# ---
# jupyter:
#   jupytext: {formats: "py:percent"}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %%
import jaxdyn as jd; jd.enable_x64()  # noqa: E702

# %% [markdown]
# # Exploring learning-rate phase diagrams with `jaxdyn.sweep`
#
# Change `K`, `M`, the teacher `T`, the activation and the grid below, rerun, and the phase diagram
# comes back: for every learning rate the full `eta^2` order-parameter ODE is integrated (one
# compilation for the whole sweep; the points are sorted and batched, and sharded over all visible
# devices), and each point is classified as **monotonic**, **non-monotonic** (eps_g rises somewhere
# along the learning curve) or **divergent** (the weights blow up).
#
# `JAXDYN_FAST_NB=1` shrinks the workload (used by the test suite).

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jaxdyn.figures.sweeps import PAPER_001, plot_phase_diagram, regime_boundaries

FAST = os.environ.get("JAXDYN_FAST_NB") == "1"
print("devices:", jax.devices())

# %% [markdown]
# ## The setting: edit me
# Paper 001: K = M = 2 ReLU units, a graded teacher T = diag(1, 2), Q(0) = diag(0.1, 0.2),
# R(0) = 1e-3 I.

# %%
K, M = 2, 2
T = jnp.diag(jnp.array([1.0, 2.0]))
g = jd.ReLU()
scenario = jd.Scenario(K=K, M=M, T=T, g=g)
op0 = jd.OrderParams(Q=jnp.diag(0.1 * jnp.arange(1.0, K + 1)), R=1e-3 * jnp.eye(K, M))

n_eta = 24 if FAST else 256
eta = np.linspace(1.0 if FAST else 0.1, 1.3, n_eta)
alphas = np.geomspace(1e-2, 300.0 if FAST else 1000.0, 80 if FAST else 200)

# %% [markdown]
# ## The sweep
# `path="..."` would also write the dataset to disk chunk by chunk (an interrupted sweep resumes).

# %%
ds = jd.sweep(scenario, op0, eta=eta, alphas=alphas)
print(f"{ds.sizes['eta']} points in {ds.attrs['wall_time_s']:.1f} s "
      f"({ds.attrs['n_traces']} compilation(s), {ds.attrs['n_devices']} device(s))")
ds[["regime", "plateau_height", "plateau_length", "eps_rise", "alpha_diverged"]].to_dataframe().iloc[::max(1, n_eta // 8)]

# %% [markdown]
# ## The phase diagram

# %%
fig = plot_phase_diagram(ds, thresholds=PAPER_001 if (K, M) == (2, 2) else None,
                         title=f"K={K}, M={M}, g={type(g).__name__}")
plt.show()
br = regime_boundaries(ds)
br

# %% [markdown]
# ## Physics checks (paper 001's setting)
# The regimes follow each other in the order monotonic -> non-monotonic -> divergent, and the
# boundaries of the grid bracket the paper's values 1.2175 and 1.2575 (to the grid's resolution).

# %%
if (K, M) == (2, 2) and isinstance(g, jd.ReLU) and np.allclose(np.asarray(T), np.diag([1.0, 2.0])):
    assert br["ordered"], "regimes interleave"
    step = float(eta[1] - eta[0])
    lo, hi = br["nonmonotonic"]
    assert lo - step <= 1.2175 <= hi + step, br
    lo, hi = br["divergence"]
    assert lo - step <= 1.2575 <= hi + step, br
    # the plateau rises with eta in the monotonic regime
    mono = ds["regime"].values == 0
    assert np.all(np.diff(ds["plateau_height"].values[mono]) > -1e-6)

# %% [markdown]
# ## More axes
# Any scalar scenario field (`noise`, `weight_decay`, `batch_size`) or initial condition can be a
# dimension too; here: output noise (small grid).

# %%
ds2 = jd.sweep(scenario, op0, eta=np.linspace(1.15, 1.3, 6 if FAST else 32),
               axes={"noise": [0.0, 0.3]}, alphas=alphas)
ds2["regime"].plot(x="eta", y="noise", cmap="RdYlGn_r", vmin=-1, vmax=2)
plt.title("regime (0 monotonic, 1 non-monotonic, 2 divergent)")
plt.show()
