"""Direct sampling of the annealed Gibbs density of paper 002 at finite N (a check no paper gives).

The high-temperature theory replaces training by the density `exp(-N alpha K eps_g(W))` over
student weights on the product of spheres `|w_i|^2 = N` (teacher `B_n = sqrt(N) e_n`). Its order
parameters `R = W B^T / N`, `Q = W W^T / N` concentrate on the saddle point of `beta f` as
N -> infinity. This module samples that density with geodesic Hamiltonian Monte Carlo (Byrne &
Girolami 2013): momenta tangent to each sphere, the free motion is the exact great-circle
rotation, the force `-grad E` projected on the tangent space; Metropolis on `E + |v|^2/2` makes
it exact for the uniform (Hausdorff) measure times `exp(-E)`. Chains are vmapped.

Exact finite-N marginal: the density of `(R, Q)` is `det(Q - R R^T)^{(N-2K-1)/2}
exp(-N alpha K eps_g)`, so its mode is the saddle point at `alpha N / (N - 2K - 1)`; for K = 1 the
mean of R is a one-dimensional integral (used by the tests).
"""

from __future__ import annotations

import itertools as it

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._activations import as_activation
from ._statics import statics_eps_g


class GibbsSamples(eqx.Module):
    """Samples of the order parameters of `sample_gibbs` chains.

    Fields: `N`, `K`, `alpha`; `R` (chains, samples, K, K) and `Q` (chains, samples, K, K)
    after burn-in, students of each chain permuted to maximise the trace of its mean R;
    `eps_g` (chains, samples); `acceptance` (chains,). Properties: `R_diag`, `S_off`, `C_off`
    (per-sample site averages), and `chain_means()`.
    """

    N: int = eqx.field(static=True)
    K: int = eqx.field(static=True)
    alpha: jax.Array
    R: jax.Array
    Q: jax.Array
    eps_g: jax.Array
    acceptance: jax.Array

    @property
    def R_diag(self):
        return jnp.trace(self.R, axis1=-2, axis2=-1) / self.K

    @property
    def S_off(self):
        if self.K == 1:
            return jnp.zeros(self.R.shape[:-2])
        return (jnp.sum(self.R, (-2, -1)) - jnp.trace(self.R, axis1=-2, axis2=-1)) / (
            self.K * (self.K - 1))

    @property
    def C_off(self):
        if self.K == 1:
            return jnp.zeros(self.Q.shape[:-2])
        return (jnp.sum(self.Q, (-2, -1)) - self.K) / (self.K * (self.K - 1))

    def chain_means(self) -> dict:
        """Per-chain time averages of R (diagonal mean), S, C, eps_g (numpy arrays)."""
        return {k: np.asarray(jnp.mean(v, axis=1)) for k, v in
                (("R", self.R_diag), ("S", self.S_off), ("C", self.C_off), ("eps_g", self.eps_g))}


def _energy(W, N, K, alpha, g):
    R = W[:, :K] / jnp.sqrt(N)
    Q = W @ W.T / N
    return N * alpha * K * statics_eps_g(R, Q, g)


def _project(W, V, N):
    return V - jnp.sum(V * W, axis=1, keepdims=True) / N * W


def _geodesic(W, V, h, N):
    rho = jnp.sqrt(N)
    a = jnp.linalg.norm(V, axis=1, keepdims=True)
    a_safe = jnp.where(a > 0, a, 1.0)
    th = a * h / rho
    W1 = W * jnp.cos(th) + V / a_safe * rho * jnp.sin(th)
    V1 = -W * a / rho * jnp.sin(th) + V * jnp.cos(th)
    W1 = W1 * (rho / jnp.linalg.norm(W1, axis=1, keepdims=True))  # remove rounding drift
    return W1, _project(W1, V1, N)


def _hmc_step(W, key, N, K, alpha, g, h, n_leap):
    E = lambda w: _energy(w, N, K, alpha, g)
    gradE = jax.grad(E)
    k1, k2 = jax.random.split(key)
    V = _project(W, jax.random.normal(k1, W.shape, W.dtype), N)
    H0 = E(W) + 0.5 * jnp.sum(V * V)

    def leap(carry, _):
        w, v = carry
        v = v - 0.5 * h * _project(w, gradE(w), N)
        w, v = _geodesic(w, v, h, N)
        v = v - 0.5 * h * _project(w, gradE(w), N)
        return (w, v), None

    (W1, V1), _ = jax.lax.scan(leap, (W, V), None, length=n_leap)
    H1 = E(W1) + 0.5 * jnp.sum(V1 * V1)
    acc = jnp.log(jax.random.uniform(k2, dtype=W.dtype)) < (H0 - H1)
    acc = acc & jnp.isfinite(H1)
    return jnp.where(acc, W1, W), acc


def _init_weights(key, N, K, init):
    W = jax.random.normal(key, (K, N))
    if init is not None:
        # W = R_target B + orthogonal part with Gram (Q - R R^T): exact target overlaps
        R0, Q0 = init
        Z = W[:, K:]
        L = jnp.linalg.cholesky(Q0 - R0 @ R0.T)
        # orthonormalise Z's rows, then give them Gram N (Q - R R^T)
        Qz, _ = jnp.linalg.qr(Z.T)
        Z = (L @ Qz.T) * jnp.sqrt(N)
        W = jnp.concatenate([R0 * jnp.sqrt(N), Z], axis=1)
    return W * (jnp.sqrt(N) / jnp.linalg.norm(W, axis=1, keepdims=True))


def sample_gibbs(*, K: int, g, alpha, N: int, n_chains: int = 16, n_samples: int = 200,
                 n_burn: int = 100, n_leap: int = 8, step=None, key=0, init=None) -> GibbsSamples:
    """Sample `exp(-N alpha K eps_g(W))` on the product of K spheres of radius sqrt(N) (teacher
    `B = sqrt(N) [I_K, 0]`) by geodesic HMC; `n_chains` chains in parallel (vmap).

    **Arguments:** `K`, `g`, `alpha` (>= 0), `N` (> 2K + 1); `n_samples` HMC trajectories kept
    after `n_burn`; `n_leap` leapfrog steps of size `step` (default `0.15 / sqrt(1 + alpha K / 10)`,
    trajectory time ~ 1, the relaxation time of the order parameters); `key` (int or PRNG key);
    `init`: None (uniform random students: R, Q ~ N^{-1/2}) or `(R, Q)` matrices to start from.

    Example:
        >>> s = jaxdyn.sample_gibbs(K=1, g=jaxdyn.ReLU(), alpha=2.0, N=50, n_chains=2, n_samples=10, n_burn=5)
        >>> float(s.acceptance.mean()) > 0.5
    """
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N <= 2 * K + 1:
        raise ValueError(f"N must be an integer > 2K + 1, got {N!r}")
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
        raise ValueError(f"K must be an integer >= 1, got {K!r}")
    g = as_activation(g)
    a = float(alpha)
    if not np.isfinite(a) or a < 0:
        raise ValueError(f"alpha must be finite and >= 0, got {alpha!r}")
    h = 0.15 / np.sqrt(1 + a * K / 10) if step is None else float(step)
    key = jax.random.PRNGKey(key) if isinstance(key, (int, np.integer)) else key
    kinit, krun = jax.random.split(key)
    if init is not None:
        init = (jnp.asarray(init[0], float), jnp.asarray(init[1], float))
    W0 = jax.vmap(lambda k: _init_weights(k, N, K, init))(jax.random.split(kinit, n_chains))
    keys = jax.random.split(krun, n_chains)
    R, Q, eps, acc = _run(W0, keys, jnp.asarray(a), jnp.asarray(h), g, N, K, n_leap,
                          n_burn, n_samples)
    # label students per chain so that its mean R has the largest trace (site permutation)
    Rm = np.asarray(R.mean(axis=1))
    perms = []
    cand = list(it.permutations(range(K))) if K <= 6 else [tuple(range(K))]
    for c in range(n_chains):
        best = max(cand, key=lambda p: sum(Rm[c][p[i], i] for i in range(K)))
        perms.append(best)
    P = jnp.asarray(np.array(perms))
    R = jax.vmap(lambda r, p: r[:, p, :])(R, P)
    Q = jax.vmap(lambda q, p: q[:, p][:, :, p])(Q, P)
    return GibbsSamples(N, K, jnp.asarray(a), R, Q, eps, acc)


@eqx.filter_jit
def _run(W0, keys, alpha, h, g, N, K, n_leap, n_burn, n_samples):
    def chain(W, key):
        def step(carry, k):
            W, n_acc = carry
            W, acc = _hmc_step(W, k, N, K, alpha, g, h, n_leap)
            R = W[:, :K] / jnp.sqrt(N)
            Q = W @ W.T / N
            return (W, n_acc + acc.astype(n_acc.dtype)), (R, Q, statics_eps_g(R, Q, g))

        ks = jax.random.split(key, n_burn + n_samples)
        (W, _), _ = jax.lax.scan(step, (W, jnp.zeros((), int)), ks[:n_burn])
        (W, n_acc), (R, Q, e) = jax.lax.scan(step, (W, jnp.zeros((), int)), ks[n_burn:])
        return R, Q, e, n_acc / n_samples

    return jax.vmap(chain)(W0, keys)
