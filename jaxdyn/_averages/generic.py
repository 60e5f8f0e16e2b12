"""The generic route of `jaxdyn.I2`, `I3`, `I4`, `J2` (activations without a closed form, mixtures).

Called by the dispatch in `jaxdyn._averages.dispatch`. `acts` is a tuple of activations, one per position:
I2 `(g1, g2)`: `E[g1(z1) g2(z2)]`; J2 `(g1, g2)`: `E[g1'(z1) g2'(z2)]`; I3 `(g1, g3)`:
`E[g1'(z1) z2 g3(z3)]`; I4 `(g1, g2, g3, g4)`: `E[g1'(z1) g2'(z2) g3(z3) g4(z4)]`.

Routes, in order of preference:

1. *Exact ReLU reduction.* If every activation is `b relu(x) + c relu(-x)` (ReLU, linear, leaky
   ReLU, |x| and any mixture of them), then `g' = b theta(x) - c theta(-x)` and every average is a
   signed sum of ReLU averages of the covariance with some variables' signs flipped
   (`relu(-z) = relu(w)`, `w = -z`): closed forms for I2/I3/J2, the exact ReLU I4 for I4.
2. *Quadrature* (I2, J2, I3): two-dimensional composite Gauss-Legendre against the normal law in
   Cholesky coordinates, `z1 = L11 u1`, `z2 = L21 u1 + L22 u2`, split at `u1 = 0` and at the `u2`
   where `z2 = 0`, so that kinks (and jumps of g') at 0 are integrated exactly. I3 needs only the
   conditional mean of the middle variable, `E[z2 | z1, z3]`, which is linear in `(u1, u2)`.
3. *Hermite series* (I4 otherwise): paper 001's series at order `DEFAULT_ORDER`, which warns
   outside its convergence region (see `jaxdyn.hermite.hermite_in_region`).

All functions are batched over leading axes of `cov` and jit/vmap/grad compatible.
"""

from __future__ import annotations

import functools as ft
import itertools as it

import jax.numpy as jnp
import numpy as np

from . import hermite, relu_moments
from .closed_forms import relu_i2, relu_i3, relu_j2
from .hermite import relu_decomposition
from .numerics import gauss_legendre, sqrt_pos


DEFAULT_ORDER = 10
_QUAD_HALF = 48  # nodes per half-line in each dimension of the 2-D rule (96 x 96 points)
_QUAD_RANGE = 10.0


def _decs(acts):
    d = [relu_decomposition(g) for g in acts]
    return d if all(x is not None for x in d) else None


def _kg(dec, s):
    """Weight of relu(s z) in g(z) = b relu(z) + c relu(-z)."""
    return dec[0] if s > 0 else dec[1]


def _kd(dec, s):
    """Weight of theta(s z) in g'(z) = b theta(z) - c theta(-z)."""
    return dec[0] if s > 0 else -dec[1]


# --------------------------------------------------------------------------- 2-D quadrature
def _quad2d(c11, c12, c22, n_half: int = _QUAD_HALF, half_range: float = _QUAD_RANGE):
    """Nodes and weights for `E[F(z1, z2)]`, `(z1, z2) ~ N(0, [[c11, c12], [c12, c22]])`.

    Returns `(u1, u2, w, L11, L21, L22)` with u1 (..., Q, 1), u2 and w (..., Q, Q), such that
    `sum w F(L11 u1, L21 u1 + L22 u2) ~ E[F]`. The rule in u1 is split at 0 and the rule in u2 at
    `u2 = -L21 u1 / L22` (where z2 changes sign).
    """
    x, wx = hermite.split_rule(n_half, half_range)
    L11 = sqrt_pos(c11)
    ok1 = L11 > 0
    L21 = jnp.where(ok1, c12 / jnp.where(ok1, L11, 1.0), 0.0)
    L22 = sqrt_pos(c22 - L21**2)
    ok2 = L22 > 1e-12 * (1.0 + jnp.sqrt(jnp.abs(c22)))
    u1 = jnp.asarray(x)[:, None]  # (Q, 1)
    L21e, L22e, ok2e = L21[..., None, None], L22[..., None, None], ok2[..., None, None]
    t = jnp.where(ok2e, jnp.clip(-L21e * u1 / jnp.where(ok2e, L22e, 1.0), -half_range, half_range),
                  half_range)  # (..., Q, 1)
    xi, om = gauss_legendre(n_half)
    lo, hi = -half_range, half_range
    left = 0.5 * (t - lo) * xi + 0.5 * (t + lo)  # (..., Q, n_half)
    right = 0.5 * (hi - t) * xi + 0.5 * (hi + t)
    u2 = jnp.concatenate([left, right], axis=-1)
    w2 = jnp.concatenate([0.5 * (t - lo) * om, 0.5 * (hi - t) * om], axis=-1)
    w2 = w2 * jnp.exp(-0.5 * u2**2) / np.sqrt(2 * np.pi)
    w = jnp.asarray(wx)[:, None] * w2
    return u1, u2, w, L11[..., None, None], L21e, L22e


def _quad_pair(cov, f1, f2):
    """E[f1(z1) f2(z2)] for a (..., 2, 2) covariance by the split 2-D rule."""
    u1, u2, w, L11, L21, L22 = _quad2d(cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 1])
    z1 = L11 * u1
    z2 = L21 * u1 + L22 * u2
    return jnp.sum(w * f1(z1) * f2(z2), axis=(-2, -1))


# ------------------------------------------------------------------------------- functions
def _relu_pair(cov, decs, weight, closed_form):
    """Signed sum of a two-point ReLU closed form over the sign flips of both units."""
    c11, c22, c12 = cov[..., 0, 0], cov[..., 1, 1], cov[..., 0, 1]
    out = 0.0
    for s1, s2 in it.product((1, -1), repeat=2):
        k = weight(decs[0], s1) * weight(decs[1], s2)
        if k != 0.0:
            out = out + k * closed_form(c11, c22, s1 * s2 * c12)
    return out * jnp.ones_like(c12)


def I2(cov, acts):
    """`E[g1(z1) g2(z2)]`, `cov` (..., 2, 2): exact ReLU reduction or 2-D quadrature."""
    g1, g2 = acts
    decs = _decs(acts)
    if decs is not None:
        return _relu_pair(cov, decs, _kg, relu_i2)
    return _quad_pair(cov, g1, g2)


def J2(cov, acts):
    """`E[g1'(z1) g2'(z2)]`, `cov` (..., 2, 2): exact ReLU reduction or 2-D quadrature."""
    g1, g2 = acts
    decs = _decs(acts)
    if decs is not None:
        return _relu_pair(cov, decs, _kd, relu_j2)
    return _quad_pair(cov, g1.deriv, g2.deriv)


def I3(cov, acts):
    """`E[g1'(z1) z2 g3(z3)]`, `cov` (..., 3, 3): exact ReLU reduction or 2-D quadrature.

    Quadrature: integrate over (z1, z3) with z2 replaced by its conditional mean
    `E[z2 | z1, z3] = L31 u1 + L32 u2` (Cholesky of the (z1, z3, z2) covariance); `L32` is set to 0
    where z1 and z3 are collinear (then `E[z2 | z1] = L31 u1` exactly).
    """
    g1, g3 = acts
    decs = _decs(acts)
    c11, c12, c13 = cov[..., 0, 0], cov[..., 0, 1], cov[..., 0, 2]
    c23, c33 = cov[..., 1, 2], cov[..., 2, 2]
    if decs is not None:
        out = 0.0
        for s1, s3 in it.product((1, -1), repeat=2):
            k = _kd(decs[0], s1) * _kg(decs[1], s3)
            if k != 0.0:
                out = out + k * relu_i3(c11, s1 * s3 * c13, c33, s1 * c12, s3 * c23)
        return out * jnp.ones_like(c12)
    u1, u2, w, L11, L21, L22 = _quad2d(c11, c13, c33)
    ok1 = L11 > 0
    L31 = jnp.where(ok1, c12[..., None, None] / jnp.where(ok1, L11, 1.0), 0.0)
    ok2 = L22 > 1e-12 * (1.0 + jnp.sqrt(jnp.abs(c33[..., None, None])))
    L32 = jnp.where(ok2, (c23[..., None, None] - L31 * L21) / jnp.where(ok2, L22, 1.0), 0.0)
    z1 = L11 * u1
    z3 = L21 * u1 + L22 * u2
    m2 = L31 * u1 + L32 * u2
    return jnp.sum(w * g1.deriv(z1) * m2 * g3(z3), axis=(-2, -1))


@ft.lru_cache(maxsize=None)
def _i4_sign_patterns(decs: tuple):
    """Static (signs (S, 4), weights (S,)) of the ReLU reduction of I4, zero weights dropped."""
    signs, weights = [], []
    for s in it.product((1, -1), repeat=4):
        k = _kd(decs[0], s[0]) * _kd(decs[1], s[1]) * _kg(decs[2], s[2]) * _kg(decs[3], s[3])
        if k != 0.0:
            signs.append(s)
            weights.append(k)
    return np.array(signs, dtype=float), np.array(weights)


def I4(cov, acts):
    """`E[g1'(z1) g2'(z2) g3(z3) g4(z4)]`, `cov` (..., 4, 4).

    Exact for mixtures of `x`, `relu(x)`, `relu(-x)`: a signed sum of up to 16 exact ReLU I4 on
    sign-flipped covariances `D C D` (one batched call). Otherwise paper 001's Hermite series at
    order `DEFAULT_ORDER` (warns outside its convergence region; `method="hermite", order=N` to
    choose the order).
    """
    decs = _decs(acts)
    if decs is None:
        return I4_hermite(cov, acts, DEFAULT_ORDER)
    signs, weights = _i4_sign_patterns(tuple(decs))
    D = jnp.asarray(signs, cov.dtype)  # (S, 4)
    flipped = cov[..., None, :, :] * D[:, :, None] * D[:, None, :]  # (..., S, 4, 4)
    vals = relu_moments.relu_i4(flipped)
    return jnp.sum(vals * jnp.asarray(weights, cov.dtype), axis=-1)


def falls_back_to_series(acts) -> bool:
    """Whether `I4(cov, acts)` has no exact route and uses the order-`DEFAULT_ORDER` series."""
    return _decs(acts) is None


def I4_hermite(cov, acts, order: int = DEFAULT_ORDER):
    """`I4` by paper 001's Hermite series truncated at `order` (`hermite.hermite_i4`)."""
    return hermite.hermite_i4(cov, tuple(acts), order)
