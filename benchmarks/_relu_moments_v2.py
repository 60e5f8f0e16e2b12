# BASELINE for benchmarks/bench_compile.py: the exact ReLU I4 moments as they were before issue 10
# (unrolled Python loops over units and pairs, a dict of correlations per class), jaxdyn at ba248e5.
# Not part of the package; kept only to measure the compile-time change in the same run.
"""Exact Gaussian moments `E[z_p z_q prod_k theta(z_k)]` (the ReLU I4 and its relatives).

- `relu_theta_moment(cov, p, q)` = `E[z_p z_q prod_{k<n} theta(z_k)]`, `z ~ N(0, cov)`, `n <= 4`.
- `relu_i4(cov)` = `E[theta(z1) theta(z2) relu(z3) relu(z4)]` = `relu_theta_moment(cov, 2, 3)`.
- `relu_i4_terms(C, idx)`: the vector field's `eta^2` averages `E[theta_i theta_k relu_a relu_b]`
  for static index quadruples into one covariance `C`, each set of distinct units once.

Method (docs/conventions.md, Gaussian averages), for the correlation matrix `R` (ReLU homogeneity: the result scales with
`sd_p sd_q`). The second-order Stein identity `E[x_p x_q F] = R_pq E[F] + sum_{j,l} R_pj R_ql
E[d_j d_l F]` with `F = prod_{k in A} theta_k` (the `delta'` terms resolved by one more conditioning)
gives, exactly,

    E[x_p x_q prod_A theta] = R_pq P_A + sum_{j<l in A} N_jl phi2(0, 0; R_jl) P(A \\ {j,l} > 0 | x_j = x_l = 0)
    N_jl = R_pj R_ql + R_pl R_qj - R_jl (R_pj R_qj + R_pl R_ql),   phi2(0, 0; r) = 1 / (2 pi sqrt(1 - r^2)),

where the conditional probability is 1, 1/2 or `1/4 + asin(partial corr)/(2 pi)` for 0, 1, 2
remaining variables. `P_A` (orthant probability of the indicator set) has the textbook closed
form for `|A| <= 3`; for `|A| = 4` it is Plackett's identity integrated along the path that
scales only the four correlations *between* two pairs (the split that keeps the largest |rho|
inside a pair), from `P2(r_ab) P2(r_cd)`: four integrands, each `1/4 + atan2(s_km, sqrt(s_kk s_mm
- s_km^2)) / (2 pi)` with Schur complements that are polynomials in the path parameter (their
coefficients computed once per moment), the substitution `t r_ij = sin(u asin r_ij)` and a
32-node Gauss-Legendre rule in `u` graded as `u = 1 - (1 - v)^4` towards the singular end.

Layout: every step is elementwise over the batch (the correlations as separate arrays, broadcasts
over the small unit/pair/node axes, static slices instead of gathers), and the inner loop uses
polynomial `atan2` (Cephes) and `sin(x)/x` instead of library calls, so the whole moment is a few
fused loops (GPU-friendly). The merge logic and the Stein terms are written as a structure of
arrays (one array per correlation, Python loops over the <= 4 units), and `relu_i4_terms`
computes the orthant probability once per set of four units (it is symmetric), reorders the
units of each quadruple so that (p, q) is canonical (one batched call per number of distinct
units) and reads the correlations from `C` directly (issue 16: K = M = 10 field 2-3x faster). The pre-issue-16 implementation is kept as the benchmark baseline
`benchmarks/_relu_i4_v1.py`.

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

Accuracy (measured against the 48-node baseline at 256 nodes and the NumPy reference):
<= 1e-13 on 12,000 random 4x4 covariances (including nearly singular ones from 4 x 4 factors),
~1e-15 on well-conditioned ones, ~1e-11 on exactly rank-2 ones (four units in a plane; the
baseline: ~1e-12). Near-singular but not merged covariances lose ~eps / (1 - rho) to
cancellation in the partial correlations (measured: ~1e-8 at 1 - rho ~ 1e-10 for a
student-teacher pair), and more for nearly rank-1 matrices (all four nearly identical: ~1e-6 at
1 - rho ~ 1e-8). The merge tolerances balance this against the merge error (O(1 - rho) for pairs
with a multiplier, O(sqrt(1 - rho)) for pure-indicator pairs).
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn._averages.closed_forms import relu_moment_small
from jaxdyn._averages.numerics import gauss_legendre, sqrt_pos


__all__ = ["relu_theta_moment", "relu_i4", "relu_i4_terms"]

_TWO_PI = 2.0 * np.pi
_N_GL = 32
# Pairs with 1 - |rho| below a tolerance are treated as exactly (anti-)collinear: `_COLLINEAR_TOL`
# for pairs of pure indicators, `_COLLINEAR_TOL_MULT` for pairs that contain p or q (see above).
_COLLINEAR_TOL = 1e-13
_COLLINEAR_TOL_MULT = 1e-10
_TINY = 1e-300
# conditional variances (of unit-variance variables) below this count as exactly zero
_DEG_TOL = 1e-11


def _gl_rule(n: int, power: int = 4):
    """Gauss-Legendre on [0, 1] in v, graded towards 1 by u = 1 - (1 - v)^power (the integrands
    of the orthant probability are singular just beyond u = 1 when the covariance is nearly
    singular; power 4 with 32 nodes: <= 1e-13 on 12,000 random 4x4 covariances, measured)."""
    x, w = gauss_legendre(n)
    v = 0.5 * (x + 1.0)
    w = 0.5 * w
    return 1.0 - (1.0 - v) ** power, w * power * (1.0 - v) ** (power - 1)


_NODES = _gl_rule(_N_GL)


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
    return sqrt_pos(x, tiny)


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


# ------------------------------------------------------------------ elementwise core (new)
def _r(r, i, j):
    """Correlation entry (i, j) from the dict of upper-triangle arrays (1 on the diagonal)."""
    return 1.0 if i == j else r[(i, j) if i < j else (j, i)]


# the three ways of splitting four variables into two pairs: (a, b | c, d)
_PAIRINGS = ((0, 1, 2, 3), (0, 2, 1, 3), (0, 3, 1, 2))


# Cephes atan on [0, 1] (rational approximation after reduction to |x| <= 0.66; ~2e-16 absolute)
_ATAN_P = (-8.750608600031904122785e-1, -1.615753718733365076637e1, -7.500855792314704667340e1,
           -1.228866684490136173410e2, -6.485021904942025371773e1)
_ATAN_Q = (1.0, 2.485846490142306297962e1, 1.650270098316988542046e2, 4.328810604912902668951e2,
           4.853903996359136964868e2, 1.945506571482613964425e2)
# sin(x) / x = sum_k (-1)^k x^2k / (2k + 1)!, to 1e-17 for |x| <= pi / 2
_SINC_C = tuple((-1.0) ** k / float(np.prod(np.arange(1, 2 * k + 2))) for k in range(11))


def _horner(c, x):
    out = c[-1]
    for ck in c[-2::-1]:
        out = out * x + ck
    return out


def _atan2_pos(y, x):
    """atan2(y, x) for x >= 0 from polynomials and one division (no libm call: this is the inner
    loop of the 4-D orthant probability). 0 at y = x = 0, with finite derivatives there."""
    ay = jnp.abs(y)
    swap = ay > x
    num, den = jnp.where(swap, x, ay), jnp.where(swap, ay, x)
    ok = den > 0
    z = jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)
    big = z > 0.66
    v = jnp.where(big, (z - 1.0) / (z + 1.0), z)
    v2 = v * v
    a = v + v * v2 * _horner(_ATAN_P[::-1], v2) / _horner(_ATAN_Q[::-1], v2)
    a = jnp.where(big, 0.25 * np.pi + a, a)
    a = jnp.where(swap, 0.5 * np.pi - a, a)
    return jnp.where(y < 0, -a, a)


def _orthant4(r, nodes):
    """P(x_0..x_3 > 0) for a unit-diagonal correlation `r` (dict of the six entries).

    Plackett's identity along the path that scales only the four entries *between* two pairs
    `{a, b}, {c, d}` (start: two independent pairs, P = P2(r_ab) P2(r_cd)): four integrands
    instead of six. The split puts the largest |r_ij| inside a pair. For a between-pair entry
    `r_ij` with the other two variables k, m, the substitution `t r_ij = sin(u asin r_ij)`
    absorbs phi2 and the integrand is `P(x_k, x_m > 0 | x_i = x_j = 0) = 1/4 + atan2(s_km,
    sqrt(s_kk s_mm - s_km^2)) / (2 pi)`, whose Schur complements are polynomials in t:
    `s_km = t (A1 + A3 t^2)`, `s_kk = K0 + K2 t^2`, `s_mm = M0 + M2 t^2`, with coefficients
    computed once per moment. The rule in u is graded towards u = 1.
    """
    u, w = (jnp.asarray(x) for x in nodes)
    absr = {k: jnp.abs(v) for k, v in r.items()}
    score = [jnp.maximum(absr[(a, b)], absr[(c, d)]) for a, b, c, d in _PAIRINGS]
    use1 = (score[1] > score[0]) & (score[1] >= score[2])
    use2 = (score[2] > score[0]) & (score[2] > score[1])

    def pick(k):
        # entry k in (ab, cd, ac, ad, bc, bd) of the chosen split
        vals = [_r(r, *((a, b), (c, d), (a, c), (a, d), (b, c), (b, d))[k]) for a, b, c, d in _PAIRINGS]
        return jnp.where(use2, vals[2], jnp.where(use1, vals[1], vals[0]))

    rab, rcd, rac, rad, rbc, rbd = (pick(k) for k in range(6))
    P = (0.25 + _asin(rab) / _TWO_PI) * (0.25 + _asin(rcd) / _TWO_PI)
    # between-pair entry (i, j) and the other two (k, m): (r_ij, r_km, r_kj, r_mi) are scaled by
    # t, (r_ki, r_mj) are the within-pair entries
    terms = ((rac, rbd, rab, rbc, rad, rcd),  # (a, c | b, d)
             (rad, rbc, rab, rbd, rac, rcd),  # (a, d | b, c)
             (rbc, rad, rab, rac, rbd, rcd),  # (b, c | a, d)
             (rbd, rac, rab, rad, rbc, rcd))  # (b, d | a, c)
    # the four integrands side by side on a new last axis (one kernel, a small graph)
    a, b, c, e, f, h = (jnp.stack(x, axis=-1) for x in zip(*terms))
    A1 = b - (c * f + e * h) + a * c * h
    A3 = a * (e * f - a * b)
    K0, K2 = 1.0 - c * c, 2.0 * a * c * e - a * a - e * e
    M0, M2 = 1.0 - h * h, 2.0 * a * f * h - a * a - f * f
    alpha = _asin(a)
    inv_s = 1.0 / _horner(_SINC_C, alpha * alpha)
    ex = lambda x: x[..., None]
    x = u * ex(alpha)
    t = u * _horner(_SINC_C, x * x) * ex(inv_s)  # sin(u alpha) / sin(alpha)
    tau = t * t
    num = t * (ex(A1) + ex(A3) * tau)
    # s_kk s_mm - s_km^2 from the factors (each O(1 - t) at a rank-deficient end: no cancellation
    # of O(1) terms, unlike the expanded polynomial)
    den = (ex(K0) + ex(K2) * tau) * (ex(M0) + ex(M2) * tau) - num * num
    g = jnp.sum(w * _atan2_pos(num, _sqrt_pos(den)), axis=-1)
    P = P + jnp.sum(alpha / _TWO_PI * (0.25 + g / _TWO_PI), axis=-1)
    return P


@functools.lru_cache(maxsize=None)
def _pairs(n: int):
    """Static pairs (i, j), i < j, and the remaining indices of each pair."""
    pairs = list(itertools.combinations(range(n), 2))
    return pairs, [tuple(k for k in range(n) if k not in pr) for pr in pairs]


def _add(terms):
    """Sum of a list of arrays / floats (None entries are static zeros)."""
    terms = [t for t in terms if t is not None]
    return functools.reduce(lambda a, b: a + b, terms) if terms else 0.0


def _moments_corr(r, pqs, n, tol, tol_mult, nodes):
    """[E[x_p x_q prod_k theta(x_k)] for (p, q) in pqs] for unit-diagonal correlations `r` (dict
    (i, j) -> array, i < j), n >= 2.

    Structure of arrays: every quantity is one array over the batch (the unit indices are Python
    loops, so the whole moment is one fused elementwise loop; no small minor axes, no gathers).
    The 4-D orthant probability (the expensive part) does not depend on (p, q): it is computed
    once for all the moments of one set of units.
    """
    P4 = _orthant4(r, nodes) if n == 4 else None
    return [_moment_one(r, p, q, n, tol, tol_mult, P4) for p, q in pqs]


def _moment_one(r, p, q, n, tol, tol_mult, P4):
    # Run-time merge of collinear pairs (branch-free): each class of collinear variables keeps one
    # indicator. Its correlations are the class averages of the members' correlations (all equal
    # at an exactly collinear point), i.e. the merged formula is averaged over the choice of the
    # representative to first order: this spreads the derivative of the merged indicator evenly
    # over the members, which makes the gradient at a merged point the limit of the gradients from
    # regular matrices (where that limit is finite). Anti-collinear pairs make the product vanish.
    pairs, O = _pairs(n)
    R = lambda i, j: 1.0 if i == j else r[(i, j) if i < j else (j, i)]
    x0 = r[pairs[0]]
    dt = x0.dtype
    tolv = {pr: (tol_mult if (p in pr or q in pr) else tol) for pr in pairs}
    col = {pr: r[pr] >= 1.0 - tolv[pr] for pr in pairs}
    anti = functools.reduce(jnp.logical_or, [r[pr] <= -1.0 + tolv[pr] for pr in pairs])
    # Wm[k][l]: l belongs to the class represented by k (None: statically false, k > l)
    Wm = [[None] * n for _ in range(n)]
    for l in range(n):
        found = None
        for k in range(l):
            Wm[k][l] = col[(k, l)] if found is None else col[(k, l)] & ~found
            found = col[(k, l)] if found is None else found | col[(k, l)]
        Wm[l][l] = jnp.ones_like(anti) if found is None else ~found
    Wf = [[None if x is None else x.astype(dt) for x in row] for row in Wm]
    act = [Wm[k][k] for k in range(n)]
    cnt = [jnp.maximum(_add(Wf[k]), 1.0) for k in range(n)]
    cw = [[_add([None if Wf[k][l] is None else Wf[k][l] * R(l, m) for l in range(n)]) / cnt[k]
           for m in range(n)] for k in range(n)]

    def RI(k, m):
        return _add([None if Wf[m][l] is None else cw[k][l] * Wf[m][l] for l in range(n)]) / cnt[m]

    ri = {pr: RI(*pr) for pr in pairs}
    both = {pr: act[pr[0]] & act[pr[1]] for pr in pairs}
    # orthant probability of the active indicators: closed form for <= 3 of them ...
    c = _add([a.astype(dt) for a in act])
    P = 2.0**-c
    for pr, o in zip(pairs, O):
        w_pair = 1.0 if n == 2 else jnp.where(functools.reduce(jnp.logical_or, [act[k] for k in o]), 0.5, 1.0)
        P = P + jnp.where(both[pr], _asin(ri[pr]) / _TWO_PI * w_pair, 0.0)
    if n == 4:
        # ... and by quadrature for four (then no merge happened and RI = R)
        P = jnp.where(c > 3.5, P4, P)
    val = R(p, q) * P
    # Stein terms, one per active pair; cw[j][p] = Cov(x_p, class j)
    for pr, o in zip(pairs, O):
        i, j = pr
        rr = ri[pr]
        N = cw[i][p] * cw[j][q] + cw[j][p] * cw[i][q] - rr * (cw[i][p] * cw[i][q] + cw[j][p] * cw[j][q])
        d = 1.0 - rr * rr
        ok = both[pr] & (d > 1e-300)
        if n == 2:
            cp = 1.0
        elif n == 3:
            cp = jnp.where(act[o[0]], 0.5, 1.0)
        else:
            k, m = o
            rho = _pcorr(rr, RI(k, m), RI(k, i), RI(k, j), RI(m, i), RI(m, j), limit=True)
            ak, am = act[k], act[m]
            cp = jnp.where(ak & am, 0.25 + _asin(rho) / _TWO_PI, jnp.where(ak | am, 0.5, 1.0))
        val = val + _ratio(N, _TWO_PI * _sqrt_pos(d), ok) * cp
    return jnp.where(anti, 0.0, val)


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
    var = jnp.diagonal(cov, axis1=-2, axis2=-1)
    pos = jnp.all(var > 0, axis=-1)
    sd = _sqrt_pos(jnp.where(pos[..., None], var, 1.0))
    cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
    if n == 1:
        m = jnp.full(pos.shape, 0.5, cov.dtype)
    else:
        r = {(i, j): cov[..., i, j] / (sd[..., i] * sd[..., j]) for i, j in _pairs(n)[0]}
        (m,) = _moments_corr(r, [(p, q)], n, float(tol), float(tol_mult), _NODES)
    val = sd[..., p] * sd[..., q] * m
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


@functools.lru_cache(maxsize=None)
def _term_plan(idx_bytes: bytes, shape: tuple):
    """Static plan for `relu_i4_terms`.

    Every quadruple (i, k, a, b) is a moment `E[z_p z_q theta over its distinct units]`; its
    distinct units are ordered so that (p, q) takes one canonical value per number of units
    (`(0, 0)` for 1; `(0, 1)` or `(1, 1)` for 2; `(1, 2)` or `(2, 2)` for 3; `(2, 3)` for 4), so
    each class is one batched call. For four distinct units the orthant probability is computed
    once per *set* (sorted units; it is invariant under permutations) and gathered. Returns
    (classes, sets, set_of, perm): classes = [(n, p, q, units (n_terms, n))], sets = the sorted
    4-sets, set_of = the set of every 4-unit term, perm = term order from the concatenated classes.
    """
    idx = np.frombuffer(idx_bytes, dtype=np.int64).reshape(shape)
    classes: dict[tuple, list] = {}
    for t, (i, k, a, b) in enumerate(idx.tolist()):
        distinct = list(dict.fromkeys((i, k, a, b)))
        rest = [x for x in distinct if x not in (a, b)]
        n = len(distinct)
        if a != b:
            units, key = rest + [a, b], (n, n - 2, n - 1)
        else:
            units, key = rest + [a], (n, n - 1, n - 1)
        classes.setdefault(key, []).append((t, units))
    keys = sorted(classes)
    out, order = [], []
    for key in keys:
        out.append(key + (np.array([u for _, u in classes[key]], dtype=np.int64),))
        order += [t for t, _ in classes[key]]
    perm = np.empty(len(idx), dtype=np.int64)
    perm[np.array(order, dtype=np.int64)] = np.arange(len(order))
    four = [u for n, _, _, u in out if n == 4]
    if four:
        srt = np.sort(four[0], axis=1)
        sets, set_of = np.unique(srt, axis=0, return_inverse=True)
    else:
        sets, set_of = np.zeros((0, 4), np.int64), np.zeros(0, np.int64)
    return out, sets, np.asarray(set_of).ravel(), perm


_BLOCK = 512


def _orthant_blocked(r):
    """`_orthant4` over the last axis in blocks of `_BLOCK` sets (`lax.map`): the (sets, 4, nodes)
    intermediates of one block stay in cache (measured on the 2-core CPU: one unblocked call over
    2000+ sets ran ~8x slower per set than over 1300)."""
    n = next(iter(r.values())).shape[-1]
    if n <= _BLOCK:
        return _orthant4(r, _NODES)
    nb = -(-n // _BLOCK)
    pad = nb * _BLOCK - n
    keys = list(r)
    # pad with independent variables (a regular point), blocks on a new leading axis
    blk = [jnp.moveaxis(jnp.pad(r[k], [(0, 0)] * (r[k].ndim - 1) + [(0, pad)]).reshape(
        r[k].shape[:-1] + (nb, _BLOCK)), -2, 0) for k in keys]
    out = jax.lax.map(lambda xs: _orthant4(dict(zip(keys, xs)), _NODES), blk)
    return jnp.moveaxis(out, 0, -2).reshape(out.shape[1:-1] + (nb * _BLOCK,))[..., :n]


def relu_i4_terms(C, idx, *, tol: float = _COLLINEAR_TOL, tol_mult: float = _COLLINEAR_TOL_MULT):
    """`E[theta(z_i) theta(z_k) relu(z_a) relu(z_b)]` for every row `(i, k, a, b)` of the static
    index array `idx` (n_terms, 4), `z ~ N(0, C)` with `C` of shape (..., L, L).

    The vector field's `eta^2` averages. Coinciding units are reduced exactly (moments of the
    distinct units only, in a few batched classes); the 4-D orthant probability is computed once
    per set of four distinct units and shared by the quadruples of that set; the correlations are
    read straight from `C` (one array per pair: structure of arrays). Values and derivatives equal
    those of `relu_theta_moment` on the gathered sub-covariances.
    """
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    classes, sets, set_of, perm = _term_plan(idx.tobytes(), idx.shape)
    tol, tol_mult = float(tol), float(tol_mult)
    var = jnp.diagonal(C, axis1=-2, axis2=-1)
    pos = var > 0
    sd = _sqrt_pos(jnp.where(pos, var, 1.0))

    def corr(units):
        # symmetrised like relu_theta_moment, so derivatives in C_ab and C_ba are equal
        n = units.shape[1]
        return {(x, y): 0.5 * (C[..., units[:, x], units[:, y]] + C[..., units[:, y], units[:, x]])
                / (sd[..., units[:, x]] * sd[..., units[:, y]]) for x, y in _pairs(n)[0]}

    vals = []
    for n, p, q, units in classes:
        if n <= 2:
            sub = C[..., units[:, :, None], units[:, None, :]]
            vals.append(relu_moment_small(0.5 * (sub + jnp.swapaxes(sub, -1, -2)), p, q))
            continue
        P4 = _orthant_blocked(corr(sets))[..., set_of] if n == 4 else None
        m = _moment_one(corr(units), p, q, n, tol, tol_mult, P4)
        ok = functools.reduce(jnp.logical_and, [pos[..., units[:, x]] for x in range(n)])
        vals.append(jnp.where(ok, sd[..., units[:, p]] * sd[..., units[:, q]] * m, 0.0))
    return jnp.concatenate(vals, axis=-1)[..., perm]
