"""Spontaneous symmetry breaking (paper 003, section 5.2): K ReLUs, orthonormal teacher
`w*_j = e_j`, cyclic-symmetric students `w_j = P_j w` with `w = (x, y, ..., y)` in the teacher
basis (`P_j` the cyclic shift), `v = u = 1`. The flow keeps the ansatz and reduces to 2-D.

Closed form of the reduced field (derived from Theorem 1; `n = |w_j| = sqrt(x^2 + (K-1) y^2)`,
`theta_x = angle(w_1, e_1)`, `theta_y = angle(w_1, e_2)`, `theta_s = angle(w_1, w_2)`,
`S = sin theta_x + (K-1) sin theta_y`):

    2 pi dx/dt = -pi x - (pi - theta_s)(K-1) y - (K-1) x sin theta_s + (pi - theta_x) + S x / n
    2 pi dy/dt = -pi y - (pi - theta_s)(x + (K-2) y) - (K-1) y sin theta_s
                 + (pi - theta_y) + S y / n

On the diagonal x = y the students coincide (theta_s = 0) and the only fixed point is
`y* = (sqrt(K-1) - acos(1/sqrt K) + pi) / (pi K)` (the paper's saddle).

Spectra at the saddle (derived here; `beta_T = K / (2 pi y* sqrt(K-1))`,
`beta_perp = sqrt(K-1) / (2 pi y*)`): the flow Jacobian in weight space (K d dims, d >= K) is
`-J_K (x) I_d / 2 + I_K (x) B` (`J_K` all-ones) with `B` having eigenvalues 0 (along the common
direction), `beta_T` (the K-1 teacher directions orthogonal to it), `beta_perp` (the d-K
directions orthogonal to the teachers). Hence
- student-symmetric modes: `-K/2` (x1), `beta_T - K/2` (x K-1), `beta_perp - K/2` (x d-K);
- modes that split the students (sum zero over students): `0` (x K-1: the students' norms along
  the common direction are free, a line of critical points), `beta_T` (x (K-1)^2),
  `beta_perp` (x (K-1)(d-K)).
The 2-D reduced Jacobian has eigenvalues `-K/2` (eigenvector (1, 1)) and `beta_T` (eigenvector
(K-1, -1)).
"""

from __future__ import annotations

import functools

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from ._population import safe_norm


def _check_K(K):
    if not (isinstance(K, (int, np.integer)) and K >= 2):
        raise ValueError(f"K must be an integer >= 2, got {K!r}")
    return int(K)


def cyclic_weights(x, y, *, K: int, d: int | None = None):
    """Students `w_j = y 1 + (x - y) e_j` (K x d; zero beyond the first K coordinates) and the
    orthonormal teacher `eye(K, d)`: the cyclic-symmetric initialisation of paper 003, thm. 6.

    Example:
        >>> W, Wt = jaxdyn.cyclic_weights(0.3, 0.1, K=3)
    """
    K = _check_K(K)
    d = K if d is None else int(d)
    if d < K:
        raise ValueError(f"d must be >= K = {K}, got {d}")
    x = jnp.asarray(x, float)
    y = jnp.asarray(y, float)
    eye = jnp.eye(K, d)
    ones = jnp.zeros(d).at[:K].set(1.0)
    W = y[..., None, None] * ones + (x - y)[..., None, None] * eye
    return W, eye


def cyclic_field(x, y, *, K: int):
    """The reduced 2-D field `(dx/dt, dy/dt)` of the cyclic ansatz in closed form (module doc).

    Example:
        >>> jaxdyn.cyclic_field(1.0, 0.0, K=3)   # the teacher: (0, 0)
    """
    K = jnp.asarray(_check_K(K), float)
    return _cyclic_field(jnp.asarray(x, float), jnp.asarray(y, float), K)


def _cyclic_field(x, y, K):
    # K enters only as a number: a traced float, so that one compilation serves every K
    n = safe_norm(jnp.stack(jnp.broadcast_arrays(x, jnp.sqrt(K - 1.0) * y), -1))
    th_x = jnp.arctan2(jnp.sqrt(K - 1.0) * jnp.abs(y), x)
    th_y = jnp.arctan2(safe_norm(jnp.stack(jnp.broadcast_arrays(x, jnp.sqrt(K - 2.0) * y), -1)), y)
    # theta_s by chords: w_1 - w_2 = (x - y)(e_1 - e_2), w_1 + w_2 = 2 y 1 + (x - y)(e_1 + e_2)
    chord_m = jnp.sqrt(2.0) * jnp.abs(x - y)
    chord_p = safe_norm(jnp.stack(
        jnp.broadcast_arrays(jnp.sqrt(2.0) * (x + y), 2 * jnp.sqrt(K - 2.0) * y), -1))
    th_s = 2 * jnp.arctan2(chord_m, chord_p)
    S = jnp.sin(th_x) + (K - 1) * jnp.sin(th_y)
    inv_n = jnp.where(n > 0, 1 / jnp.where(n > 0, n, 1.0), 0.0)
    fx = (-jnp.pi * x - (jnp.pi - th_s) * (K - 1) * y - (K - 1) * x * jnp.sin(th_s)
          + (jnp.pi - th_x) + S * x * inv_n)
    fy = (-jnp.pi * y - (jnp.pi - th_s) * (x + (K - 2) * y) - (K - 1) * y * jnp.sin(th_s)
          + (jnp.pi - th_y) + S * y * inv_n)
    return fx / (2 * jnp.pi), fy / (2 * jnp.pi)


def symmetric_saddle(K: int):
    """Paper 003, theorem 6: the fixed point `x = y = (sqrt(K-1) - acos(1/sqrt K) + pi)/(pi K)`
    of the cyclic flow on the diagonal (all students identical).

    Example:
        >>> jaxdyn.symmetric_saddle(2)   # 0.5341549430918953
    """
    K = _check_K(K)
    return (np.sqrt(K - 1) - np.arccos(1 / np.sqrt(K)) + np.pi) / (np.pi * K)


class SaddleSpectrum(eqx.Module):
    """Closed-form spectrum at the symmetric saddle (module docstring): `values` and
    `multiplicities` (numpy arrays, one row per distinct mode family), `labels`, and
    `reduced` (the two eigenvalues of the 2-D cyclic field: `-K/2`, `beta_T`)."""

    values: np.ndarray
    multiplicities: np.ndarray
    labels: tuple = eqx.field(static=True)
    reduced: np.ndarray

    def all(self) -> np.ndarray:
        """All K d eigenvalues, sorted."""
        return np.sort(np.repeat(self.values, self.multiplicities))


def saddle_spectrum(K: int, d: int | None = None) -> SaddleSpectrum:
    """The flow Jacobian's spectrum at the symmetric saddle, in closed form (see module doc).

    Example:
        >>> s = jaxdyn.saddle_spectrum(2); s.reduced   # (-1, 0.5959...)
    """
    K = _check_K(K)
    d = K if d is None else int(d)
    if d < K:
        raise ValueError(f"d must be >= K = {K}, got {d}")
    ys = symmetric_saddle(K)
    bT = K / (2 * np.pi * ys * np.sqrt(K - 1))
    bP = np.sqrt(K - 1) / (2 * np.pi * ys)
    values = np.array([-K / 2, bT - K / 2, bP - K / 2, 0.0, bT, bP])
    mult = np.array([1, K - 1, d - K, K - 1, (K - 1) ** 2, (K - 1) * (d - K)])
    labels = ("symmetric, common direction", "symmetric, teacher plane", "symmetric, off-plane",
              "splitting, common direction (zero mode)", "splitting, teacher plane",
              "splitting, off-plane")
    keep = mult > 0
    return SaddleSpectrum(values=values[keep], multiplicities=mult[keep],
                          labels=tuple(str(lab) for lab, k in zip(labels, keep) if k),
                          reduced=np.array([-K / 2, bT]))


class CyclicTrajectory(eqx.Module):
    """Solution of the reduced 2-D flow: `t`, `x`, `y` (n,), `status` (0 = finished)."""

    t: jax.Array
    x: jax.Array
    y: jax.Array
    status: jax.Array


@eqx.filter_jit
def _cyc(x0, y0, times, K, *, rtol, atol, max_steps):
    def rhs(t, z, args):
        fx, fy = _cyclic_field(z[0], z[1], K)
        return jnp.stack([fx, fy])

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(rhs), diffrax.Dopri8(), t0=0.0, t1=times[-1], dt0=None,
        y0=jnp.stack([x0, y0]), saveat=diffrax.SaveAt(ts=times),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), max_steps=max_steps,
        throw=False,
    )
    status = jnp.where(sol.result == diffrax.RESULTS.successful, 0, 1)
    return CyclicTrajectory(t=times, x=sol.ys[:, 0], y=sol.ys[:, 1], status=status)


def cyclic_flow(x0, y0, *, K: int, times, rtol: float = 1e-11, atol: float = 1e-13,
                max_steps: int = 100_000) -> CyclicTrajectory:
    """Integrate the reduced 2-D flow from `(x0, y0)` (diffrax Dopri8), recording at `times`.

    Example:
        >>> tr = jaxdyn.cyclic_flow(0.3, 0.1, K=2, times=jnp.linspace(0.0, 30.0, 4))
        >>> tr.x[-1], tr.y[-1]   # -> (1, 0): the teacher
    """
    K = _check_K(K)
    x0 = jnp.asarray(x0, float)
    y0 = jnp.asarray(y0, float)
    if not isinstance(x0, jax.core.Tracer) and not isinstance(y0, jax.core.Tracer):
        if float(x0) ** 2 + (K - 1) * float(y0) ** 2 == 0:
            raise ValueError("(x0, y0) = (0, 0) are zero-norm students: the gradient is undefined")
    times = jnp.asarray(times, float)
    return _cyc(x0, y0, times, jnp.asarray(K, float), rtol=rtol, atol=atol, max_steps=max_steps)


def cyclic_fixed_point(x0, y0, *, K: int, rtol: float = 1e-14, atol: float = 1e-15):
    """Newton on the reduced field from the guess `(x0, y0)`; returns `(x, y)` as an array.

    Example:
        >>> jaxdyn.cyclic_fixed_point(0.5, 0.5, K=2)   # the saddle (y*, y*)
    """
    return _newton(jnp.array([x0, y0], float), jnp.asarray(_check_K(K), float), rtol, atol)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _newton(z0, K, rtol, atol):
    def fn(z, args):
        return jnp.stack(_cyclic_field(z[0], z[1], args))

    return optx.root_find(fn, optx.Newton(rtol=rtol, atol=atol), z0, args=K, max_steps=100,
                          throw=False).value


def cyclic_jacobian(x, y, *, K: int):
    """2 x 2 Jacobian of the reduced field at `(x, y)` (`jax.jacfwd`; finite at x = y, where the
    field is C^1 but not C^2).

    Example:
        >>> jaxdyn.cyclic_jacobian(0.534, 0.534, K=2)
    """
    return _jac2(jnp.array([x, y], float), jnp.asarray(_check_K(K), float))


@jax.jit
def _jac2(z, K):
    return jax.jacfwd(lambda z: jnp.stack(_cyclic_field(z[0], z[1], K)))(z)
