# ---
# jupyter:
#   jupytext: {formats: "py:percent"}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %%
import jaxdyn as jd; jd.enable_x64()  # noqa: E702

# %% [markdown]
# # Second-layer learning: the readout v as part of the state
#
# With `jd.Scenario(..., eta_v=...)` the student's readout learns too, with the step `eta_v / N`
# of the reference C++ code (Goldt et al., NeurIPS 2019): the state is `OrderParams(Q, R, v)`, the
# first layer's error signal carries the current `v_i`, and
# `dv_i/dalpha = eta_v (sum_n w_n I2(x_i, y_n) - sum_k v_k I2(x_i, x_k)) - eta_v lambda_v v_i`.
# Set `JAXDYN_FAST_NB=1` for a quick run.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from jaxdyn.figures.readout import euler_vs_cpp, golden_data, k3_run, unit_roles

FAST = os.environ.get("JAXDYN_FAST_NB") == "1"

# %% [markdown]
# ## erf K = M = 2, both layers, against the C++ reference (`scmpp_ode.cpp --both`)
# Mapping: `--lr` = eta = 0.5, `--lr2` = eta_v = 0.3, `--sigma` = noise; its weight decay carries no
# learning rate, so `weight_decay = wd / lr`, `weight_decay_v = wd / lr2`. Euler with dt = 0.01.

# %%
data = golden_data()  # tests/data/nn2pp-both of the source checkout
fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
for key, sigma, wd in (("noiseless", 0.0, 0.0), ("noisy_wd", 0.1, 0.001)):
    a, ours, ref, err = euler_vs_cpp(data, data[key], sigma=sigma, wd=wd)
    print(f"{key}: {len(a)} printed rows, max deviation {err.max():.3f} units of the 6th digit")
    assert err.max() <= 0.5 + 1e-6
    ax[0].plot(a, ours[:, 0], label=f"jaxdyn ({key})")
    ax[0].plot(a[::10], ref[::10, 0], "o", mfc="none", label=f"C++ ({key})")
    ax[1].plot(a, ours[:, 8:], label=[f"v1 ({key})", f"v2 ({key})"])
    ax[1].plot(a[::10], ref[::10, 8:], "o", mfc="none")
ax[0].set(xscale="log", xlabel="alpha", ylabel="eps_g")
ax[1].set(xscale="log", xlabel="alpha", ylabel="v")
ax[0].legend(fontsize=7)
ax[1].legend(fontsize=7)
plt.show()

# %% [markdown]
# ## K = 3 students, M = 2 teacher: does the over-realisable student silence a unit?
# Both layers learn (eta = eta_v = 0.5, no noise) from a small random student. (The fast mode
# drops the eta^2 term, which only saves compile time here.)

# %%
amax = 1e3 if FAST else 1e4
fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
roles = {}
for axi, g, name in ((ax[0], jd.ReLU(), "ReLU"), (ax[1], jd.Erf(), "erf")):
    tr = k3_run(g, alpha_max=amax, eta2=not FAST)
    r = roles[name] = unit_roles(tr)
    print(name, {k: np.round(v, 4) if not isinstance(v, float) else f"{v:.2e}" for k, v in r.items()})
    axi.plot(np.asarray(tr.alpha)[1:], np.asarray(tr.v)[1:], label=["v1", "v2", "v3"])
    axi.set(xscale="log", xlabel="alpha", ylabel="v", title=f"{name} K=3, M=2")
    axi.legend(fontsize=7)
plt.show()

# %% [markdown]
# ReLU: no unit is silenced. Two student units end on the same teacher unit, *collinear*
# (cosine -> 1), and share it: by positive homogeneity `sum_k v_k |J_k| = w_n` over the two, and the
# error goes to zero. erf (not homogeneous) makes the same split, with the two units slowly merging
# (their cosine approaches 1) while the error decays much more slowly.

# %%
r = roles["ReLU"]
assert r["min_abs_v"] > 0.1 and r["eps_g"] < 1e-3
pair = [i for i in range(3) if r["teacher"][i] == np.bincount(r["teacher"]).argmax()]
assert len(pair) == 2 and r["max_student_cos"] > 0.999
share = sum(r["v"][i] * r["norm"][i] * r["cos_teacher"][i] for i in pair)
print("ReLU: sum_k v_k |J_k| cos(J_k, B_n) over the shared teacher unit =", share)
assert abs(share - 1) < 1e-2
