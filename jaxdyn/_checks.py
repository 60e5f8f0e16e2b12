"""Input validation shared by the public entry points (a leaf module: imports nothing of jaxdyn).

Rule: value checks run on *concrete* inputs only, and with NumPy, so that every entry point can be
called inside `jax.jit`, `jax.vmap` or `jax.grad`. A traced value (`jax.core.Tracer`) skips the
value checks; shape checks still run (shapes are static under tracing). Never build a checked
quantity with `jnp` and convert it with `np.asarray`: under `jit` every `jnp` operation is traced,
even on constant inputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_traced(*xs) -> bool:
    """True if any leaf of `xs` is a JAX tracer (then value checks must be skipped)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(xs))


def concrete(x):
    """`x` as a NumPy array, or `None` if it is traced."""
    if is_traced(x):
        return None
    return np.asarray(x)


def check_psd(C, what: str, *, strict: bool = False, rtol: float = 1e-10) -> None:
    """Raise `ValueError` unless the concrete matrices `C[..., n, n]` are finite, symmetric and
    positive semi-definite (`strict`: definite), up to `rtol` times the largest eigenvalue."""
    C = np.asarray(C, dtype=float)
    if not np.all(np.isfinite(C)):
        raise ValueError(f"{what} contains non-finite entries")
    if not np.allclose(C, np.swapaxes(C, -1, -2), rtol=1e-12, atol=1e-12):
        raise ValueError(f"{what} must be symmetric")
    ev = np.linalg.eigvalsh(C)
    scale = max(1.0, float(np.max(np.abs(ev)))) if ev.size else 1.0
    lo = float(np.min(ev)) if ev.size else 0.0
    if strict and lo <= rtol * scale:
        raise ValueError(f"{what} must be positive definite (smallest eigenvalue {lo:.3e})")
    if lo < -rtol * scale:
        raise ValueError(
            f"{what} is not positive semi-definite (smallest eigenvalue {lo:.3e}): no Gaussian "
            "vector (no network) has this covariance; pass a positive semi-definite matrix"
        )


def check_eta(eta, *, scalar: bool = False, hint: str = "") -> None:
    """Raise `ValueError` unless every eta is a finite positive number (tracers: shape only).

    `scalar`: also refuse arrays with more than one element (`hint` says what to use instead)."""
    if scalar and np.ndim(eta) != 0:
        raise ValueError(
            f"eta must be a scalar here, got an array of shape {np.shape(eta)}"
            + (f"; {hint}" if hint else "")
        )
    e = concrete(eta)
    if e is None:
        return
    e = e.astype(float)
    if not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise ValueError(f"eta must be > 0 and finite, got {eta!r}")


def check_alphas(alphas, alpha0=0.0, *, min_size: int = 1) -> None:
    """Raise `ValueError` unless `alphas` is a 1-D array of at least `min_size` finite,
    non-decreasing times starting at or after `alpha0` (tracers: shape only)."""
    if np.ndim(alphas) != 1 or np.shape(alphas)[0] < min_size:
        what = "non-empty" if min_size <= 1 else f"at least {min_size} entries"
        raise ValueError(f"alphas must be a 1-D array ({what}), got shape {np.shape(alphas)}")
    a, a0 = concrete(alphas), concrete(alpha0)
    if a is None or a0 is None:
        return
    a = a.astype(float)
    if not np.all(np.isfinite(a)) or not np.isfinite(float(a0)):
        raise ValueError("alphas (and alpha0) must be finite; remove the NaN/inf entries")
    if np.any(np.diff(a) < 0) or a[0] < float(a0):
        raise ValueError("alphas must be non-decreasing and start at or after alpha0")


def check_order(order) -> int:
    """The Hermite truncation order as an int >= 1, or a `ValueError`."""
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise ValueError(
            f"order (the Hermite series' truncation order) must be an integer >= 1, got {order!r}; "
            "10 is the default, higher is more accurate and slower"
        )
    return int(order)


def sim_schedule(*, dtype, alphas, record_every, alpha_max, N: int, seeds):
    """The simulators' shared argument handling: checked `dtype`, the recorded `steps`, the steps
    between records `nsteps` (int32) and the `seed_list`."""
    dtype = jnp.dtype(dtype)
    if dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype=float64 needs jaxdyn.enable_x64() first")
    if alphas is None:
        if record_every is None or alpha_max is None:
            raise ValueError("pass alphas, or record_every (steps) together with alpha_max")
        steps = np.arange(0, int(round(alpha_max * N)) + 1, int(record_every))
    else:
        a = np.asarray(alphas, dtype=float).reshape(-1)
        if a.size == 0 or np.any(a < 0) or np.any(np.diff(a) < 0) or not np.all(np.isfinite(a)):
            raise ValueError("alphas must be a non-empty, non-decreasing array of times >= 0")
        steps = np.rint(a * N).astype(np.int64)
    if steps[-1] >= 2**31 - 1:
        raise ValueError("more than 2^31 steps are not supported")
    nsteps = np.diff(np.concatenate([[0], steps])).astype(np.int32)
    if np.isscalar(seeds) or np.ndim(seeds) == 0:
        S = int(seeds)
        if S < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        seed_list = np.arange(S)
    else:
        seed_list = np.asarray(seeds, dtype=np.int64).reshape(-1)
    return dtype, steps, nsteps, seed_list
