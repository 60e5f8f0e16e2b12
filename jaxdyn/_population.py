"""Paper 003 (Tian, ICML 2017): the analytic population gradient of a two-layer ReLU network.

Weight-space picture. Input `x ~ N(0, I_d)`; student `f(x) = sum_j v_j relu(w_j . x)` with rows
`w_j` of `W` (K x d); teacher `f*(x) = sum_n u_n relu(w*_n . x)` with rows of `W_teacher` (M x d).
Population loss `L(W) = E[(f - f*)^2] / 2` (per sample: the paper's N-sample loss is N times this).

Theorem 1 (population gating): for a direction `e` and any `w`,
`F(e, w) = E[x 1{e.x > 0} relu(w.x)] = ((pi - theta) w + |w| sin(theta) e_hat) / (2 pi)`,
theta = angle(e, w). Hence `dL/dw_j = v_j [sum_k v_k F(w_j, w_k) - sum_n u_n F(w_j, w*_n)]`, and
`L = 1/2 (v^T G_ss v - 2 v^T G_st u + u^T G_tt u)` with
`G(a, b) = E[relu(a.x) relu(b.x)] = |a| |b| (sin theta + (pi - theta) cos theta) / (2 pi)`.

Relation to jaxdyn's order parameters (docs/conventions.md): `w_j = J_j / sqrt(N)` and `d = N`, so
`Q = W W^T`, `R = W W_teacher^T`, `T = W_teacher W_teacher^T`, and `L = eps_g`.

Angles are computed as `2 atan2(|a^ - b^|, |a^ + b^|)` (accurate at theta ~ 0 and ~ pi, where
`acos` loses half the digits and has an infinite derivative), with norms whose derivative at 0 is
taken as 0, so that `jax.jacfwd` is finite (and exact) at coinciding or antiparallel vectors: the
non-smooth parts of `F` are O(theta^2) there (the field is C^1, not C^2).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ._averages import sqrt_pos


_ANGLES = ("stable", "gram")


def _is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def safe_norm(x, axis=-1):
    """Euclidean norm along `axis` whose derivative at the zero vector is 0 (not nan)."""
    return sqrt_pos(jnp.sum(x * x, axis=axis))


def _unit(x):
    n = safe_norm(x)
    return jnp.where((n > 0)[..., None], x / jnp.where(n > 0, n, 1.0)[..., None], 0.0), n


def _angle_from_units(a_hat, b_hat):
    """(theta, pi - theta) from unit vectors, both by atan2 of chord lengths (no cancellation)."""
    dm = safe_norm(a_hat - b_hat)
    dp = safe_norm(a_hat + b_hat)
    return 2 * jnp.arctan2(dm, dp), 2 * jnp.arctan2(dp, dm)


def vector_angle(a, b):
    """The angle in `[0, pi]` between vectors `a` and `b` (last axis; leading axes broadcast).

    Computed as `2 atan2(|a^ - b^|, |a^ + b^|)`: accurate to rounding for every angle, including
    1e-12 and pi - 1e-12 (where `acos` of the cosine is off by ~1e-8). A zero vector gives pi/2.

    Example:
        >>> jaxdyn.vector_angle(jnp.array([1.0, 0.0]), jnp.array([1.0, 1e-12]))   # 1e-12
    """
    return _vector_angle(jnp.asarray(a, float), jnp.asarray(b, float))


@jax.jit
def _vector_angle(a, b):
    return _angle_from_units(_unit(a)[0], _unit(b)[0])[0]


def population_gating(e, w):
    """Theorem 1 of paper 003: `E[x 1{e.x > 0} relu(w.x)]` for `x ~ N(0, I_d)`.

    `((pi - theta) w + |w| sin(theta) e^) / (2 pi)` with `theta = angle(e, w)` and `e^ = e / |e|`
    (only the direction of `e` matters: it gates). Last axis = the d coordinates; leading axes
    broadcast. `w = 0` gives 0; `e = 0` is rejected (no direction: the gate `1{0 > 0}` is shut and
    the formula does not apply).

    Example:
        >>> jaxdyn.population_gating(jnp.array([1.0, 0.0]), jnp.array([0.0, 2.0]))
        >>> # theta = pi/2: (pi/2 * w + 2 * e) / (2 pi) = [1/pi, 1/2]
    """
    e = jnp.asarray(e, float)
    w = jnp.asarray(w, float)
    if e.shape[-1:] != w.shape[-1:]:
        raise ValueError(
            f"e and w must have the same last dimension d, got {e.shape} and {w.shape}")
    if not _is_tracer(e) and np.any(np.linalg.norm(np.asarray(e), axis=-1) == 0):
        raise ValueError("e must be non-zero: the gate 1{e.x > 0} needs a direction")
    return _gating(e, w)


@jax.jit
def _gating(e, w):
    e_hat, _ = _unit(e)
    w_hat, wn = _unit(w)
    theta, comp = _angle_from_units(e_hat, w_hat)
    return (comp[..., None] * w + (wn * jnp.sin(theta))[..., None] * e_hat) / (2 * jnp.pi)


def relu_correlation(a, b):
    """`E[relu(a.x) relu(b.x)] = |a||b| (sin theta + (pi - theta) cos theta) / (2 pi)`, x ~ N(0, I).

    Its gradient with respect to `a` is `population_gating(a, b)` (Theorem 1).

    Example:
        >>> jaxdyn.relu_correlation(jnp.array([1.0, 0.0]), jnp.array([1.0, 0.0]))   # 1/2
    """
    return _relu_corr(jnp.asarray(a, float), jnp.asarray(b, float))


@jax.jit
def _relu_corr(a, b):
    a_hat, an = _unit(a)
    b_hat, bn = _unit(b)
    theta, comp = _angle_from_units(a_hat, b_hat)
    return an * bn * (jnp.sin(theta) + comp * jnp.cos(theta)) / (2 * jnp.pi)


# --------------------------------------------------------------------------- K ReLUs
def _pair_angles(A_hat, B_hat, angles):
    """theta and pi - theta for all pairs of rows: (..., K, d) x (..., M, d) -> (..., K, M)."""
    c = jnp.einsum("...kd,...md->...km", A_hat, B_hat)
    if angles == "stable":
        # the chord to the nearer of +-b^ by differences (one fused K M d reduction), the other
        # one from |a^ - b^|^2 + |a^ + b^|^2 = 4: both accurate, no cancellation
        sg = jnp.where(c >= 0, 1.0, -1.0)
        near = jnp.sum((A_hat[..., :, None, :] - sg[..., None] * B_hat[..., None, :, :]) ** 2, -1)
        # materialise the reduction (else XLA may fuse it into each consumer and redo it)
        near = jax.lax.optimization_barrier(near)
        far = jnp.maximum(4.0 - near, 0.0)
        dm = sqrt_pos(jnp.where(c >= 0, near, far))
        dp = sqrt_pos(jnp.where(c >= 0, far, near))
    else:
        c = jnp.clip(c, -1.0, 1.0)
        dm, dp = sqrt_pos(2 - 2 * c), sqrt_pos(2 + 2 * c)
    return 2 * jnp.arctan2(dm, dp), 2 * jnp.arctan2(dp, dm)


def resolve_angles(angles, K, M, d):
    """`"auto"` -> `"stable"` when the pair work K (K + M) d is at most 2**20, else `"gram"`."""
    if angles == "auto":
        return "stable" if K * (K + M) * d <= 2**20 else "gram"
    if angles not in _ANGLES:
        raise ValueError(f"angles must be 'auto', 'stable' or 'gram', got {angles!r}")
    return angles


def check_weights(W, W_teacher, v=None, u=None, *, angles="auto", allow_zero=False):
    """Validate shapes (and, on concrete inputs, zero-norm student rows); return arrays."""
    W = jnp.asarray(W, float)
    Wt = jnp.asarray(W_teacher, float)
    if W.ndim < 2:
        raise ValueError(f"W must have shape (..., K, d) (one student unit per row), got {W.shape}")
    if Wt.ndim < 2:
        raise ValueError(f"W_teacher must have shape (..., M, d), got {Wt.shape}")
    if W.shape[-1] != Wt.shape[-1]:
        raise ValueError(
            f"W and W_teacher must have the same input dimension d (last axis), got W {W.shape} "
            f"and W_teacher {Wt.shape}"
        )
    K, M = W.shape[-2], Wt.shape[-2]
    v = jnp.ones(K) if v is None else jnp.asarray(v, float)
    u = jnp.ones(M) if u is None else jnp.asarray(u, float)
    if v.shape[-1:] != (K,):
        raise ValueError(f"v (student second-layer weights) must have shape (..., K) = "
                         f"(..., {K}), got {v.shape}")
    if u.shape[-1:] != (M,):
        raise ValueError(f"u (teacher second-layer weights) must have shape (..., M) = "
                         f"(..., {M}), got {u.shape}")
    if not allow_zero and not _is_tracer(W):
        Wn = np.asarray(W)
        if not np.all(np.isfinite(Wn)):
            raise ValueError("W contains non-finite entries")
        zero = np.linalg.norm(Wn, axis=-1) == 0
        if np.any(zero):
            idx = np.argwhere(zero)[0].tolist()
            raise ValueError(
                f"student weight vector W[{', '.join(map(str, idx))}] has zero norm: the population "
                "gradient is undefined there (F(e, w) depends on the direction e = w/|w|, so it is "
                "discontinuous at w = 0). Perturb the row; under jit/vmap such a unit gets gradient 0 "
                "(a dead unit, relu'(0) = 0), see population_gradient"
            )
    if not _is_tracer(Wt) and not np.all(np.isfinite(np.asarray(Wt))):
        raise ValueError("W_teacher contains non-finite entries")
    angles = resolve_angles(angles, K, M, W.shape[-1])
    return W, Wt, v, u, angles


def _gating_sums(W_hat, Wn, V, Vn, c, angles):
    """sum_k c_k F(w_j, v_k) for every student row j: (..., K, d)."""
    V_hat, _ = _unit(V)
    theta, comp = _pair_angles(W_hat, V_hat, angles)
    mass = jnp.einsum("...jk,...k,...kd->...jd", comp, c, V)
    asym = jnp.einsum("...jk,...k,...k->...j", jnp.sin(theta), c, Vn)
    return (mass + asym[..., None] * W_hat) / (2 * jnp.pi)


def population_gradient(W, W_teacher, *, v=None, u=None, angles="auto"):
    """The population gradient `dL/dW` (K x d) of `L = E[(f - f*)^2]/2` in closed form (paper 003).

    `dL/dw_j = v_j [sum_k v_k F(w_j, w_k) - sum_n u_n F(w_j, w*_n)]` with `F = population_gating`.

    **Arguments:** `W` (..., K, d) student rows, `W_teacher` (..., M, d), keyword-only `v` (K,) and
    `u` (M,) second-layer weights (default ones), `angles`:
    - `"stable"`: each pair's chord to the nearer of `+-b^` by differences (K (K + M) d work),
      the other from `|a^-b^|^2 + |a^+b^|^2 = 4`: angles exact to rounding at every angle, and
      `jax.jacfwd` exact at coinciding units (their chord is exactly 0);
    - `"gram"`: cosines from one matrix product (fast for large K, M, d). The gradient is still
      accurate to rounding (F is insensitive to theta near 0 and pi), but near-coinciding units get
      angles off by ~1e-8 and `jax.jacfwd` of the gradient there is off by ~1e-8;
    - `"auto"` (default): `"stable"` when K (K + M) d <= 2**20, else `"gram"` (static choice).

    **Zero-norm student rows:** the gradient is undefined (F depends on the direction of w_j).
    Concrete inputs raise `ValueError`; under tracing such a unit gets gradient 0 (its gate is
    shut, as JAX's relu'(0) = 0 gives per sample) and contributes nothing to the others.

    Example:
        >>> W = jnp.array([[1.0, 0.2, 0.0], [0.1, 0.8, 0.3]])
        >>> jaxdyn.population_gradient(W, jnp.eye(2, 3))   # equals jax.grad of population_loss
    """
    W, Wt, v, u, angles = check_weights(W, W_teacher, v, u, angles=angles)
    return _gradient(W, Wt, v, u, angles)


@functools.partial(jax.jit, static_argnums=4)
def _gradient(W, Wt, v, u, angles):
    W_hat, Wn = _unit(W)
    _, Wtn = _unit(Wt)
    g = _gating_sums(W_hat, Wn, W, Wn, v, angles) - _gating_sums(W_hat, Wn, Wt, Wtn, u, angles)
    return jnp.where((Wn > 0)[..., None], v[..., :, None] * g, 0.0)


def _gram_relu(A, B, angles):
    A_hat, An = _unit(A)
    B_hat, Bn = _unit(B)
    theta, comp = _pair_angles(A_hat, B_hat, angles)
    h = (jnp.sin(theta) + comp * jnp.cos(theta)) / (2 * jnp.pi)
    return An[..., :, None] * Bn[..., None, :] * h


def population_loss(W, W_teacher, *, v=None, u=None, angles="auto"):
    """Closed-form population loss `L = E[(f - f*)^2] / 2` (paper 003; = jaxdyn's `eps_g` with
    `Q = W W^T`, `R = W W_teacher^T`, `T = W_teacher W_teacher^T`).

    Arguments as for `population_gradient` (zero-norm rows are fine here: L is continuous).

    Example:
        >>> jaxdyn.population_loss(jnp.zeros((1, 2)), jnp.array([[1.0, 0.0]]))   # 1/4
    """
    W, Wt, v, u, angles = check_weights(W, W_teacher, v, u, angles=angles, allow_zero=True)
    return _loss(W, Wt, v, u, angles)


@functools.partial(jax.jit, static_argnums=4)
def _loss(W, Wt, v, u, angles):
    Gss = _gram_relu(W, W, angles)
    Gst = _gram_relu(W, Wt, angles)
    Gtt = _gram_relu(Wt, Wt, angles)
    return 0.5 * (
        jnp.einsum("...i,...ij,...j->...", v, Gss, v)
        - 2 * jnp.einsum("...i,...in,...n->...", v, Gst, u)
        + jnp.einsum("...n,...nm,...m->...", u, Gtt, u)
    )


def flow_jacobian(W, W_teacher, *, v=None, u=None, angles="auto"):
    """Jacobian of the gradient-flow field `-dL/dW` at `W`, flattened to (K d) x (K d) by
    `jax.jacfwd` (row-major: index `j d + a`). It is `-Hessian(L)`: symmetric.

    The field is C^1 but not C^2 where units coincide (or are antiparallel): the non-smooth parts
    of F are O(theta^2), so the Jacobian exists there; with `angles="stable"` the chord length of
    exactly coinciding unit vectors is 0 and its derivative is taken as 0, so jacfwd returns that
    Jacobian exactly (no nan, no dependence on the direction of approach).

    Example:
        >>> J = jaxdyn.flow_jacobian(jnp.array([[1.0, 0.1]]), jnp.array([[1.0, 0.0]]))   # 2 x 2
    """
    W, Wt, v, u, angles = check_weights(W, W_teacher, v, u, angles=angles)
    if W.ndim != 2:
        raise ValueError(f"flow_jacobian takes one W of shape (K, d), got {W.shape}")
    K, d = W.shape

    def field(x):
        return -population_gradient(x.reshape(K, d), Wt, v=v, u=u, angles=angles).reshape(-1)

    return jax.jacfwd(field)(W.reshape(-1))
