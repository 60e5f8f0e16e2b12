# ---
# jupyter:
#   jupytext: {formats: "py:percent"}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %%
import jaxdyn as jd; jd.enable_x64()  # noqa: E702

# %% [markdown]
# # Finite-N SGD at a cost independent of N: the overlap chain
#
# With fresh isotropic Gaussian inputs the next SGD step depends on the weights only through
# the overlap matrix `C = [[Q, R], [R^T, T]]`: the fields are `L z` with `L L^T = C`, and
# `|xi|^2 = |z|^2 + chi^2_{N-K-M}`. So `(Q, R)` is an exact Markov chain at any N, and
# `jd.simulate(..., method="overlaps")` runs it with the same inputs and the same `SimResult` as the
# weight-space simulator (`method="weights"`, the reference, and the only choice for non-Gaussian or
# structured inputs). Set `JAXDYN_FAST_NB=1` for a quick run.

# %%
import os
import time

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

FAST = os.environ.get("JAXDYN_FAST_NB") == "1"
sc = jd.Scenario(K=2, M=2)  # paper 000: K = M = 2 ReLU, T = I
op0 = jd.OrderParams(Q=jnp.diag(jnp.array([0.2, 0.3])), R=1e-3 * jnp.eye(2))

# %% [markdown]
# ## Same law as the weight-space simulator
# Different random streams, so we compare distributions across seeds (not runs).

# %%
S = 96 if FAST else 2000
N = 200
alphas = np.arange(0.0, 60.5, 0.5)  # the chain runs on the study's grid below (one compilation)
w = jd.simulate(sc, op0, eta=1.0, N=N, alphas=alphas[:5], seeds=S, dtype=jnp.float64)
o = jd.simulate(sc, op0, eta=1.0, N=N, alphas=alphas, seeds=S, method="overlaps", dtype=jnp.float64)
a, b = np.asarray(w.eps_g[:, 4]), np.asarray(o.eps_g[:, 4])  # alpha = 2
z = (a.mean() - b.mean()) / np.sqrt(a.var() / S + b.var() / S)
p = stats.ks_2samp(a, b).pvalue
print(f"eps_g at alpha=2, N={N}: weights {a.mean():.4f} +- {a.std():.4f}, overlaps {b.mean():.4f} +- "
      f"{b.std():.4f}; z = {z:+.2f}, KS p = {p:.2f}")
assert abs(z) < 3.3 and p > 0.001

# %% [markdown]
# ## Cost independent of N (CPU time of one seed; skipped in the fast run)

# %%
if not FAST:
    for N in (10**3, 10**6):
        al = jnp.array([0.0, 20_000 / N])
        jd.simulate(sc, op0, eta=1.0, N=N, alphas=al, method="overlaps", dtype=jnp.float64)  # compile
        t0 = time.process_time()
        jd.simulate(sc, op0, eta=1.0, N=N, alphas=al, method="overlaps",
                    dtype=jnp.float64).Q.block_until_ready()
        print(f"N = {N:>7}: {20_000 / (time.process_time() - t0):.3g} steps/s (CPU time), one seed")

# %% [markdown]
# ## Finite-size study: plateau escape time grows like ln N, the spread like 1/sqrt(N)
# The symmetric plateau's unstable mode grows like `exp(lambda alpha)` from a seed of size
# `~1/sqrt(N)` (the fluctuations), so `alpha_esc = a + ln N / (2 lambda)`. The ODE is the
# N -> infinity limit (it escapes only through the prescribed `R0 = 1e-3 I`). The full study
# (N = 10^2 ... 10^6) is `jaxdyn reproduce 000-escape-vs-N`.

# %%
Ns = [200, 2000] if FAST else [10**2, 10**3, 10**4]
S = 96 if FAST else 128
ode = jd.integrate(sc, op0, eta=1.0, alphas=jnp.asarray(alphas))
sym = jd.integrate(sc, jd.OrderParams(Q=op0.Q, R=jnp.zeros((2, 2))), eta=1.0, alphas=jnp.asarray(alphas))
eps_pl = float(sym.eps_g[-1])  # the symmetric start never leaves the plateau in the ODE
fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
med, spread = [], []
for N in Ns:
    sim = jd.simulate(sc, op0, eta=1.0, N=N, alphas=alphas, seeds=S, method="overlaps", dtype=jnp.float64)
    eg = np.asarray(sim.eps_g)
    below = eg < eps_pl / 2
    esc = np.where(below.any(1), alphas[np.argmax(below, 1)], np.inf)
    med.append(np.median(esc))
    spread.append(eg[:, 20].std(ddof=1))  # alpha = 10
    ax[0].plot(alphas, np.median(eg, 0), label=f"N = {N} (median of {S})")
ax[0].plot(alphas, ode.eps_g, "k--", label="ODE")
ax[0].set(yscale="log", xlabel="α", ylabel="ε_g", ylim=(1e-4, 1))
ax[0].legend(fontsize=8)
ax[1].plot(Ns, med, "o-")
ax[1].set(xscale="log", xlabel="N", ylabel="median escape α")
plt.tight_layout()
print("median escape alpha:", med, " spread x sqrt(N) at alpha = 10:", np.array(spread) * np.sqrt(Ns))
assert all(np.diff(med) > 0)  # later escape at larger N, still before the ODE's
assert med[-1] < 50.5
sq = np.array(spread) * np.sqrt(Ns)
assert np.ptp(sq) / sq.mean() < 0.5  # spread ~ 1/sqrt(N) (sampling error ~ 1/sqrt(2 S) each)
