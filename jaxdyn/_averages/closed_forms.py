"""Closed forms of the Gaussian averages for ReLU and erf(x / sqrt 2) units (a leaf module).

Shared by the dispatch (`jaxdyn._averages.dispatch`), the exact ReLU reduction of the generic
route (`jaxdyn._averages.generic`) and the vector field (`jaxdyn._ode`). ReLU I2 and I3 carry hand-derived
derivatives (`jax.custom_jvp`) that stay finite at singular covariances (identical or collinear
units), where the textbook formulas give inf - inf.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .numerics import safe_ratio, safe_sqrt


TWO_PI = 2.0 * np.pi


# --------------------------------------------------------------------------------------- ReLU
def det2(c11, c22, c12):
    # c11 c22 - c12^2 as (s - |c12|)(s + |c12|) with s = sqrt(c11 c22): exactly 0 when all three
    # entries are equal (sqrt(fl(a*a)) == a in IEEE arithmetic), whereas the plain form under
    # XLA's fused multiply-add leaves the rounding error of a^2 (+-1e-17, so sqrt ~ 3e-9).
    s = jnp.sqrt(c11 * c22)
    b = jnp.abs(c12)
    return (s - b) * (s + b)


def corr(c12, c11, c22):
    s = jnp.sqrt(c11 * c22)
    return jnp.clip(c12 / s, -1.0, 1.0)


# asin(c12 / sqrt(c11 c22)) is evaluated as atan2(c12, sqrt(det)): well conditioned at |rho| -> 1,
# and exactly +-pi/2 there (jit rewrites c12 / sqrt(.) as c12 * rsqrt(.), which is off by an ulp,
# and asin(1 - 1e-16) is off by 1.5e-8).
@jax.custom_jvp
def relu_i2(c11, c22, c12):
    # E[relu(a) relu(b)] = c12/4 + (sqrt(c11 c22 - c12^2) + c12 asin(rho)) / (2 pi)  (paper 002 eq. 28)
    D = safe_sqrt(det2(c11, c22, c12))
    return c12 / 4 + (D + c12 * jnp.arctan2(c12, D)) / TWO_PI


@relu_i2.defjvp
def _relu_i2_jvp(primals, tangents):
    c11, c22, c12 = primals
    t11, t22, t12 = tangents
    out = relu_i2(c11, c22, c12)
    sD = safe_sqrt(det2(c11, c22, c12))
    d11 = sD / (2 * TWO_PI * c11)
    d22 = sD / (2 * TWO_PI * c22)
    d12 = 0.25 + jnp.arctan2(c12, sD) / TWO_PI
    return out, d11 * t11 + d22 * t22 + d12 * t12


@jax.custom_jvp
def relu_i3(a, b, c, p, q):
    # paper 000 eq. (6) with a = s11, b = s13, c = s33, p = s12, q = s23:
    # E[theta(z1) z2 relu(z3)] = p sqrt(ac - b^2) / (2 pi a) + q asin(b / sqrt(ac)) / (2 pi) + q / 4
    sD = safe_sqrt(det2(a, c, b))
    return p * sD / (TWO_PI * a) + q * jnp.arctan2(b, sD) / TWO_PI + q / 4


@relu_i3.defjvp
def _relu_i3_jvp(primals, tangents):
    a, b, c, p, q = primals
    ta, tb, tc, tp, tq = tangents
    out = relu_i3(a, b, c, p, q)
    sD = safe_sqrt(det2(a, c, b))
    # |q a - p b| <= a sd(z2) sqrt(D / a) and |p c - q b| <= c sd(z2) sqrt(D / c) by Cauchy-Schwarz;
    # sd(z2) is bounded by sqrt(|p| |q|)-free quantities we do not have, so bound by a generous
    # multiple of the scale (the clip only guards rounding noise where D ~ 0).
    scale = 1e3 * (jnp.abs(a) + jnp.abs(c) + jnp.abs(p) + jnp.abs(q) + 1.0)
    r_b = safe_ratio(q * a - p * b, sD, scale * a)
    r_c = safe_ratio(p * c - q * b, sD, scale * c)
    dp = sD / (TWO_PI * a)
    dq = 0.25 + jnp.arctan2(b, sD) / TWO_PI
    db = r_b / (TWO_PI * a)
    da = r_c / (2 * TWO_PI * a) - p * sD / (TWO_PI * a**2)
    dc = r_c / (2 * TWO_PI * c)
    return out, da * ta + db * tb + dc * tc + dp * tp + dq * tq


def relu_moment_small(cov, p: int, q: int):
    """`E[z_p z_q prod_k theta(z_k)]` for n = 1, 2 units (`cov` of shape (..., n, n)), by the
    closed forms above, whose derivatives stay exact at collinear units (|rho| = 1)."""
    n = cov.shape[-1]
    if n == 1:
        return cov[..., 0, 0] / 2
    if n != 2:
        raise ValueError("relu_moment_small handles 1 or 2 units")
    c00, c11, c01 = cov[..., 0, 0], cov[..., 1, 1], cov[..., 0, 1]
    if p != q:
        return relu_i2(c00, c11, c01)  # E[z0 z1 theta0 theta1] = E[relu(z0) relu(z1)]
    if p == 0:  # E[theta(z1) z0 relu(z0)]: I3 with (z1, z2, z3) = (unit 1, unit 0, unit 0)
        return relu_i3(c11, c01, c00, c01, c00)
    return relu_i3(c00, c01, c11, c01, c11)


def relu_j2(c11, c22, c12):
    return 0.25 + jnp.arcsin(corr(c12, c11, c22)) / TWO_PI


# ---------------------------------------------------------------------------------------- erf
def erf_i2(c11, c22, c12):
    return (2 / np.pi) * jnp.arcsin(c12 / jnp.sqrt((1 + c11) * (1 + c22)))


def erf_i3_entries(c11, c12, c13, c23, c33):
    """Erf I3 from the covariance entries (broadcasting: the vector field evaluates all triples)."""
    L3 = (1 + c11) * (1 + c33) - c13**2
    return (2 / np.pi) * (c23 * (1 + c11) - c12 * c13) / ((1 + c11) * jnp.sqrt(L3))


def erf_i3(C):
    return erf_i3_entries(C[..., 0, 0], C[..., 0, 1], C[..., 0, 2], C[..., 1, 2], C[..., 2, 2])


def erf_i4(C):
    c = lambda i, j: C[..., i, j]
    c11, c22, c33, c44 = c(0, 0), c(1, 1), c(2, 2), c(3, 3)
    c12, c13, c14, c23, c24, c34 = c(0, 1), c(0, 2), c(0, 3), c(1, 2), c(1, 3), c(2, 3)
    L4 = (1 + c11) * (1 + c22) - c12**2
    L0 = L4 * c34 - c23 * c24 * (1 + c11) - c13 * c14 * (1 + c22) + c12 * c13 * c24 + c12 * c14 * c23
    L1 = L4 * (1 + c33) - c23**2 * (1 + c11) - c13**2 * (1 + c22) + 2 * c12 * c13 * c23
    L2 = L4 * (1 + c44) - c24**2 * (1 + c11) - c14**2 * (1 + c22) + 2 * c12 * c14 * c24
    return (4 / np.pi**2) * jnp.arcsin(L0 / jnp.sqrt(L1 * L2)) / jnp.sqrt(L4)


def erf_j2(c11, c22, c12):
    return (2 / np.pi) / jnp.sqrt((1 + c11) * (1 + c22) - c12**2)
