"""Hermite coefficients of activations and the Kibble-Slepian (multivariate Mehler) series for I4.

Conventions. `He_n` are the probabilists' Hermite polynomials, orthogonal under the standard
normal law, `<f, g> = E[f(u) g(u)]`, `u ~ N(0, 1)`, `<He_n, He_m> = n! delta_nm`. For a covariance
with unit diagonal and off-diagonal correlations `rho_ij` (paper 001 eq. 1),

    I4 = sum_{n_ij >= 0} prod_{i<j} rho_ij^{n_ij} / n_ij!
         <He_n1, g1'> <He_n2, g2'> <He_n3, g3> <He_n4, g4>,

with `n_i = sum_{j != i} n_ij`. Truncated at order N by paper 001's rule: `n1, n2 <= N - 1` and
`n3, n4 <= N` (every term expands g and g' to the same polynomial order). General variances:
`z_i = s_i u_i` with `u` unit-variance, so position i carries the function `u -> g_i(s_i u)`:
for positively homogeneous activations (ReLU, linear, leaky ReLU, |x|) this is `s_i g_i(u)` and
`g_i'(u)`, so the series is evaluated on the correlation matrix and multiplied by `s_3 s_4`; for the
others the coefficients depend on `s_i` and are computed per covariance (closed form for erf,
Gauss-Hermite-type quadrature otherwise), inside the jitted function.

Where the series converges: see `hermite_in_region` and `docs/hermite_convergence.md`.
"""

from __future__ import annotations

import functools as ft
import itertools as it
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from .._activations import AbstractActivation, AbstractPiecewiseLinear, Erf, as_activation
from .._checks import check_order
from .numerics import gauss_legendre


# --------------------------------------------------------------------------- quadrature rule
# Composite Gauss-Legendre on [-L, 0] and [0, L] with the normal density folded into the weights.
# Splitting at 0 integrates activations with a kink (or, for g', a jump) at 0 to machine precision,
# where plain Gauss-Hermite converges only algebraically; for smooth activations it matches
# Gauss-Hermite. L = 12 leaves a tail below 1e-30 (times polynomial growth) of the normal law.
_HALF_NODES = 96
_RANGE = 12.0


@ft.lru_cache(maxsize=None)
def split_rule(n_half: int = _HALF_NODES, half_range: float = _RANGE):
    """Nodes and weights (numpy, 2 n_half each) with `sum w f(x) ~ E[f(u)]`, `u ~ N(0, 1)`."""
    x, w = gauss_legendre(n_half)
    xp = 0.5 * half_range * (x + 1.0)
    wp = 0.5 * half_range * w
    nodes = np.concatenate([-xp[::-1], xp])
    weights = np.concatenate([wp[::-1], wp]) * np.exp(-0.5 * nodes**2) / np.sqrt(2 * np.pi)
    return nodes, weights


def hermite_table(x, nmax: int):
    """`He_n(x)` for n = 0..nmax, stacked on a new last axis (three-term recurrence)."""
    x = jnp.asarray(x)
    out = [jnp.ones_like(x), x]
    for n in range(1, nmax):
        out.append(x * out[n] - n * out[n - 1])
    return jnp.stack(out[: nmax + 1], axis=-1)


def _np_hermite_table(x, nmax: int):
    out = [np.ones_like(x), x]
    for n in range(1, nmax):
        out.append(x * out[n] - n * out[n - 1])
    return np.stack(out[: nmax + 1], axis=-1)


# ------------------------------------------------------------------------------ coefficients
def relu_decomposition(g: AbstractActivation) -> tuple[float, float] | None:
    """`(b, c)` with `g(x) = b relu(x) + c relu(-x)` for piecewise-linear activations, else None.

    Covers ReLU (1, 0), Linear (1, -1), LeakyReLU(a) (1, -a) and Abs (1, 1): exactly the
    activations that are linear combinations of `x`, `relu(x)`, `relu(-x)`.
    """
    if isinstance(g, AbstractPiecewiseLinear):
        return (float(g.slope_pos), 0.0 - float(g.slope_neg))
    return None


@ft.lru_cache(maxsize=None)
def _relu_coeffs(nmax: int) -> np.ndarray:
    # <He_0, relu> = 1/sqrt(2 pi), <He_1, relu> = 1/2, <He_n, relu> = (-1)^n He_{n-2}(0)/sqrt(2 pi)
    # (paper 001, docs/conventions.md, Gaussian averages), He_{2k}(0) = (-1)^k (2k-1)!!.
    he0 = np.zeros(max(nmax + 1, 2))
    he0[0] = 1.0
    for n in range(2, len(he0)):
        he0[n] = -(n - 1) * he0[n - 2]
    out = np.zeros(nmax + 1)
    out[0] = 1.0 / np.sqrt(2 * np.pi)
    if nmax >= 1:
        out[1] = 0.5
    for n in range(2, nmax + 1):
        out[n] = (-1) ** n * he0[n - 2] / np.sqrt(2 * np.pi)
    return out


def _unit_relu_type_coeffs(dec, nmax: int, derivative: bool) -> np.ndarray:
    """NumPy `<He_n, g>` (or `<He_n, g'>`), n <= nmax, for g = b relu(x) + c relu(-x) (static)."""
    b, c = dec
    full = (b + c * (-1.0) ** np.arange(nmax + 2)) * _relu_coeffs(nmax + 1)
    return full[1:] if derivative else full[: nmax + 1]


def _double_factorial_odd(k: int) -> float:
    """(2k - 1)!! with (-1)!! = 1."""
    return float(np.prod(np.arange(1, 2 * k, 2))) if k > 0 else 1.0


def _erf_coeffs(nmax: int, s, derivative: bool):
    # g(x) = erf(x/sqrt 2), h(u) = g(s u), h'(u) = s sqrt(2/pi) exp(-s^2 u^2 / 2) and
    # E[He_2k(u) exp(-a u^2/2)] = (-1)^k (2k-1)!! a^k / (1 + a)^(k + 1/2), odd moments vanish.
    # derivative=True: coefficients of u -> g'(s u); else of u -> g(s u)
    # (<He_{n+1}, h> = <He_n, h'>).
    s = jnp.asarray(s)
    a = s * s
    m_max = nmax if derivative else nmax - 1
    cols = []
    for m in range(m_max + 1):
        if m % 2:
            cols.append(jnp.zeros_like(a))
        else:
            k = m // 2
            cols.append(
                np.sqrt(2 / np.pi) * (-1) ** k * _double_factorial_odd(k)
                * a**k / (1 + a) ** (k + 0.5)
            )
    dcoef = jnp.stack(cols, axis=-1)  # <He_m, g'(s .)>
    if derivative:
        return dcoef
    return jnp.concatenate([jnp.zeros_like(a)[..., None], s[..., None] * dcoef], axis=-1)


def _quad_coeffs(g: AbstractActivation, nmax: int, s, n_half: int):
    x, w = split_rule(n_half)
    he = _np_hermite_table(x, nmax) * w[:, None]  # (Q, nmax+1)
    s = jnp.asarray(s)
    vals = g(s[..., None] * x)  # (..., Q)
    return jnp.einsum("...q,qn->...n", vals, he)


def hermite_coefficients(g, order: int, scale=1.0, *, derivative: bool = False,
                         n_half: int = _HALF_NODES):
    """Hermite coefficients `<He_n, h>`, n = 0..order, of `h(u) = g(scale u)` (or `g'(scale u)`).

    **Arguments:**

    - `g`: an activation (`jaxdyn.ReLU()`, `jaxdyn.Tanh()`, `jaxdyn.Activation(fn)`, ...).
    - `order`: the highest index n.
    - `scale`: the standard deviation `s` of the pre-activation (array; leading axes batch).
    - `derivative`: coefficients of `u -> g'(s u)` instead of `u -> g(s u)`.
    - `n_half`: quadrature nodes per half-line (see `hermite_quadrature_error`).

    Closed forms for ReLU-type activations (`b relu(x) + c relu(-x)`, docs/conventions.md, Gaussian averages) and erf;
    otherwise composite Gauss-Legendre quadrature against the normal law on `[-12, 0] U [0, 12]`
    (exact for kinks at 0). Derivative coefficients use `<He_n, h'> = <He_{n+1}, h>`, so only `g`
    itself is integrated (`g'` of a kinked activation is discontinuous).

    **Returns:** an array of shape `scale.shape + (order + 1,)`.

    Example:
        >>> jaxdyn.hermite_coefficients(jaxdyn.ReLU(), 4)
        # [1/sqrt(2pi), 1/2, 1/sqrt(2pi), 0, -1/sqrt(2pi)]
    """
    g = as_activation(g)
    s = jnp.asarray(scale, dtype=jnp.result_type(float))
    dec = relu_decomposition(g)
    if dec is not None:
        if derivative:
            full = _unit_relu_type_coeffs(dec, order, True)
            return jnp.broadcast_to(full, s.shape + (order + 1,)).astype(s.dtype)
        return s[..., None] * _unit_relu_type_coeffs(dec, order, False)
    if type(g) is Erf:
        return _erf_coeffs(order, s, derivative)
    if derivative:
        c = _quad_coeffs(g, order + 1, s, n_half)
        return c[..., 1:] / s[..., None]
    return _quad_coeffs(g, order, s, n_half)


def hermite_quadrature_error(g, order: int, scale=1.0, *, derivative: bool = False,
                             n_half: int = _HALF_NODES):
    """Estimated error of `hermite_coefficients(g, order, scale)` in units of `sqrt(n!)`.

    The estimate is `|c(n_half) - c(n_half // 2)| / sqrt(n!)`, per n: the difference to a rule
    with half the nodes, which overestimates the error of the finer rule whenever the quadrature
    converges (geometrically, for activations smooth away from 0). `sqrt(n!)` is the natural
    size of the n-th coefficient (`sum_n c_n^2 / n! = E[g^2]`). Zero for closed forms.

    Example:
        >>> float(jaxdyn.hermite_quadrature_error(jaxdyn.Tanh(), 14).max())   # ~1e-16
    """
    fine = hermite_coefficients(g, order, scale, derivative=derivative, n_half=n_half)
    coarse = hermite_coefficients(g, order, scale, derivative=derivative, n_half=n_half // 2)
    norm = np.sqrt([math.factorial(n) for n in range(order + 1)])
    return jnp.abs(fine - coarse) / norm


# ------------------------------------------------------------------------------- index sets
_PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


@ft.lru_cache(maxsize=None)
def hermite_index_set(order: int):
    """The admissible exponents `(n12, n13, n14, n23, n24, n34)` of paper 001's truncation.

    Returns a dict of numpy arrays (cached per order): `E` (T, 6) exponents, `n` (T, 4) the
    Hermite indices `n_i`, `inv_fact` (T,) `1 / prod n_ij!`, and the split of each term into its
    (n12, n13, n14) part `a` and its (n23, n24, n34) part `c`, with the unique parts `EA`, `EC`
    (the series is the bilinear form `sum_ac MA[a] W[a, c] MC[c]` over monomials).
    """
    N = int(order)
    if N < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    L = N + 1
    rows = [
        t for t in it.product(range(L), repeat=6)
        if t[0] + t[1] + t[2] <= N - 1 and t[0] + t[3] + t[4] <= N - 1
        and t[1] + t[3] + t[5] <= N and t[2] + t[4] + t[5] <= N
    ]
    E = np.array(rows, dtype=np.int64)
    n = np.stack([E[:, 0] + E[:, 1] + E[:, 2], E[:, 0] + E[:, 3] + E[:, 4],
                  E[:, 1] + E[:, 3] + E[:, 5], E[:, 2] + E[:, 4] + E[:, 5]], axis=1)
    fact = np.array([math.factorial(k) for k in range(L)], dtype=float)
    inv_fact = 1.0 / np.prod(fact[E], axis=1)
    EA, a = np.unique(E[:, :3], axis=0, return_inverse=True)
    EC, c = np.unique(E[:, 3:], axis=0, return_inverse=True)
    for arr in (E, n, inv_fact, EA, EC, a, c):
        arr.setflags(write=False)
    return dict(E=E, n=n, inv_fact=inv_fact, EA=EA, EC=EC, a=a.ravel(), c=c.ravel())


@ft.lru_cache(maxsize=None)
def _bilinear_weight(order: int, coeffs: tuple) -> np.ndarray:
    """`W[a, c] = sum of inv_fact * c1[n1] c2[n2] c3[n3] c4[n4]` over terms with parts (a, c)."""
    ix = hermite_index_set(order)
    c1, c2, c3, c4 = (np.asarray(x) for x in coeffs)
    n = ix["n"]
    w = ix["inv_fact"] * c1[n[:, 0]] * c2[n[:, 1]] * c3[n[:, 2]] * c4[n[:, 3]]
    W = np.zeros((len(ix["EA"]), len(ix["EC"])))
    np.add.at(W, (ix["a"], ix["c"]), w)
    W.setflags(write=False)
    return W


@ft.lru_cache(maxsize=None)
def _staged_index(order: int):
    """Index arrays of the staged contraction (per-covariance coefficients)."""
    N = int(order)
    L = N + 1
    k = np.arange(L)
    H = k[:, None] + k[None, :]
    quads = np.array([
        (x, y, u, v) for x in range(L) for y in range(L) for u in range(L) for v in range(L)
        if x + y <= N - 1 and u + v <= N - 1 and x + u <= N and y + v <= N
    ])
    x, y, u, v = quads.T
    return dict(
        hankel=np.minimum(H, N), hmask=H <= N,
        xy=x * L + y, uv=u * L + v, s12=(x + y) * L + (u + v), s34=(x + u) * L + (y + v),
        inv_fact=np.array([1.0 / math.factorial(j) for j in range(L)]),
    )


# ---------------------------------------------------------------------------------- series
def _powers(r, L: int):
    """(..., L) table of r^k, k = 0..L-1, by repeated products (clean derivatives at r = 0)."""
    out = [jnp.ones_like(r), r]
    for _ in range(2, L):
        out.append(out[-1] * r)
    return jnp.stack(out[:L], axis=-1)


def _correlations(cov):
    d = jnp.diagonal(cov, axis1=-2, axis2=-1)
    s = jnp.sqrt(jnp.maximum(d, 0.0))
    s_safe = jnp.where(s > 0, s, 1.0)
    rho = jnp.stack([cov[..., i, j] / (s_safe[..., i] * s_safe[..., j]) for i, j in _PAIRS], -1)
    return s, jnp.clip(rho, -1.0, 1.0)


def _series_bilinear(rho, W, order: int):
    """Series with batch-independent coefficients: one matrix product against the cached W."""
    ix = hermite_index_set(order)
    L = order + 1
    P = _powers(rho, L)  # (..., 6, L)
    EA, EC = ix["EA"], ix["EC"]
    MA = P[..., 0, EA[:, 0]] * P[..., 1, EA[:, 1]] * P[..., 2, EA[:, 2]]
    MC = P[..., 3, EC[:, 0]] * P[..., 4, EC[:, 1]] * P[..., 5, EC[:, 2]]
    return jnp.sum((MA @ jnp.asarray(W, rho.dtype)) * MC, axis=-1)


def _series_staged(rho, c, order: int):
    """Series with per-covariance coefficients `c` (..., 4, L) (zero beyond the truncation).

    Contract the K4 tensor network edge by edge: S12[q1, q2] = sum_k rho12^k/k! c1[q1+k] c2[q2+k],
    S34 likewise, then sum over (n13, n14, n23, n24) of the remaining monomials times
    S12[n13+n14, n23+n24] S34[n13+n23, n14+n24]. O(N^4) per covariance.
    """
    ix = _staged_index(order)
    L = order + 1
    f = _powers(rho, L) * jnp.asarray(ix["inv_fact"], rho.dtype)  # (..., 6, L)
    ch = jnp.where(ix["hmask"], c[..., ix["hankel"]], 0.0)  # (..., 4, L, L): c[q + k]
    S12 = jnp.einsum("...k,...qk,...rk->...qr", f[..., 0, :], ch[..., 0, :, :], ch[..., 1, :, :])
    S34 = jnp.einsum("...k,...qk,...rk->...qr", f[..., 5, :], ch[..., 2, :, :], ch[..., 3, :, :])
    flat = lambda a: a.reshape(a.shape[:-2] + (L * L,))
    F1 = flat(f[..., 1, :, None] * f[..., 2, None, :])
    F2 = flat(f[..., 3, :, None] * f[..., 4, None, :])
    S12, S34 = flat(S12), flat(S34)
    terms = F1[..., ix["xy"]] * F2[..., ix["uv"]] * S12[..., ix["s12"]] * S34[..., ix["s34"]]
    return jnp.sum(terms, axis=-1)


def hermite_i4(cov, acts, order: int = 10, *, warn: bool = True):
    """`E[g1'(z1) g2'(z2) g3(z3) g4(z4)]` by paper 001's series truncated at `order`.

    **Arguments:**

    - `cov`: covariances, shape `(..., 4, 4)` (leading axes batch).
    - `acts`: four activations `(g1, g2, g3, g4)`.
    - `order`: truncation order N (`n1, n2 <= N - 1`, `n3, n4 <= N`).
    - `warn`: outside jit, warn (`HermiteConvergenceWarning`) when some covariance lies outside
      `hermite_in_region(cov, order)`. Under jit, call `hermite_in_region` yourself.

    If all four activations are positively homogeneous (`b relu(x) + c relu(-x)`), the coefficient
    products are precomputed once per (activations, order) into a dense matrix `W` and the series is
    one matrix product over monomials of the correlations; otherwise coefficients are computed per
    covariance (their variances differ) and the series is contracted edge by edge.

    Example:
        >>> C = 0.15 * jnp.ones((4, 4)) + 0.85 * jnp.eye(4)
        >>> jaxdyn.I4(C, jaxdyn.ReLU(), method="hermite", order=10)
    """
    cov = jnp.asarray(cov)
    if cov.shape[-2:] != (4, 4):
        raise ValueError(f"cov must have shape (..., 4, 4), got {cov.shape}")
    order = check_order(order)
    s, rho = _correlations(cov)
    decs = [relu_decomposition(g) for g in acts]
    if all(d is not None for d in decs):
        coeffs = tuple(
            tuple(_unit_relu_type_coeffs(d, order - 1 if i < 2 else order, i < 2).tolist())
            for i, d in enumerate(decs)
        )
        W = _bilinear_weight(order, coeffs)
        out = s[..., 2] * s[..., 3] * _series_bilinear(rho, W, order)
    else:
        cols = []
        for i, g in enumerate(acts):
            if i < 2:
                ci = hermite_coefficients(g, order - 1, s[..., i], derivative=True)
                ci = jnp.concatenate([ci, jnp.zeros_like(ci[..., :1])], axis=-1)
            else:
                ci = hermite_coefficients(g, order, s[..., i])
            cols.append(jnp.broadcast_to(ci, s.shape[:-1] + (order + 1,)))
        out = _series_staged(rho, jnp.stack(cols, axis=-2), order)
    if warn:
        warn_outside_region(cov, order, stacklevel=2)
    return out


def warn_outside_region(cov, order: int, *, stacklevel: int = 2) -> None:
    """Warn (`HermiteConvergenceWarning`) when a concrete `cov` lies outside the trusted region of
    the order-`order` series; nothing for a tracer (under jit call `hermite_in_region`)."""
    if isinstance(cov, jax.core.Tracer):
        return
    inside = np.asarray(hermite_in_region(cov, order))
    if not inside.all():
        warnings.warn(
            f"{int((~inside).sum())} of {inside.size} covariances lie outside the trusted "
            f"region of the order-{order} Hermite series (spectral radius of |correlations| "
            f"up to {float(jnp.max(correlation_spectral_radius(cov))):.3f}, limit "
            f"{region_limit(order):.2f} for error <= {DEFAULT_TOL:g}); the truncated series "
            "may be inaccurate there. Use method='exact' where it exists.",
            HermiteConvergenceWarning,
            stacklevel=stacklevel + 1,
        )


# ---------------------------------------------------------------------- convergence region
class HermiteConvergenceWarning(UserWarning):
    """The Hermite series was evaluated outside its (measured) convergence region."""


# Trusted region of the order-N series, from the measurement in docs/hermite_convergence.md
# (benchmarks/hermite_convergence.py). Criterion: the spectral radius rho(|R|) of the matrix of
# absolute correlations |rho_ij| (zero diagonal). The absolute majorant of the series,
# sum prod |rho_ij|^n_ij / n_ij! prod |<He_ni, g_i>| with |<He_n, g>| <= ||g|| sqrt(n!), converges
# iff rho(|R|) < 1 (saddle point of the multinomial sum; for equicorrelation r: 3|r| < 1), so no
# limit exceeds 1. REGION_LIMITS[tol][N]: the largest rho(|R|) below which *every* tested matrix
# (random correlation matrices and equicorrelated ones) had |series - exact| <= tol, for both the
# ReLU and the erf I4 (unit variances). Orders in between use the next lower tabulated order.
# Values: the measured limits minus a safety margin of 0.02.
REGION_LIMITS = {
    1e-4: {6: 0.67, 8: 0.81, 10: 0.88, 12: 0.91, 14: 0.93},
    1e-6: {6: 0.41, 8: 0.50, 10: 0.62, 12: 0.67, 14: 0.67},
    1e-8: {6: 0.22, 8: 0.38, 10: 0.44, 12: 0.50, 14: 0.56},
}
DEFAULT_TOL = 1e-6


def region_limit(order: int, tol: float = DEFAULT_TOL) -> float:
    """The `rho(|R|)` limit of `hermite_in_region` for truncation `order` and tolerance `tol`."""
    if tol not in REGION_LIMITS:
        raise ValueError(f"tol must be one of {sorted(REGION_LIMITS)}, got {tol}")
    table = REGION_LIMITS[tol]
    below = [k for k in sorted(table) if k <= order]
    return table[below[-1]] if below else 0.0


def correlation_spectral_radius(cov):
    """`rho(|R|)`: the largest eigenvalue of `|C_ij| / sqrt(C_ii C_jj)` with zero diagonal."""
    cov = jax.lax.stop_gradient(jnp.asarray(cov))
    d = jnp.sqrt(jnp.maximum(jnp.diagonal(cov, axis1=-2, axis2=-1), 0.0))
    d = jnp.where(d > 0, d, 1.0)
    R = jnp.clip(jnp.abs(cov) / (d[..., :, None] * d[..., None, :]), 0.0, 1.0)
    R = R * (1.0 - jnp.eye(cov.shape[-1], dtype=cov.dtype))
    return jnp.linalg.eigvalsh(R)[..., -1]


def hermite_in_region(cov, order: int = 10, *, tol: float = DEFAULT_TOL):
    """Whether each `(..., 4, 4)` covariance lies in the trusted region of the order-`order` series.

    Checks `rho(|R|) <= region_limit(order, tol)`, with `rho(|R|)` the spectral radius of the
    matrix of absolute correlations `|C_ij| / sqrt(C_ii C_jj)` (zero diagonal). The series' absolute
    majorant converges iff `rho(|R|) < 1`; the limits below 1 are *measured*: inside, the series
    matched the exact ReLU and erf I4 to `tol` (absolute, unit variances; scale by `s3 s4` for
    other variances) on every tested matrix (docs/hermite_convergence.md). For activations that are
    not positively homogeneous the coefficients change with the variances and the bound is not
    guaranteed off unit variance (erf, variances within e^(+-0.6): up to 1.3 tol). `tol` is one of
    1e-4, 1e-6 (default), 1e-8. Pure and jit/vmap compatible: returns a bool array of shape
    `cov.shape[:-2]`, so an ODE right-hand side can carry it as a flag. Note that some singular
    covariances (a unit and its copy, all else uncorrelated) have `rho(|R|) = 1`, are reported
    outside, and yet the ReLU series terminates there and is exact.

    Example:
        >>> jaxdyn.hermite_in_region(0.2 * jnp.ones((4, 4)) + 0.8 * jnp.eye(4), 10)   # True
    """
    return correlation_spectral_radius(cov) <= region_limit(order, tol)
