"""Shared test helpers: random covariances and states, Monte Carlo estimators with their standard
errors, central finite differences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxdyn as jd


def random_psd(rng, n: int, *, rank: int | None = None, scale: float = 1.0) -> np.ndarray:
    """A random n x n PSD matrix `scale * A A^T / r` with A an n x r standard normal matrix
    (r = `rank`, default n): rank min(n, r); r > n gives a well-conditioned full-rank matrix."""
    r = n if rank is None else rank
    A = rng.normal(size=(n, r))
    return scale * A @ A.T / r


def random_covariances(rng, n: int, count: int, *, log_sd=(-0.8, 0.7)) -> np.ndarray:
    """`count` random full-rank n x n covariances `random_psd(rank=n+1)` with their variances
    rescaled by `exp(uniform(*log_sd))` per unit (non-unit variances, ~0.2 to ~4 by default)."""
    out = []
    for _ in range(count):
        C = random_psd(rng, n, rank=n + 1)
        s = np.exp(rng.uniform(*log_sd, size=n))
        out.append(C * np.outer(s, s))
    return np.array(out)


def overlap_blocks(C, K: int):
    """Split a (K+M) x (K+M) covariance of (student, teacher) fields into `(Q, R, T)`."""
    return C[:K, :K], C[:K, K:], C[K:, K:]


def random_state(rng, K: int, M: int, *, T=None, scale: float = 1.0):
    """Random weights J (K x d), B (M x d) with d = 2(K+M): a PSD covariance by construction.
    Returns `(T, OrderParams)`; if `T` is given the teacher is rescaled to have exactly that T."""
    d = 2 * (K + M)
    J = scale * rng.normal(size=(K, d)) / np.sqrt(d)
    B = rng.normal(size=(M, d)) / np.sqrt(d)
    if T is not None:
        L = np.linalg.cholesky(np.asarray(T))
        Bq, _ = np.linalg.qr(rng.normal(size=(d, M)))
        B = L @ Bq.T
    return B @ B.T, jd.OrderParams(Q=jnp.asarray(J @ J.T), R=jnp.asarray(J @ B.T))


def mc_mean(samples: np.ndarray):
    """Mean and its standard error along axis 0."""
    samples = np.asarray(samples)
    return samples.mean(0), samples.std(0, ddof=1) / np.sqrt(samples.shape[0])


def gaussian_samples(rng, cov: np.ndarray, n: int) -> np.ndarray:
    """n samples of N(0, cov) (cov PSD, possibly singular), by an eigendecomposition."""
    w, V = np.linalg.eigh(np.asarray(cov))
    L = V * np.sqrt(np.clip(w, 0.0, None))
    return rng.normal(size=(n, cov.shape[0])) @ L.T


def directional_difference(f, x, dx=1.0, h: float = 1e-6):
    """Central difference `(f(x + h dx) - f(x - h dx)) / 2h` (error O(h^2 |f'''|)); any shapes."""
    return (f(x + h * dx) - f(x - h * dx)) / (2 * h)


def central_difference(f, x, h: float = 1e-6):
    """Central finite-difference gradient of a scalar function of a 1-D float64 array."""
    assert jax.config.jax_enable_x64
    x = np.asarray(x, dtype=float)
    g = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (float(f(x + e)) - float(f(x - e))) / (2 * h)
    return g
