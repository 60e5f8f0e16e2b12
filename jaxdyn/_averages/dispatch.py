"""Gaussian averages I2, I3, I4 (and J2 = E[g'(z1) g'(z2)]) for z ~ N(0, cov).

- `I2(cov, g)  = E[g1(z1) g2(z2)]`
- `I3(cov, g)  = E[g1'(z1) z2 g3(z3)]`
- `I4(cov, g)  = E[g1'(z1) g2'(z2) g3(z3) g4(z4)]`
- `J2(cov, g)  = E[g1'(z1) g2'(z2)]` (the teacher-noise term)

`g` is one activation (used at every position) or a tuple with one activation per position
(I2: `(g1, g2)`, I3: `(g1, g3)`, I4: `(g1, g2, g3, g4)`, J2: `(g1, g2)`); a student/teacher
mismatch such as a ReLU student and an erf teacher is a tuple. All functions are batched over
leading axes of `cov`, and jit/vmap/grad compatible. Closed forms are used for ReLU, erf(x/sqrt 2)
and linear units; ReLU I2 and I3 carry hand-derived derivatives (`jax.custom_jvp`) that stay
finite at singular covariances (identical or collinear units), where the textbook formulas give
inf - inf.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax.numpy as jnp

from .._activations import AbstractActivation, Erf, Linear, ReLU, as_activation
from .._checks import check_psd, concrete
from .hermite import warn_outside_region
from .relu_moments import relu_i4
from .._typing import Average, Cov2, Cov3, Cov4
from . import generic as generic_route
from .closed_forms import (
    erf_i2,
    erf_i3,
    erf_i4,
    erf_j2,
    relu_i2,
    relu_i3,
    relu_j2,
    relu_moment_small as relu_moment_small,
)


def _acts(g, n: int) -> tuple[AbstractActivation, ...]:
    if isinstance(g, (tuple, list)):
        if len(g) != n:
            raise ValueError(f"expected {n} activations, got {len(g)}")
        return tuple(as_activation(a) for a in g)
    a = as_activation(g)
    return (a,) * n


def _check_cov(cov, n: int, *, psd: bool = False):
    if psd:  # value check on the concrete input only (NumPy), never on a tracer
        c = concrete(cov)
        if c is not None and c.ndim >= 2 and c.shape[-2:] == (n, n):
            check_psd(c, f"cov (a {n} x {n} covariance)")
    cov = jnp.asarray(cov)
    if not jnp.issubdtype(cov.dtype, jnp.floating):
        cov = cov.astype(float)
    if cov.ndim < 2 or cov.shape[-2:] != (n, n):
        raise ValueError(f"cov must have shape (..., {n}, {n}), got {cov.shape}")
    return cov


@functools.cache
def _jit(fn):
    # the public averages run as one compiled program per shape and activation (called eagerly,
    # op by op, an exact ReLU I4 dispatched and compiled hundreds of small programs); under an
    # outer jit this is inlined
    return eqx.filter_jit(fn)


def _same_type(acts) -> type | None:
    t = type(acts[0])
    return t if all(type(a) is t for a in acts) else None


# ------------------------------------------------------------------------------ public functions
def I2(cov: Cov2, g) -> Average:
    """`E[g1(z1) g2(z2)]` for `z ~ N(0, cov)`, `cov` of shape `(..., 2, 2)`.

    Example:
        >>> jaxdyn.I2(jnp.eye(2), jaxdyn.ReLU())   # = 1/(2 pi)
    """
    return _jit(gauss_i2)(_check_cov(cov, 2, psd=True), g)


def gauss_i2(cov, g):
    """`jaxdyn.I2` without the value checks (the hot path of the vector field)."""
    cov = _check_cov(cov, 2)
    acts = _acts(g, 2)
    c11, c22, c12 = cov[..., 0, 0], cov[..., 1, 1], cov[..., 0, 1]
    t = _same_type(acts)
    if t is ReLU:
        return relu_i2(c11, c22, c12)
    if t is Erf:
        return erf_i2(c11, c22, c12)
    if t is Linear:
        return c12
    return generic_route.I2(cov, acts)


def I3(cov: Cov3, g) -> Average:
    """`E[g1'(z1) z2 g3(z3)]` for `z ~ N(0, cov)`, `cov` of shape `(..., 3, 3)`.

    Example:
        >>> jaxdyn.I3(jnp.eye(3), jaxdyn.ReLU())   # = 0: z2 is independent of z1, z3
    """
    return _jit(gauss_i3)(_check_cov(cov, 3, psd=True), g)


def gauss_i3(cov, g):
    """`jaxdyn.I3` without the value checks (the hot path of the vector field)."""
    cov = _check_cov(cov, 3)
    acts = _acts(g, 2)
    t = _same_type(acts)
    if t is ReLU:
        return relu_i3(cov[..., 0, 0], cov[..., 0, 2], cov[..., 2, 2], cov[..., 0, 1], cov[..., 1, 2])
    if t is Erf:
        return erf_i3(cov)
    if t is Linear:
        return cov[..., 1, 2]
    return generic_route.I3(cov, acts)


def I4(cov: Cov4, g, *, method: str = "exact", order: int = 10) -> Average:
    """`E[g1'(z1) g2'(z2) g3(z3) g4(z4)]` for `z ~ N(0, cov)`, `cov` of shape `(..., 4, 4)`.

    `method="exact"` (default) uses a closed form where one exists: erf and linear in closed form,
    ReLU by the exact reduction of docs/conventions.md, Gaussian averages (Stein's lemma + Plackett's identity), finite
    and differentiable at singular covariances. `method="hermite"` uses the Kibble-Slepian series
    of paper 001 truncated at `order`.

    Example:
        >>> jaxdyn.I4(jnp.eye(4), jaxdyn.ReLU())   # = (1/2)(1/2)(1/sqrt(2 pi))^2 = 1/(8 pi)
    """
    cov = _check_cov(cov, 4, psd=True)
    out = _jit(gauss_i4)(cov, g, method=method, order=order)
    # the series' region warning needs the concrete cov (inside the jit it is a tracer)
    if method == "hermite":
        warn_outside_region(cov, order, stacklevel=2)
    elif _same_type(_acts(g, 4)) not in (ReLU, Erf, Linear) and \
            generic_route.falls_back_to_series(_acts(g, 4)):
        warn_outside_region(cov, generic_route.DEFAULT_ORDER, stacklevel=2)
    return out


def gauss_i4(cov, g, *, method: str = "exact", order: int = 10):
    """`jaxdyn.I4` without the value checks (the hot path of the vector field)."""
    cov = _check_cov(cov, 4)
    acts = _acts(g, 4)
    if method == "hermite":
        return generic_route.I4_hermite(cov, acts, order)
    if method != "exact":
        raise ValueError(f"unknown method {method!r}; use 'exact' or 'hermite'")
    t = _same_type(acts)
    if t is ReLU:
        return relu_i4(cov)
    if t is Erf:
        return erf_i4(cov)
    if t is Linear:
        return cov[..., 2, 3]
    return generic_route.I4(cov, acts)


def J2(cov: Cov2, g) -> Average:
    """`E[g1'(z1) g2'(z2)]` for `z ~ N(0, cov)` (enters the teacher-noise term).

    Example:
        >>> jaxdyn.J2(jnp.eye(2), jaxdyn.ReLU())   # = 1/4
    """
    return _jit(gauss_j2)(_check_cov(cov, 2, psd=True), g)


def gauss_j2(cov, g):
    """`jaxdyn.J2` without the value checks (the hot path of the vector field)."""
    cov = _check_cov(cov, 2)
    acts = _acts(g, 2)
    c11, c22, c12 = cov[..., 0, 0], cov[..., 1, 1], cov[..., 0, 1]
    t = _same_type(acts)
    if t is ReLU:
        return relu_j2(c11, c22, c12)
    if t is Erf:
        return erf_j2(c11, c22, c12)
    if t is Linear:
        return jnp.ones_like(c12)
    return generic_route.J2(cov, acts)
