"""BASELINE for benchmarks/bench_relu_large_k.py: the exact ReLU I4 as it was before issue 16 (kept
verbatim, 48 Gauss-Legendre nodes over six Plackett integrands, batched 4x4 matrices and gathers).

Exact Gaussian moments `E[z_p z_q prod_k theta(z_k)]` (the ReLU I4 and its relatives).

- `relu_theta_moment(cov, p, q)` = `E[z_p z_q prod_{k<n} theta(z_k)]`, `z ~ N(0, cov)`, `n <= 4`.
- `relu_i4(cov)` = `E[theta(z1) theta(z2) relu(z3) relu(z4)]` = `relu_theta_moment(cov, 2, 3)`.

Method (docs/conventions.md, Gaussian averages), for the correlation matrix `R` (ReLU homogeneity: the result scales with
`sd_p sd_q`). The second-order Stein identity `E[x_p x_q F] = R_pq E[F] + sum_{j,l} R_pj R_ql
E[d_j d_l F]` with `F = prod_{k in A} theta_k` (the `delta'` terms resolved by one more conditioning)
gives, exactly,

    E[x_p x_q prod_A theta] = R_pq P_A + sum_{j<l in A} N_jl phi2(0, 0; R_jl) P(A \\ {j,l} > 0 | x_j = x_l = 0)
    N_jl = R_pj R_ql + R_pl R_qj - R_jl (R_pj R_qj + R_pl R_ql),   phi2(0, 0; r) = 1 / (2 pi sqrt(1 - r^2)),

where the conditional probability is 1, 1/2 or `1/4 + asin(partial corr)/(2 pi)` for 0, 1, 2
remaining variables. `P_A` (orthant probability of the indicator set) is `2^-|A| + sum_{i<j}
asin(R_ij)/(2 pi) * avg_u P(A \\ {i,j} > 0 | x_i = x_j = 0; R(t_ij(u)))` (Plackett's identity
along `R(t) = (1 - t) I + t R`, substitution `t R_ij = sin(u asin R_ij)`); for `|A| <= 3` the
average is a constant and this is the textbook closed form, for `|A| = 4` it is a Gauss-Legendre
rule in `u` (graded towards `u = 1`).

Singular covariances: collinear variables (`rho_kl >= 1 - tol`, e.g. a student unit equal to a
teacher unit) are *merged* at run time, branch-free (masks): a class of collinear variables keeps
one indicator in `A`, whose correlations are the class averages of its members' correlations
(all equal at the singular point), while every `z_l` keeps its role as a multiplier.
Anti-collinear pairs (`rho_kl <= -1 + tol`) make the indicator product vanish (result 0). Every
division, square root and asin is guarded (double `where`), so values and `jax.grad` /
`jax.jacfwd` are finite everywhere. At a merged point the value is exact (the lower-dimensional
problem) and the derivative is exact along directions that keep the variables collinear; the
class averaging makes it also the limit of the gradients from regular matrices (= the one-sided
derivative along `C + t E`) wherever that limit is finite, i.e. unless the pair consists of two
pure indicators (neither is p or q), where the opening derivative is genuinely infinite.

Accuracy: ~1e-15 on generic covariances (Gauss-Legendre, 48 nodes). Near-singular but not merged
covariances lose ~eps / (1 - rho) to cancellation in the partial correlations (measured: ~1e-8 at
1 - rho ~ 1e-10 for a student-teacher pair), and more for nearly rank-1 matrices (all four
nearly identical: ~1e-6 at 1 - rho ~ 1e-8). The merge tolerances balance this against the merge
error (O(1 - rho) for pairs with a multiplier, O(sqrt(1 - rho)) for pure-indicator pairs).
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np


__all__ = ["relu_theta_moment", "relu_i4"]

_TWO_PI = 2.0 * np.pi
_N_GL = 48
# Pairs with 1 - |rho| below a tolerance are treated as exactly (anti-)collinear: `_COLLINEAR_TOL`
# for pairs of pure indicators, `_COLLINEAR_TOL_MULT` for pairs that contain p or q (see above).
_COLLINEAR_TOL = 1e-13
_COLLINEAR_TOL_MULT = 1e-10
_TINY = 1e-300
# conditional variances (of unit-variance variables) below this count as exactly zero
_DEG_TOL = 1e-11


def _gl_rule(n: int):
    """Gauss-Legendre on [0, 1] in v, graded towards 1 by u = 1 - (1 - v)^2."""
    x, w = np.polynomial.legendre.leggauss(n)
    v = 0.5 * (x + 1.0)
    w = 0.5 * w
    return 1.0 - (1.0 - v) ** 2, w * 2.0 * (1.0 - v)


_U, _W = _gl_rule(_N_GL)


# ------------------------------------------------------------------------------- safe helpers
@jax.custom_jvp
def _asin(x):
    return jnp.arcsin(jnp.clip(x, -1.0, 1.0))


@_asin.defjvp
def _asin_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    # finite everywhere (1e15 at |x| = 1); at |x| = 1 it is only used under a zero mask
    return _asin(x), dx / jnp.sqrt(jnp.maximum(1.0 - x * x, 1e-30))


def _sqrt_pos(x, tiny=_TINY):
    """sqrt(max(x, 0)) with finite derivative everywhere (0 below `tiny`)."""
    ok = x > tiny
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, x, 1.0)), 0.0)


def _ratio(num, den, ok):
    """num / den where ok, else 0 (no NaN/inf in values or derivatives of the unselected branch)."""
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def _pcorr(r_ij, r_km, r_ki, r_kj, r_mi, r_mj, limit=False):
    """Partial correlation of x_k, x_m given x_i = x_j = 0 from the six correlations (arrays).

    With `limit`, conditional variances below `_DEG_TOL` count as exactly zero and the value is the
    limit along `(1 - e) R + e I`, e -> 0+: 0 if one residual is degenerate, and the ratio of the
    first-order (in e) Schur complements if both are (e.g. four variables in a plane): these limits
    make the terms of the reduction consistent, so their sum is the (continuous) moment.
    """
    d = 1.0 - r_ij * r_ij
    X, Y = r_ki * r_mi + r_kj * r_mj, r_ki * r_mj + r_kj * r_mi
    s_km = d * r_km - (X - r_ij * Y)
    s_kk = d - (r_ki * r_ki + r_kj * r_kj - 2.0 * r_ij * r_ki * r_kj)
    s_mm = d - (r_mi * r_mi + r_mj * r_mj - 2.0 * r_ij * r_mi * r_mj)
    den = s_kk * s_mm
    rho = _ratio(s_km, _sqrt_pos(den), den > 1e-280)
    if limit:
        # -(d/dt) of the Schur complements of t R (unit diagonal) at t = 1
        e_km = -(r_km * (1.0 - 3.0 * r_ij * r_ij) - 2.0 * X + 3.0 * r_ij * Y)
        e_kk = 2.0 * r_ij * r_ij + 2.0 * (r_ki * r_ki + r_kj * r_kj) - 6.0 * r_ij * r_ki * r_kj
        e_mm = 2.0 * r_ij * r_ij + 2.0 * (r_mi * r_mi + r_mj * r_mj) - 6.0 * r_ij * r_mi * r_mj
        deg_k, deg_m = s_kk <= _DEG_TOL * d, s_mm <= _DEG_TOL * d
        e_den = e_kk * e_mm
        rho_both = _ratio(e_km, _sqrt_pos(e_den), e_den > 1e-280)
        rho = jnp.where(deg_k & deg_m, rho_both, jnp.where(deg_k | deg_m, 0.0, rho))
    return jnp.clip(rho, -1.0, 1.0)


@functools.lru_cache(maxsize=None)
def _pairs(n: int):
    """Static index arrays: pairs (I, J) with i < j and the remaining indices O (npairs, n - 2)."""
    pairs = list(itertools.combinations(range(n), 2))
    I = np.array([i for i, _ in pairs], dtype=np.int64)
    J = np.array([j for _, j in pairs], dtype=np.int64)
    O = np.array([[k for k in range(n) if k not in pr] for pr in pairs], dtype=np.int64)
    return I, J, O.reshape(len(pairs), max(n - 2, 0))


def _cond_prob(RI, act, n, t=None):
    """For every pair (i, j): P(active variables other than i, j > 0 | x_i = x_j = 0), under
    the correlations `t * RI` (t: (..., P, N) or None for t = 1). Shape (..., P[, N])."""
    I, J, O = _pairs(n)
    if n == 2:
        return jnp.ones(RI.shape[:-2] + (1,), RI.dtype)
    if n == 3:
        return jnp.where(act[..., O[:, 0]], 0.5, 1.0)
    K, M = O[:, 0], O[:, 1]
    g = lambda a, b: RI[..., a, b] if t is None else RI[..., a, b][..., None] * t
    rho = _pcorr(g(I, J), g(K, M), g(K, I), g(K, J), g(M, I), g(M, J), limit=t is None)
    aK, aM = act[..., K], act[..., M]
    if t is not None:
        aK, aM = aK[..., None], aM[..., None]
    return jnp.where(aK & aM, 0.25 + _asin(rho) / _TWO_PI, jnp.where(aK | aM, 0.5, 1.0))


def _orthant(RI, act, n):
    """P(x_k > 0 for active k), by Plackett's identity (the closed form for <= 3 active)."""
    I, J, O = _pairs(n)
    c = jnp.sum(act.astype(RI.dtype), axis=-1)
    P = 2.0**-c
    if n == 1:
        return P
    alpha = _asin(RI[..., I, J])  # (..., P)
    if n == 4:
        # t(u) = sin(u alpha) / sin(alpha), written with sinc (safe at alpha = 0)
        u, w = jnp.asarray(_U), jnp.asarray(_W)
        a_ = alpha[..., None]
        t = u * jnp.sinc(u * a_ / np.pi) / jnp.sinc(a_ / np.pi)  # (..., P, N)
        avg = jnp.sum(w * _cond_prob(RI, act, n, t), axis=-1)
    else:
        avg = _cond_prob(RI, act, n)
    both = act[..., I] & act[..., J]
    return P + jnp.sum(jnp.where(both, alpha / _TWO_PI * avg, 0.0), axis=-1)


def _moment_corr(R, p, q, n, tol, tol_mult):
    """E[x_p x_q prod_k theta(x_k)] for a correlation matrix R (..., n, n)."""
    # Run-time merge of collinear pairs (branch-free): each class of collinear variables keeps one
    # indicator. Its correlations are the class averages of the members' correlations (all equal
    # at an exactly collinear point), i.e. the merged formula is averaged over the choice of the
    # representative to first order: this spreads the derivative of the merged indicator evenly
    # over the members, which makes the gradient at a merged point the limit of the gradients from
    # regular matrices (where that limit is finite). Anti-collinear pairs make the product vanish.
    I, J, O = _pairs(n)
    batch = R.shape[:-2]
    dt = R.dtype
    tolv = np.array([tol_mult if (i in (p, q) or j in (p, q)) else tol for i, j in zip(I, J)])
    rp = R[..., I, J]
    col = rp >= 1.0 - tolv
    anti = jnp.any(rp <= -1.0 + tolv, axis=-1) if n > 1 else jnp.zeros(batch, bool)
    index = {pr: a for a, pr in enumerate(zip(I.tolist(), J.tolist()))}
    false = jnp.zeros(batch, bool)
    Wm = [[false] * n for _ in range(n)]  # Wm[k][l]: l belongs to the class represented by k
    for l in range(n):
        found = false
        for k in range(l):
            c = col[..., index[(k, l)]]
            Wm[k][l] = c & ~found
            found = found | c
        Wm[l][l] = ~found
    W = jnp.stack([jnp.stack(row, axis=-1) for row in Wm], axis=-2).astype(dt)  # (..., n, n)
    act = jnp.diagonal(W, axis1=-2, axis2=-1) > 0
    cnt = jnp.maximum(jnp.sum(W, axis=-1), 1.0)
    cw = (W @ R) / cnt[..., :, None]  # row k: class-k average of the rows of R
    RI = (cw @ jnp.swapaxes(W, -1, -2)) / cnt[..., None, :]
    RI = jnp.where(np.eye(n, dtype=bool), 1.0, RI)
    val = R[..., p, q] * _orthant(RI, act, n)
    if n == 1:
        return val
    Xp, Xq = cw[..., :, p], cw[..., :, q]  # Cov(x_p, class j), Cov(x_q, class j)
    r = RI[..., I, J]
    N = Xp[..., I] * Xq[..., J] + Xp[..., J] * Xq[..., I] - r * (
        Xp[..., I] * Xq[..., I] + Xp[..., J] * Xq[..., J]
    )
    d = 1.0 - r * r
    ok = act[..., I] & act[..., J] & (d > 1e-300)
    T = _ratio(N, _TWO_PI * _sqrt_pos(d), ok) * _cond_prob(RI, act, n)
    return jnp.where(anti, 0.0, val + jnp.sum(T, axis=-1))


def relu_theta_moment(
    cov, p: int, q: int, *, tol: float = _COLLINEAR_TOL, tol_mult: float = _COLLINEAR_TOL_MULT
):
    """`E[z_p z_q prod_{k<n} theta(z_k)]` for `z ~ N(0, cov)`, `cov` of shape `(..., n, n)`.

    `n` in 1..4 (static), `0 <= p, q < n` static (`p == q` means `z_p^2`), `theta(x) = 1{x > 0}`.
    Exact (Stein reduction + Plackett's identity for the 4-D orthant probability, ~1e-13), batched
    over leading axes, jit/vmap/grad compatible. Singular covariances (identical, collinear or
    anti-collinear variables: `1 - |rho| < tol`, or `< tol_mult` for a pair that contains p or q)
    are reduced exactly; values and derivatives stay finite there. The input is symmetrised; a zero
    variance gives 0.

    Example:
        >>> relu_theta_moment(jnp.eye(2), 0, 1)   # E[relu(x) relu(y)] = 1/(2 pi)
    """
    cov = jnp.asarray(cov)
    if not jnp.issubdtype(cov.dtype, jnp.floating):
        cov = cov.astype(float)
    if cov.ndim < 2 or cov.shape[-1] != cov.shape[-2]:
        raise ValueError(f"cov must have shape (..., n, n), got {cov.shape}")
    n = cov.shape[-1]
    if not 1 <= n <= 4:
        raise ValueError(f"n must be 1..4, got {n}")
    p, q = int(p), int(q)
    if not (0 <= p < n and 0 <= q < n):
        raise ValueError(f"p, q must lie in [0, {n}), got {p}, {q}")
    cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
    var = jnp.diagonal(cov, axis1=-2, axis2=-1)
    pos = jnp.all(var > 0, axis=-1)
    sd = _sqrt_pos(jnp.where(pos[..., None], var, 1.0))
    R = cov / (sd[..., :, None] * sd[..., None, :])
    R = jnp.where(np.eye(n, dtype=bool), 1.0, R)
    val = sd[..., p] * sd[..., q] * _moment_corr(R, p, q, n, float(tol), float(tol_mult))
    return jnp.where(pos, val, 0.0)


def relu_i4(cov, *, tol: float = _COLLINEAR_TOL, tol_mult: float = _COLLINEAR_TOL_MULT):
    """ReLU I4 `E[theta(z1) theta(z2) relu(z3) relu(z4)]` for `cov` of shape `(..., 4, 4)`.

    Equal to `relu_theta_moment(cov, 2, 3)` (exact, finite and differentiable at singular
    covariances such as a student unit equal to a teacher unit).

    Example:
        >>> relu_i4(jnp.eye(4))   # = (1/2)(1/2)(1/sqrt(2 pi))^2
    """
    cov = jnp.asarray(cov)
    if cov.ndim < 2 or cov.shape[-2:] != (4, 4):
        raise ValueError(f"cov must have shape (..., 4, 4), got {cov.shape}")
    return relu_theta_moment(cov, 2, 3, tol=tol, tol_mult=tol_mult)
