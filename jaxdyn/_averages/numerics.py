"""Numerics shared by every Gaussian average (the leaf of `jaxdyn._averages`).

Square roots at singular covariances and Gauss-Legendre rules, each defined once.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np


def safe_sqrt(x):
    """`sqrt(max(x, 0))`: exact value, clipping the ~-1e-17 rounding of parallel vectors. Its
    derivative at 0 is never used (the closed forms that call it carry their own derivatives)."""
    return jnp.sqrt(jnp.maximum(x, 0.0))


def sqrt_pos(x, tiny: float = 0.0):
    """`sqrt(x)` for `x > tiny`, else 0, with a finite derivative everywhere (0, not inf * 0 =
    nan, at and below `tiny`): for Cholesky factors and norms at singular covariances."""
    ok = x > tiny
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, x, 1.0)), 0.0)


def safe_ratio(num, sqrt_den, bound):
    """`num / sqrt_den`, set to 0 where `sqrt_den == 0` and clipped to `[-bound, bound]`.

    Used for the Cauchy-Schwarz-bounded ratios Cov(z_b, e) / sd(e) that appear in derivatives at
    collinear covariances: along any feasible direction they vanish like sqrt(distance), so the
    one-sided derivative at the singular point is the regular part alone.
    """
    ok = sqrt_den > 1e-150
    r = num / jnp.where(ok, sqrt_den, 1.0)
    return jnp.where(ok, jnp.clip(r, -bound, bound), 0.0)


@functools.cache
def gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [-1, 1] (NumPy, cached per `n`)."""
    return np.polynomial.legendre.leggauss(n)
