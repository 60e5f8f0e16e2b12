"""Paper 003, section 5.1: one ReLU student `w`, one teacher `w*` (`b = |w*|`), gradient flow
`dw/dt = -dL/dw = -w/2 + F(w, w*)`.

With `a = |w|`, `theta = angle(w, w*)`, the Lyapunov function `V = |w - w*|^2 / 2` changes at

    dV/dt = [-pi a^2 + ((2 pi - theta) cos theta + sin theta) a b
             - (pi - theta + sin theta cos theta) b^2] / (2 pi),

a quadratic form in `(a, b)` (derived from Theorem 1). It is negative definite for
`0 < theta < theta_c = 2.3276...` (root of `B^2 = 4 pi C` with `B = (2 pi - theta) cos theta +
sin theta`, `C = pi - theta + sin theta cos theta`); beyond `theta_c` it is indefinite, but `B < 0`
there, so it is still negative for `a, b > 0`. Hence V decreases along the flow at every
`w != 0, w*`, not only in the paper's ball `|w - w*| < |w*|` (theorem 3): the ball is needed only to
keep the trajectory away from the origin, where the gradient is discontinuous.

Polar form of the flow: `da/dt = -a/2 + b (sin theta + (pi - theta) cos theta) / (2 pi)`,
`dtheta/dt = -b (pi - theta) sin theta / (2 pi a)`. Near `theta = pi` (`phi = pi - theta` small) the
norm decays as `a0 e^{-t/2}` while `1/phi0 - 1/phi = (b / (pi a0)) (e^{t/2} - 1)`: the escape from
an antiparallel start takes `t_esc ~ 2 ln(1 + pi a0 / (b phi0))` and passes close to the origin
(`|w| ~ b phi0 / pi`). Exactly antiparallel starts flow into the origin.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ._population import vector_angle


def lyapunov_rate(w, w_star):
    """`dV/dt` of `V = |w - w*|^2/2` along the single-ReLU gradient flow, in closed form
    (module docstring). Last axis = d; leading axes broadcast.

    Example:
        >>> jaxdyn.lyapunov_rate(jnp.array([0.5, 0.5]), jnp.array([1.0, 0.0]))   # < 0
    """
    w = jnp.asarray(w, float)
    ws = jnp.asarray(w_star, float)
    a = jnp.linalg.norm(w, axis=-1)
    b = jnp.linalg.norm(ws, axis=-1)
    th = vector_angle(w, ws)
    B = (2 * jnp.pi - th) * jnp.cos(th) + jnp.sin(th)
    C = jnp.pi - th + jnp.sin(th) * jnp.cos(th)
    return (-jnp.pi * a**2 + B * a * b - C * b**2) / (2 * jnp.pi)


def _BC(theta):
    B = (2 * np.pi - theta) * np.cos(theta) + np.sin(theta)
    C = np.pi - theta + np.sin(theta) * np.cos(theta)
    return B, C


def lyapunov_critical_angle() -> float:
    """`theta_c`: for `0 < theta < theta_c` the quadratic form of `dV/dt` in `(|w|, |w*|)` is
    negative definite; found by bisection on `B^2 - 4 pi C` (module docstring). (Beyond it the form
    is indefinite but still negative for positive norms.)

    Example:
        >>> jaxdyn.lyapunov_critical_angle()   # 2.3276...
    """
    from scipy.optimize import brentq

    return float(brentq(lambda t: _BC(t)[0] ** 2 - 4 * np.pi * _BC(t)[1], np.pi / 2, np.pi - 1e-9,
                        xtol=1e-15, rtol=1e-15))


def init_success_probability(r, d: int) -> float:
    """Exact probability that `w0` uniform in the ball `|w| <= r |w*|` (dimension d) lies in the
    paper's convergence ball `|w - w*| < |w*|`, i.e. `cos theta > |w0| / (2 |w*|)`.

    `P = int_0^1 (1/2) I_{1 - rho^2/4}((d-1)/2, 1/2) ds` with `rho = r s^(1/d)` (regularised
    incomplete beta for the spherical cap), by adaptive quadrature. Compare with the paper's bound
    `tian_probability_bound`.

    Example:
        >>> jaxdyn.init_success_probability(0.1, 10)   # close to 1/2
    """
    from scipy.integrate import quad
    from scipy.special import betainc

    r = float(r)
    if not (0 < r <= 2):
        raise ValueError(f"r must be in (0, 2] (units of |w*|; beyond 2 the ball contains all of "
                         f"the convergence ball), got {r}")
    if not (isinstance(d, (int, np.integer)) and d >= 2):
        raise ValueError(f"d must be an integer >= 2, got {d!r}")

    def cap(rho):
        s = rho / 2
        return 0.5 * betainc((d - 1) / 2, 0.5, 1 - s**2)

    # |w0| = r s^(1/d) with s uniform on [0, 1]
    val, _ = quad(lambda s: cap(r * s ** (1.0 / d)), 0, 1, epsabs=1e-14, epsrel=1e-12, limit=200)
    return float(val)


def tian_probability_bound(r, d: int) -> float:
    """Paper 003, theorem 4: convergence with probability at least `(1 - eps)/2` for `w0` uniform
    in the ball of radius `r |w*|`, `eps = r sqrt((d + 1) / (2 pi))` (needs eps <= 1)."""
    eps = float(r) * np.sqrt((d + 1) / (2 * np.pi))
    return (1 - eps) / 2


def antiparallel_escape_time(phi0, *, a0=1.0, b=1.0):
    """Leading-order time for a start at angle `pi - phi0` (norm `a0`) to turn away from the
    antiparallel direction: `2 ln(1 + pi a0 / (b phi0))` (module docstring; exact up to an
    O(1) constant as phi0 -> 0, the coefficient 2 of ln(1/phi0) is exact)."""
    return 2 * np.log1p(np.pi * np.asarray(a0, float) / (b * np.asarray(phi0, float)))
