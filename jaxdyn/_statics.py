"""Equilibrium statics of the soft committee machine in the high-temperature limit (paper 002).

Oostwal, Straat & Biehl, "Hidden unit specialization in layered neural networks: ReLU vs.
sigmoidal activation", Physica A (2021), arXiv:1910.07476.

Convention (docs/conventions.md, equilibrium statics): K = M students and teachers, outputs scaled `1/sqrt(K)`, students normalised
(`Q_ii = 1`), orthonormal teacher (`T = I`). The free energy per weight is

    beta f = alpha K eps_g(R, Q) - s(R, Q),      s = 1/2 ln det(Q - R R^T),

with `eps_g = (1/2K) [sum_ij G(Q_ij) - 2 sum_in G(R_in) + sum_nm G(T_nm)]` and `G(c)` the pair
correlation `E[g(x) g(y)]` of unit-variance Gaussian fields with correlation `c` (paper eq. 25;
eq. 11 of the paper carries a spurious 1/K). Additive constants in g cancel (K = M, equal second
layer weights), so the paper's sigmoid `1 + erf(x/sqrt 2)` gives the eps_g of `jaxdyn.Erf()`.

Site-symmetric states `R_ii = R, R_ij = S, Q_ij = C` (paper eq. 10) give

    eps_g = G(1) - G(R) + (K-1)/2 [G(C) - 2 G(S) + G(0)],
    s     = 1/2 ln[1 + (K-1) C - (R + (K-1) S)^2] + (K-1)/2 ln[1 - C - (R - S)^2]   (eq. 19),

which are analytic in K: K enters the site-symmetric code as a (traced) float, so a table over K
compiles once. Coordinates used for branches: `D = R - S` (specialisation) and the row mean
`m = (R + (K-1) S)/K`.

The unspecialised state R = S loses stability along the (K-1)^2-fold degenerate direction
`dR_in` with zero row and column sums, at `alpha_inst = 1 / ((1 - C) G''(r))` (r = R = S; ReLU:
`2 pi sqrt(1-r^2)/(1-C)`, erf: `pi (4-r^2)^{3/2} / (2 r (1-C))`). For K >= 3 the cubic term
`-(K-1) K (K-2) G'''(r) t^3` makes this bifurcation transcritical: the R > S branch leaves it
backwards (unstable), folds at `alpha_s`, and the transition at `alpha_c` (equal free energies) is
first order. For K = 2 the cubic vanishes (pitchfork).

K -> infinity (scaling S = sigma/K, C = c/K, maximal row norm): per weight `f/K -> alpha
eps_inf(R) - 1/2 ln(1 - R^2)` with `eps_inf(R) = G(1) - G(R) - G'(0)(1 - R)`; the unspecialised
state is R = 0. ReLU: eps_inf is even, alpha_c = 1/G''(0) = 2 pi.
"""

from __future__ import annotations

import functools as ft

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from ._activations import AbstractActivation, as_activation
from ._averages import I2, hermite_coefficients, split_rule


# ----------------------------------------------------------------------------- validation
def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_g(g) -> AbstractActivation:
    """The activation, checked to have a pair correlation (a clear ValueError otherwise)."""
    try:
        g = as_activation(g)
    except ValueError as e:
        raise ValueError(f"g: {e}") from None
    try:
        jax.eval_shape(lambda c: pair_correlation(c, g), jnp.zeros(()))
    except NotImplementedError as e:
        raise ValueError(
            f"g: activation {g!r} has no pair correlation E[g(x) g(y)] ({e}); give it a "
            "__call__ (jaxdyn.Activation(fn)) or use jaxdyn.ReLU() / jaxdyn.Erf()") from None
    return g


def _check_alpha(alpha):
    a = jnp.asarray(alpha, dtype=jnp.result_type(float))
    if _concrete(a) and (not np.all(np.isfinite(np.asarray(a))) or np.any(np.asarray(a) < 0)):
        raise ValueError(f"alpha must be finite and >= 0 (it is beta P / (K N)), got {alpha!r}")
    return a


def _check_K(K) -> int:
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
        raise ValueError(f"K must be an integer >= 1 (number of hidden units), got {K!r}")
    return int(K)


# ----------------------------------------------------------------------- pair correlation
def pair_correlation(c, g):
    """`G(c) = E[g(x) g(y)]` for unit-variance Gaussian `x, y` with correlation `c` (batched).

    Closed forms for ReLU (paper 002 eq. 27) and erf(x/sqrt 2) (`(2/pi) asin(c/2)`); any other
    activation by `jaxdyn.I2`'s generic route (exact ReLU reduction or 2-D quadrature; its error
    against the convergent Mehler series: `pair_correlation_error`). jit/vmap/grad-safe.

    Example:
        >>> float(jaxdyn.pair_correlation(0.0, jaxdyn.ReLU()))   # 1/(2 pi)
    """
    c = jnp.asarray(c, dtype=jnp.result_type(float))
    eye = jnp.eye(2, dtype=c.dtype)
    cov = eye + c[..., None, None] * (1.0 - eye)
    return I2(cov, g)


def pair_correlation_error(c, g, *, order: int = 20):
    """`|G_quad(c) - G_series(c)| + tail`: the error of `pair_correlation` for activations
    without a closed form, against Mehler's series `G(c) = sum_n <He_n, g>^2 c^n / n!`.

    The series converges for all |c| <= 1 (Parseval: `sum_n <He_n,g>^2/n! = E[g^2]`), and its
    tail beyond `order` is bounded by `|c|^(order+1) (E[g^2] - sum_{n<=order} <He_n,g>^2/n!)`.
    Returns `(value_series, error_estimate)`.

    Example:
        >>> v, err = jaxdyn.pair_correlation_error(0.5, jaxdyn.Tanh())
    """
    g = _check_g(g)
    c = jnp.asarray(c, dtype=jnp.result_type(float))
    a = hermite_coefficients(g, order)
    fact = np.array([float(np.prod(np.arange(1, n + 1))) for n in range(order + 1)])
    w2 = a**2 / fact
    series = jnp.sum(w2 * c[..., None] ** np.arange(order + 1.0), axis=-1)
    x, wq = split_rule()
    eg2 = jnp.sum(wq * g(jnp.asarray(x)) ** 2)
    tail = jnp.abs(c) ** (order + 1) * jnp.maximum(eg2 - jnp.sum(w2), 0.0)
    quad = pair_correlation(c, g)
    return series, jnp.abs(quad - series) + tail


def _G(g):
    return lambda c: pair_correlation(c, g)


def _dG(g, n: int):
    f = lambda c: pair_correlation(c, g)
    for _ in range(n):
        f = jax.grad(f)
    return f


# -------------------------------------------------------------------------- full space
def _iu(K):
    return np.triu_indices(K, 1)


def flatten_statics(R, Q):
    """Flat full-space coordinates `(R_11, R_12, ..., R_KK, Q_12, Q_13, ..., Q_(K-1)K)`:
    the K^2 + K(K-1)/2 order parameters (R row-major, then the upper triangle of Q).

    Example:
        >>> jaxdyn.flatten_statics(jnp.eye(2), jnp.eye(2))   # [1, 0, 0, 1, 0]
    """
    R = jnp.asarray(R, dtype=jnp.result_type(float))
    Q = jnp.asarray(Q, dtype=R.dtype)
    K = R.shape[-1]
    return jnp.concatenate([R.reshape(R.shape[:-2] + (K * K,)), Q[..., _iu(K)[0], _iu(K)[1]]], -1)


def unflatten_statics(x, K: int):
    """Inverse of `flatten_statics`: `(R, Q)` with unit diagonal of Q.

    Example:
        >>> R, Q = jaxdyn.unflatten_statics(jnp.array([1.0, 0, 0, 1, 0.2]), 2)
    """
    x = jnp.asarray(x)
    R = x[: K * K].reshape(K, K)
    i, j = _iu(K)
    Q = jnp.eye(K, dtype=x.dtype)
    Q = Q.at[i, j].set(x[K * K:]).at[j, i].set(x[K * K:])
    return R, Q


def _eps_full(R, q_off, K, g):
    G = _G(g)
    G1 = G(jnp.ones((), R.dtype))
    G0 = G(jnp.zeros((), R.dtype))
    return (2 * K * G1 + K * (K - 1) * G0 + 2 * jnp.sum(G(q_off)) - 2 * jnp.sum(G(R))) / (2 * K)


def _entropy_full(R, Q):
    M = Q - R @ R.T
    lam_min = jax.lax.stop_gradient(jnp.min(jnp.linalg.eigvalsh(M)))
    sign, logdet = jnp.linalg.slogdet(M)
    ok = (lam_min > 0) & (sign > 0)
    return jnp.where(ok, 0.5 * logdet, -jnp.inf), ok


def _f_full_flat(x, K, alpha, g):
    R, Q = unflatten_statics(x, K)
    s, ok = _entropy_full(R, Q)
    f = alpha * K * _eps_full(R, x[K * K:], K, g) - s
    return jnp.where(ok, f, jnp.inf)


def _check_state(R, Q):
    R = jnp.asarray(R, dtype=jnp.result_type(float))
    Q = jnp.asarray(Q, dtype=R.dtype)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or Q.shape != R.shape:
        raise ValueError(f"R and Q must both be K x K (K = M), got {R.shape} and {Q.shape}")
    if _concrete(R) and _concrete(Q):
        Qn, Rn = np.asarray(Q), np.asarray(R)
        if not np.allclose(np.diag(Qn), 1.0, atol=1e-12) or not np.allclose(Qn, Qn.T, atol=1e-12):
            raise ValueError("Q must be symmetric with unit diagonal (normalised students, Q_ii = 1)")
        lam = np.linalg.eigvalsh(Qn - Rn @ Rn.T)
        if not lam.min() > 0:
            raise ValueError(
                f"state outside the domain: Q - R R^T must be positive definite (smallest "
                f"eigenvalue {lam.min():.3g}); |R_in| < 1 and sum_n R_in^2 < 1 at least")
    return R, Q


def statics_eps_g(R, Q, g):
    """Generalisation error of the K = M soft committee machine with outputs scaled 1/sqrt(K),
    T = I, `Q_ii = 1` (paper 002 eq. 25 with `1/sqrt(K)` second-layer weights).

    Example:
        >>> float(jaxdyn.statics_eps_g(jnp.zeros((2, 2)), jnp.eye(2), jaxdyn.ReLU()))  # 1/2 - 1/(2 pi)
    """
    g = _check_g(g)
    R, Q = _check_state(R, Q)
    K = R.shape[0]
    return _eps_full(R, Q[_iu(K)], K, g)


def entropy(R, Q):
    """`s = 1/2 ln det(Q - R R^T)` (paper 002 eq. 18 with T = I, Q_ii = 1), additive constant omitted.

    Example:
        >>> float(jaxdyn.entropy(jnp.zeros((2, 2)), jnp.eye(2)))   # 0
    """
    R, Q = _check_state(R, Q)
    return _entropy_full(R, Q)[0]


def free_energy(R, Q, *, alpha, g):
    """`beta f = alpha K eps_g(R, Q) - s(R, Q)` in the full space (`R` K x K, `Q` unit diagonal).

    Concrete states outside the domain (`Q - R R^T` not positive definite) raise `ValueError`;
    traced ones give `+inf`. jit/vmap/grad-safe.

    Example:
        >>> float(jaxdyn.free_energy(0.1 * jnp.eye(2), jnp.eye(2), alpha=1.0, g=jaxdyn.ReLU()))
    """
    g = _check_g(g)
    alpha = _check_alpha(alpha)
    R, Q = _check_state(R, Q)
    K = R.shape[0]
    return _f_full_flat(flatten_statics(R, Q), K, alpha, g)


# ---------------------------------------------------------------------- site symmetric
def _eps_ss(R, S, C, K, g):
    G = _G(g)
    one = jnp.ones_like(R)
    return G(one) - G(R) + 0.5 * (K - 1) * (G(C) - 2 * G(S) + G(0.0 * one))


def _entropy_ss(R, S, C, K):
    a = 1 + (K - 1) * C - (R + (K - 1) * S) ** 2
    b = 1 - C - (R - S) ** 2
    multi = K > 1
    ok = (a > 0) & ((b > 0) | ~multi)
    s = 0.5 * jnp.log(jnp.where(a > 0, a, 1.0)) + jnp.where(
        multi, 0.5 * (K - 1) * jnp.log(jnp.where(b > 0, b, 1.0)), 0.0)
    return jnp.where(ok, s, -jnp.inf), ok


def _f_ss(y, K, alpha, g):
    R, S, C = y[0], y[1], y[2]
    s, ok = _entropy_ss(R, S, C, K)
    return jnp.where(ok, alpha * K * _eps_ss(R, S, C, K, g) - s, jnp.inf)


def _check_ss(R, S, C, K):
    if all(_concrete(v) for v in (R, S, C, K)):
        _, ok = _entropy_ss(jnp.asarray(R, float), jnp.asarray(S, float), jnp.asarray(C, float),
                            jnp.asarray(K, float))
        if not np.all(np.asarray(ok)):
            raise ValueError(
                "state outside the domain: need 1 + (K-1) C - (R + (K-1) S)^2 > 0 and "
                "1 - C - (R - S)^2 > 0 (Q - R R^T positive definite)")


def statics_eps_g_ss(R, S, C, *, K, g):
    """Site-symmetric `eps_g(R, S, C)` (`R_ii = R`, `R_ij = S`, `Q_ij = C`); `K` may be a float.

    ReLU: paper eq. 12; erf / `1 + erf`: `1/3 + (K-1)/pi [asin(C/2) - 2 asin(S/2)] - (2/pi)
    asin(R/2)` (eq. 11 without its spurious 1/K).

    Example:
        >>> float(jaxdyn.statics_eps_g_ss(0.0, 0.0, 0.0, K=5, g=jaxdyn.Erf()))   # 1/3
    """
    g = _check_g(g)
    return _eps_ss(jnp.asarray(R, float), jnp.asarray(S, float), jnp.asarray(C, float),
                   jnp.asarray(K, float), g)


def entropy_ss(R, S, C, *, K):
    """Site-symmetric entropy, paper 002 eq. 19 (`-inf` outside the domain under tracing).

    Example:
        >>> float(jaxdyn.entropy_ss(0.0, 0.0, 0.0, K=3))   # 0
    """
    _check_ss(R, S, C, K)
    return _entropy_ss(jnp.asarray(R, float), jnp.asarray(S, float), jnp.asarray(C, float),
                       jnp.asarray(K, float))[0]


def free_energy_ss(R, S, C, *, K, alpha, g):
    """Site-symmetric `beta f(R, S, C) = alpha K eps_g - s` (paper 002 eq. 20).

    Example:
        >>> float(jaxdyn.free_energy_ss(0.3, 0.3, 0.1, K=2, alpha=3.0, g=jaxdyn.ReLU()))
    """
    g = _check_g(g)
    alpha = _check_alpha(alpha)
    _check_ss(R, S, C, K)
    y = jnp.stack([jnp.asarray(R, float), jnp.asarray(S, float), jnp.asarray(C, float)])
    return _f_ss(y, jnp.asarray(K, float), alpha, g)


def site_symmetric_state(R, S, C, K: int):
    """The full K x K matrices `(R, Q)` of a site-symmetric state.

    Example:
        >>> R, Q = jaxdyn.site_symmetric_state(0.5, 0.1, 0.0, 3)
    """
    eye = jnp.eye(K)
    R = jnp.asarray(R, float)
    return R * eye + jnp.asarray(S, float) * (1 - eye), eye + jnp.asarray(C, float) * (1 - eye)


def alpha_instability(r, C, g):
    """`alpha_inst = 1 / ((1 - C) G''(r))` at an unspecialised state `R = S = r`, `Q_ij = C`:
    where the (K-1)^2-fold specialisation direction of the Hessian crosses zero. ReLU:
    `2 pi sqrt(1-r^2)/(1-C)`; erf: `pi (4-r^2)^{3/2} / (2 r (1-C))`.

    Example:
        >>> float(jaxdyn.alpha_instability(0.0, 0.0, jaxdyn.ReLU()))   # 2 pi
    """
    g = _check_g(g)
    return 1.0 / ((1 - jnp.asarray(C, float)) * _dG(g, 2)(jnp.asarray(r, float)))


# ------------------------------------------------------------------------- equilibria
_NEWTON = optx.Newton(rtol=1e-13, atol=1e-13)
_OK = (optx.RESULTS.successful, optx.RESULTS.max_steps_reached)


def _root(F, y0, args, max_steps=64):
    sol = optx.root_find(F, _NEWTON, y0, args, max_steps=max_steps, throw=False)
    res = jnp.max(jnp.abs(F(sol.value, args)))
    return sol.value, res


@eqx.filter_jit
def _solve_ss(y0, K, alpha, g):
    F = lambda y, a: jax.grad(_f_ss)(y, a[0], a[1], g)
    y, res = _root(F, y0, (K, alpha))
    # keep the guess if Newton made it worse (a singular Hessian at the guess, e.g. exactly at a
    # bifurcation, sends Newton to NaN)
    res0 = jnp.max(jnp.abs(F(y0, (K, alpha))))
    better = jnp.isfinite(res) & (res <= res0)
    y, res = jnp.where(better, y, y0), jnp.where(better, res, res0)
    H = jax.hessian(_f_ss)(y, K, alpha, g)
    return y, res, _f_ss(y, K, alpha, g), _eps_ss(y[0], y[1], y[2], K, g), jnp.linalg.eigvalsh(H)


@ft.lru_cache(maxsize=None)
def _full_hessian_fn(K: int):
    @eqx.filter_jit
    def fn(y, alpha, g):
        R, Q = site_symmetric_state(y[0], y[1], y[2], K)
        x = flatten_statics(R, Q)
        grad = jax.grad(_f_full_flat)(x, K, alpha, g)
        H = jax.hessian(_f_full_flat)(x, K, alpha, g)
        return jnp.max(jnp.abs(grad)), jnp.linalg.eigvalsh(H)
    return fn


def full_hessian(R, S, C, *, K: int, alpha, g):
    """Eigenvalues (ascending) of the full Hessian of `beta f` at a site-symmetric state, in the
    `K^2 + K(K-1)/2` coordinates of `flatten_statics`, and the full gradient's max norm.

    Example:
        >>> grad, lam = jaxdyn.full_hessian(0.3, 0.3, 0.1, K=2, alpha=3.0, g=jaxdyn.ReLU())
    """
    K = _check_K(K)
    g = _check_g(g)
    alpha = _check_alpha(alpha)
    y = jnp.stack([jnp.asarray(R, float), jnp.asarray(S, float), jnp.asarray(C, float)])
    return _full_hessian_fn(K)(y, alpha, g)


def _kind(lam, tol):
    n_neg = int(np.sum(lam < -tol))
    n_pos = int(np.sum(lam > tol))
    if n_neg == 0 and n_pos == lam.size:
        return "minimum", n_neg
    if n_pos == 0 and n_neg == lam.size:
        return "maximum", n_neg
    if n_neg == 0:
        return "marginal", n_neg
    return "saddle", n_neg


class Equilibrium(eqx.Module):
    """A stationary point of `beta f` (site-symmetric), with its site-symmetric and full spectra.

    Fields: `K`, `alpha`, `R`, `S`, `C`, `beta_f`, `eps_g`, `residual` (max |grad| in the full
    space), `hessian_ss` (3 eigenvalues, (R, S, C) coordinates), `hessian` (the K^2 + K(K-1)/2
    eigenvalues of the full Hessian; None when `full=False`), `kind` ('minimum', 'saddle',
    'maximum', 'marginal'; from the full spectrum when available), `n_negative` (negative
    directions), `converged`.
    """

    K: int = eqx.field(static=True)
    alpha: jax.Array
    R: jax.Array
    S: jax.Array
    C: jax.Array
    beta_f: jax.Array
    eps_g: jax.Array
    residual: jax.Array
    hessian_ss: jax.Array
    hessian: jax.Array | None
    kind: str = eqx.field(static=True)
    n_negative: int = eqx.field(static=True)
    converged: bool = eqx.field(static=True)


_GUESSES = {"unspecialised": (0.3, 0.3, 0.05), "specialised": (0.9, 0.05, 0.0),
            "anti": (-0.5, 0.3, 0.0)}


def equilibrium(*, K: int, g, alpha, guess="unspecialised", full: bool = True) -> Equilibrium:
    """Stationary point of the site-symmetric `beta f` near `guess`, by Newton on the gradient
    (optimistix), classified by its full Hessian (`full=True`, K^2 + K(K-1)/2 coordinates).

    **Arguments:** `K` (>= 1), `g` (activation), `alpha` (>= 0, = beta P/(K N)), `guess`: a
    tuple `(R, S, C)` or one of 'unspecialised', 'specialised', 'anti' (R < S).

    For K = 1 only R is solved (S, C do not exist and are returned as 0).

    Example:
        >>> eq = jaxdyn.equilibrium(K=2, g=jaxdyn.ReLU(), alpha=3.0)
        >>> eq.kind, float(eq.R - eq.S)   # ('minimum', 0.0): unspecialised below alpha_c ~ 6.1
    """
    K = _check_K(K)
    g = _check_g(g)
    alpha = _check_alpha(alpha)
    if isinstance(guess, str):
        if guess not in _GUESSES:
            raise ValueError(f"guess must be (R, S, C) or one of {sorted(_GUESSES)}, got {guess!r}")
        guess = _GUESSES[guess] if K == 1 else _branch_guess(K, g, alpha, guess)
    y0 = jnp.asarray(guess, float)
    if y0.shape != (3,):
        raise ValueError(f"guess must be (R, S, C), got shape {y0.shape}")
    if K == 1:
        r = single_unit(alpha, g=g, guess=float(y0[0]))
        y = jnp.array([r, 0.0, 0.0])
        f = _f_ss(y, 1.0, alpha, g)
        H = jax.hessian(lambda R: _f_ss(jnp.stack([R, 0.0, 0.0]), 1.0, alpha, g))(y[0])
        lam = jnp.atleast_1d(H)
        res = jnp.abs(jax.grad(lambda R: _f_ss(jnp.stack([R, 0.0, 0.0]), 1.0, alpha, g))(y[0]))
        kind, nn = _kind(np.asarray(lam), 1e-9)
        return Equilibrium(K, alpha, y[0], y[1], y[2], f, _eps_ss(y[0], 0.0, 0.0, 1.0, g), res,
                           lam, lam, kind, nn, bool(res < 1e-9))
    y, res, f, eps, lam_ss = _solve_ss(y0, jnp.asarray(float(K)), alpha, g)
    lam = None
    if full:
        res, lam = _full_hessian_fn(K)(y, alpha, g)
    spec = np.asarray(lam if lam is not None else lam_ss)
    tol = 1e-9 * max(1.0, float(np.max(np.abs(spec))))
    kind, nn = _kind(spec, tol)
    conv = bool(np.isfinite(float(f)) and float(res) < 1e-8)
    return Equilibrium(K, alpha, y[0], y[1], y[2], f, eps, res, lam_ss, lam, kind, nn, conv)


def _branch_guess(K, g, alpha, kind):
    """A starting point on the named branch at alpha: the R = S branch followed from alpha = 0,
    or the stable part of the R > S / R < S branch continued in D from the bifurcation."""
    Kf = jnp.asarray(float(K))
    a = float(alpha)
    if kind == "unspecialised":
        y = _scan_unspecialised(jnp.linspace(0.0, a, 64), jnp.zeros(2), Kf, g)[0]
        return tuple(float(v) for v in y[-1])
    r, C, a_i = _instability_point(float(K), g)
    Ds = _D_grid("specialised" if kind == "specialised" else "anti")
    y, rsc, f, eps, lmin, ok = _scan_branch(Ds, jnp.array([r, C, a_i]), Kf, g)
    ok = np.cumprod(np.asarray(ok)).astype(bool) & (np.asarray(lmin) > 0)
    al = np.asarray(y[:, 2])
    if not ok.any() or a < al[ok].min() or a > al[ok].max():
        lo = al[ok].min() if ok.any() else np.nan
        raise ValueError(f"no stable {kind} branch point at alpha = {a} for K = {K} (the branch "
                         f"exists for alpha >= {lo:.6g} on the continuation grid); pass guess=(R, S, C)")
    i = int(np.argmin(np.where(ok, np.abs(al - a), np.inf)))
    return tuple(float(v) for v in rsc[i])


# ---------------------------------------------------------------------------------- K = 1
def single_unit_alpha(R, g):
    """K = 1: the alpha at which `R` is stationary, `alpha = R / ((1 - R^2) G'(R))` (paper 002
    eqs. 32/33 for erf/ReLU, here from autodiff of the pair correlation).

    Example:
        >>> float(jaxdyn.single_unit_alpha(0.5, jaxdyn.ReLU()))
    """
    g = _check_g(g)
    R = jnp.asarray(R, float)
    return R / ((1 - R**2) * jnp.vectorize(_dG(g, 1))(R))


def single_unit(alpha, *, g, guess: float = 0.5):
    """K = 1 equilibrium overlap `R(alpha)`: the root of `d(beta f)/dR` with `beta f = alpha
    eps_g(R) - 1/2 ln(1 - R^2)`, `eps_g = G(1) - G(R)` (paper 002 eqs. 29-31). Batched in alpha.

    Example:
        >>> float(jaxdyn.single_unit(10.0, g=jaxdyn.Erf()))
    """
    g = _check_g(g)
    alpha = _check_alpha(alpha)
    return _single_unit(alpha, g, jnp.asarray(guess, float))


@eqx.filter_jit
def _single_unit(alpha, g, guess):
    d1 = _dG(g, 1)

    def one(a):
        # in u = atanh(R) the root is unique for alpha > 0 and Newton stays inside |R| < 1
        F = lambda u, a: a * d1(jnp.tanh(u)) * (1 - jnp.tanh(u) ** 2) - jnp.tanh(u)
        u, _ = _root(F, jnp.arctanh(jnp.clip(guess, -0.99, 0.99)), a)
        return jnp.tanh(u)

    return jnp.vectorize(one)(alpha)


# --------------------------------------------------------------------------------- branches
def _to_rsc(D, m, C, K):
    return jnp.stack([m + (K - 1) * D / K, m - D / K, C])


def _f_dmc(z, K, alpha, g):
    return _f_ss(_to_rsc(z[0], z[1], z[2], K), K, alpha, g)


def _G_branch(y, args):
    """Stationarity at fixed D != 0 in the unknowns y = (m, C, alpha): (f_D / D, f_m, f_C)."""
    D, K, g = args
    m, C, alpha = y
    grad = jax.grad(_f_dmc)(jnp.stack([D, m, C]), K, alpha, g)
    return jnp.stack([grad[0] / D, grad[1], grad[2]])


def _solve_branch_point(D, y0, K, g):
    y, res = _root(_G_branch, y0, (D, K, g))
    return y, res


def _branch_observables(D, y, K, g):
    m, C, alpha = y
    rsc = _to_rsc(D, m, C, K)
    H = jax.hessian(_f_ss)(rsc, K, alpha, g)
    return rsc, _f_ss(rsc, K, alpha, g), _eps_ss(rsc[0], rsc[1], rsc[2], K, g), \
        jnp.linalg.eigvalsh(H)[0]


@eqx.filter_jit
def _scan_branch(Ds, y0, K, g):
    def step(y, D):
        y_new, res = _solve_branch_point(D, y, K, g)
        ok = jnp.isfinite(res) & (res < 1e-9 * (1 + jnp.abs(y_new[2]) * K)) \
            & jnp.all(jnp.isfinite(y_new))
        y_next = jnp.where(ok, y_new, y)
        rsc, f, eps, lmin = _branch_observables(D, y_new, K, g)
        return y_next, (y_new, rsc, f, eps, lmin, ok)

    _, out = jax.lax.scan(step, y0, Ds)
    return out


def _U_eq(z, args):
    """Unspecialised stationarity in z = (r, C) at alpha."""
    K, alpha, g = args
    fu = lambda z: _f_ss(jnp.stack([z[0], z[0], z[1]]), K, alpha, g)
    return jax.grad(fu)(z)


@eqx.filter_jit
def _scan_unspecialised(alphas, z0, K, g):
    def step(z, a):
        z_new, res = _root(_U_eq, z, (K, a, g))
        ok = jnp.isfinite(res) & (res < 1e-9 * (1 + a * K))
        y = jnp.stack([z_new[0], z_new[0], z_new[1]])
        H = jax.hessian(_f_ss)(y, K, a, g)
        lam_inst = a * (1 - z_new[1]) * _dG(g, 2)(z_new[0]) - 1.0
        out = (y, _f_ss(y, K, a, g), _eps_ss(y[0], y[1], y[2], K, g), jnp.linalg.eigvalsh(H)[0],
               lam_inst, ok)
        return jnp.where(ok, z_new, z), out

    _, out = jax.lax.scan(step, z0, alphas)
    return out


@eqx.filter_jit
def _solve_unspecialised(alpha, z0, K, g):
    z, res = _root(_U_eq, z0, (K, alpha, g))
    y = jnp.stack([z[0], z[0], z[1]])
    return z, res, _f_ss(y, K, alpha, g)


class StaticsBranch(eqx.Module):
    """A branch of site-symmetric stationary points of `beta f` (arrays along the branch).

    `kind` is 'unspecialised' (R = S, parametrised by alpha) or 'specialised' (R > S) /
    'anti' (R < S), parametrised by `D = R - S`. `min_eig_ss` is the smallest eigenvalue of the
    site-symmetric Hessian (> 0: local minimum within site symmetry). `converged` flags points
    whose Newton residual is below 1e-8.
    """

    kind: str = eqx.field(static=True)
    K: float
    alpha: jax.Array
    R: jax.Array
    S: jax.Array
    C: jax.Array
    beta_f: jax.Array
    eps_g: jax.Array
    min_eig_ss: jax.Array
    converged: jax.Array


def _alpha_grid(alpha_max, n):
    return jnp.concatenate([jnp.geomspace(1e-3, 1.0, 20), jnp.linspace(1.0, alpha_max, n)[1:]])


def unspecialised_branch(*, K, g, alphas) -> StaticsBranch:
    """The R = S branch at the given (increasing) `alphas`, by warm-started Newton from
    R = S = C = 0 at alpha = 0. `K` may be any float >= 1.

    Example:
        >>> b = jaxdyn.unspecialised_branch(K=2, g=jaxdyn.ReLU(), alphas=jnp.linspace(0.1, 6, 20))
    """
    g = _check_g(g)
    alphas = _check_alpha(alphas)
    y, f, eps, lmin, _, ok = _scan_unspecialised(alphas, jnp.zeros(2), jnp.asarray(float(K)), g)
    return StaticsBranch("unspecialised", float(K), alphas, y[:, 0], y[:, 1], y[:, 2], f, eps,
                         lmin, ok)


def _D_grid(kind, n=240, D_max=0.985):
    s = 1.0 if kind == "specialised" else -1.0
    small = np.geomspace(1e-6, 2e-2, n // 3, endpoint=False)
    big = np.linspace(2e-2, D_max, n - n // 3)
    return jnp.asarray(s * np.concatenate([small, big]))


def specialised_branch(*, K, g, kind: str = "specialised", Ds=None, transition=None):
    """The R > S (`kind='specialised'`) or R < S (`kind='anti'`) branch, continued in
    `D = R - S` from the bifurcation at `alpha_inst` (`D -> 0`). Returns a `StaticsBranch`
    whose `alpha` is solved for (it is not monotonic: the specialised branch of K >= 3 folds at
    `alpha_s`).

    Example:
        >>> b = jaxdyn.specialised_branch(K=2, g=jaxdyn.ReLU(), Ds=jnp.linspace(0.01, 0.9, 20))
    """
    g = _check_g(g)
    if kind not in ("specialised", "anti"):
        raise ValueError(f"kind must be 'specialised' or 'anti', got {kind!r}")
    if Ds is None:
        Ds = _D_grid(kind)
    Ds = jnp.asarray(Ds, float)
    if _concrete(Ds) and (np.any(np.asarray(Ds) == 0) or
                          np.any(np.sign(np.asarray(Ds)) != (1 if kind == "specialised" else -1))):
        raise ValueError("Ds must be nonzero with the sign of the branch (D = R - S)")
    Kf = jnp.asarray(float(K))
    if transition is None:
        r, C, a = _instability_point(Kf, g)
    else:
        r, C, a = transition.r_inst, transition.C_inst, transition.alpha_inst
    y0 = jnp.stack([jnp.asarray(r, float), jnp.asarray(C, float), jnp.asarray(a, float)])
    y, rsc, f, eps, lmin, ok = _scan_branch(Ds, y0, Kf, g)
    ok = np.cumprod(np.asarray(ok)).astype(bool)  # trust a warm-started branch up to its first failure
    return StaticsBranch(kind, float(K), y[:, 2], rsc[:, 0], rsc[:, 1], rsc[:, 2], f, eps, lmin,
                         jnp.asarray(ok))


# ------------------------------------------------------------------------------ transitions
def _inst_eq(z, args):
    K, g = args
    r, C, a = z
    u = _U_eq(jnp.stack([r, C]), (K, a, g))
    return jnp.stack([u[0], u[1], a * (1 - C) * _dG(g, 2)(r) - 1.0])


@eqx.filter_jit
def _solve_inst(z0, K, g):
    return _root(_inst_eq, z0, (K, g))


def _instability_point(K, g, alpha_max=None):
    """(r, C, alpha_inst) where the unspecialised branch loses stability (host driver)."""
    Kf = float(K)
    amax = 4 * np.pi * Kf * 3 if alpha_max is None else alpha_max
    alphas = jnp.asarray(np.concatenate([np.geomspace(1e-3, 1.0, 30),
                                         np.geomspace(1.0, amax, 400)[1:]]))
    y, f, eps, lmin, lam, ok = _scan_unspecialised(alphas, jnp.zeros(2), jnp.asarray(Kf), g)
    lam, ok = np.asarray(lam), np.asarray(ok)
    idx = np.nonzero((lam > 0) & ok)[0]
    if idx.size == 0:
        return np.nan, np.nan, np.inf
    i = idx[0]
    z0 = jnp.stack([y[i, 0], y[i, 2], alphas[i]])
    z, res = _solve_inst(z0, jnp.asarray(Kf), g)
    return float(z[0]), float(z[1]), float(z[2])


class Transition(eqx.Module):
    """Specialisation transition of the site-symmetric K = M system (see `specialisation_transition`).

    Fields: `K`; `alpha_inst` (R = S loses stability; `r_inst`, `C_inst` there); `alpha_s` (fold
    of the R > S branch; = alpha_inst when there is none); `alpha_c` (equal free energies of the
    R = S and R > S minima); `jump` (R - S of the specialised minimum at alpha_c; 0 for a
    continuous transition); `continuous`; `D_s` (R - S at the fold); the states at alpha_c
    (`spec_c` = (R, S, C), `unspec_c` = (r, r, C)) and their `eps_g_c` (unspecialised,
    specialised); achieved tolerances `tol_inst`, `tol_s`, `tol_c` (bounds on the alpha errors
    from the final brackets and Newton residuals).
    """

    K: float
    alpha_inst: float
    r_inst: float
    C_inst: float
    alpha_s: float
    D_s: float
    alpha_c: float
    jump: float
    continuous: bool
    spec_c: tuple
    unspec_c: tuple
    eps_g_c: tuple
    tol_inst: float
    tol_s: float
    tol_c: float

    def as_dict(self):
        return {k: (list(map(float, v)) if isinstance(v, tuple) else
                    (bool(v) if isinstance(v, (bool, np.bool_)) else float(v)))
                for k, v in self.__dict__.items()}


@eqx.filter_jit
def _branch_point_and_slope(D, y0, K, g):
    y, res = _solve_branch_point(D, y0, K, g)
    J = jax.jacfwd(_G_branch)(y, (D, K, g))
    GD = jax.jacfwd(lambda d: _G_branch(y, (d, K, g)))(D)
    dy = -jnp.linalg.solve(J, GD)
    m, C, a = y
    rsc = _to_rsc(D, m, C, K)
    return y, res, dy[2], _f_ss(rsc, K, a, g), rsc


def specialisation_transition(*, K, g, xtol: float = 1e-14) -> Transition:
    """alpha_inst, alpha_s, alpha_c and the jump of R - S of the K = M specialisation transition.

    Method: the unspecialised branch is followed in alpha to the zero of
    `alpha (1 - C) G''(r) - 1` (refined by Newton on the 3 x 3 system with stationarity); the
    R > S branch is followed in `D = R - S` with `(m, C, alpha)` as unknowns (a fold in alpha is
    regular in D); the fold is the zero of `d alpha / d D` (implicit function theorem; Brent's
    method to `xtol`), alpha_c the zero of `beta f_spec - beta f_unspec` along the branch.
    K may be any float >= 2 (the formulas are analytic in K); K = 1 has no transition.

    Example:
        >>> tr = jaxdyn.specialisation_transition(K=2, g=jaxdyn.ReLU())
        >>> round(tr.alpha_c, 2), tr.continuous   # (6.1..., True): paper 002 alpha_c(2) ~ 6.1
    """
    from scipy.optimize import brentq

    g = _check_g(g)
    if isinstance(K, bool) or not np.isfinite(K) or K < 2:
        raise ValueError(f"K must be >= 2 for a specialisation transition (K = 1: single_unit), got {K!r}")
    Kf = jnp.asarray(float(K))
    r_i, C_i, a_i = _instability_point(float(K), g)
    if not np.isfinite(a_i):
        raise ValueError(f"no instability of the unspecialised branch found for K = {K}")
    z, res_i = _solve_inst(jnp.array([r_i, C_i, a_i]), Kf, g)
    # alpha_inst error from the Newton residual, through the 3 x 3 Jacobian
    Ji = jax.jacfwd(_inst_eq)(z, (Kf, g))
    tol_inst = float(np.max(np.abs(np.linalg.solve(np.asarray(Ji), np.asarray(
        _inst_eq(z, (Kf, g))))))) + 4e-16 * a_i
    br = specialised_branch(K=float(K), g=g, kind="specialised",
                            transition=_Inst(r_i, C_i, a_i))
    ok = np.asarray(br.converged)
    Ds = np.asarray(_D_grid("specialised"))[ok]
    al = np.asarray(br.alpha)[ok]
    Y = np.stack([np.asarray(br.R), np.asarray(br.S), np.asarray(br.C)], 1)[ok]
    # warm starts (m, C, alpha) along the grid
    Kv = float(K)
    Yw = np.stack([(Y[:, 0] + (Kv - 1) * Y[:, 1]) / Kv, Y[:, 2], al], 1)

    def near(D):
        return jnp.asarray(Yw[np.argmin(np.abs(Ds - D))])

    i_min = int(np.argmin(al))
    unspec0 = jnp.array([r_i, C_i])

    def unspec_f(alpha):
        zz, res, f = _solve_unspecialised(jnp.asarray(alpha), unspec0, Kf, g)
        return zz, float(res), float(f)

    # no fold when alpha(D) never drops below alpha_inst beyond the noise of f_D / D at small D
    if al[i_min] > a_i * (1 - 1e-7):
        # supercritical pitchfork: continuous, alpha_s = alpha_c = alpha_inst
        zc = unspec_f(a_i)[0]
        eu = float(_eps_ss(zc[0], zc[0], zc[1], Kf, g))
        return Transition(float(K), a_i, r_i, C_i, a_i, 0.0, a_i, 0.0, True,
                          (r_i, r_i, C_i), (float(zc[0]), float(zc[0]), float(zc[1])), (eu, eu),
                          tol_inst, tol_inst, tol_inst)

    def slope(D):
        return float(_branch_point_and_slope(jnp.asarray(D), near(D), Kf, g)[2])

    i_min = max(i_min, 1)
    lo, hi = Ds[i_min - 1], Ds[min(i_min + 1, len(Ds) - 1)]
    D_s, rr = brentq(slope, lo, hi, xtol=xtol * max(1e-6, abs(lo)), rtol=1e-15, full_output=True)
    pt = _branch_point_and_slope(jnp.asarray(D_s), near(D_s), Kf, g)
    alpha_s = float(pt[0][2])
    a_lo = float(_branch_point_and_slope(jnp.asarray(D_s * (1 - 1e-12)), near(D_s), Kf, g)[0][2])
    tol_s = abs(a_lo - alpha_s) + float(pt[1]) * 10 + 4e-16 * alpha_s

    def delta(D):
        y, res, _, f_sp, _ = _branch_point_and_slope(jnp.asarray(D), near(D), Kf, g)
        return float(f_sp) - unspec_f(float(y[2]))[2]

    # free-energy difference on the stable part of the branch (alpha increasing from alpha_s),
    # the unspecialised partner followed along the same alphas in one scan
    n_all = len(ok)
    a_pad = np.full(n_all, al[i_min])  # fixed length: one compilation for every K
    a_pad[: len(al) - i_min] = al[i_min:]
    z_s = unspec_f(al[i_min])[0]
    yu, fu, _, _, _, oku = _scan_unspecialised(jnp.asarray(a_pad), z_s, Kf, g)
    fu = np.asarray(fu)[: len(al) - i_min]
    dvals = np.asarray(br.beta_f)[ok][i_min:] - fu
    dvals[~np.asarray(oku)[: len(al) - i_min]] = np.nan
    sign = np.nonzero((dvals[:-1] > 0) & (dvals[1:] <= 0))[0]
    if sign.size == 0:
        raise RuntimeError(f"no free-energy crossing found on the specialised branch (K = {K})")
    sign = sign + i_min
    j = sign[0]
    D_c = brentq(delta, Ds[j], Ds[j + 1], xtol=xtol, rtol=1e-15)
    y, res, dadD, f_sp, rsc = _branch_point_and_slope(jnp.asarray(D_c), near(D_c), Kf, g)
    alpha_c = float(y[2])
    zu, res_u, f_u = unspec_f(alpha_c)
    # error: D bracket (xtol) times d alpha / dD, plus the free-energy residual over the
    # difference of the slopes d(beta f)/d alpha = K eps_g of the two states
    eps_sp = float(_eps_ss(rsc[0], rsc[1], rsc[2], Kf, g))
    eps_u = float(_eps_ss(zu[0], zu[0], zu[1], Kf, g))
    dfa = abs(Kv * (eps_sp - eps_u))
    tol_c = abs(float(dadD)) * xtol * 2 + abs(float(f_sp) - f_u) / max(dfa, 1e-300) \
        + 4e-16 * alpha_c + float(res) * 10
    return Transition(float(K), a_i, r_i, C_i, alpha_s, float(D_s), alpha_c, float(D_c), False,
                      tuple(float(v) for v in rsc), (float(zu[0]), float(zu[0]), float(zu[1])),
                      (eps_u, eps_sp), tol_inst, tol_s, tol_c)


class _Inst:
    def __init__(self, r, C, a):
        self.r_inst, self.C_inst, self.alpha_inst = r, C, a


# ----------------------------------------------------------------------------- K -> infinity
def large_K_eps_g(R, g):
    """K -> infinity limit of eps_g on the branch `R_ii = R`, `S = (1 - R)/K`, `C = o(1/K)`:
    `eps_inf(R) = G(1) - G(R) - G'(0)(1 - R)`. ReLU: `1/4 - (sqrt(1-R^2) + R asin R)/(2 pi)`
    (even in R); erf: `1/3 - (2/pi) asin(R/2) - (1 - R)/pi`. R = 0 is the unspecialised state.

    Example:
        >>> float(jaxdyn.large_K_eps_g(0.0, jaxdyn.ReLU()))   # 1/4 - 1/(2 pi), the plateau
    """
    g = _check_g(g)
    R = jnp.asarray(R, float)
    G = _G(g)
    return G(jnp.ones_like(R)) - G(R) - _dG(g, 1)(jnp.zeros(())) * (1 - R)


@eqx.filter_jit
def _large_K_alpha(R, g):
    d1 = jnp.vectorize(_dG(g, 1))
    return R / ((1 - R**2) * (d1(R) - d1(jnp.zeros_like(R))))


@eqx.filter_jit
def _large_K_dalpha(R, g):
    return jax.grad(lambda r: _large_K_alpha(r, g))(R)


@eqx.filter_jit
def _large_K_dphi(R, g):
    a = _large_K_alpha(R, g)
    G = _G(g)
    eps = lambda r: G(jnp.ones_like(r)) - G(r) - _dG(g, 1)(jnp.zeros(())) * (1 - r)
    return a * (eps(R) - eps(jnp.zeros_like(R))) - 0.5 * jnp.log1p(-R**2)


class LargeKTransition(eqx.Module):
    """K -> infinity transition: `alpha_inst` (1/G''(0), inf if G''(0) = 0), `alpha_s` (fold of
    the R > 0 branch), `alpha_c` (equal free energies), `R_c` (jump of R at alpha_c), `continuous`,
    tolerances `tol_s`, `tol_c`."""

    alpha_inst: float
    alpha_s: float
    alpha_c: float
    R_c: float
    continuous: bool
    tol_s: float
    tol_c: float

    def as_dict(self):
        return {k: (bool(v) if isinstance(v, (bool, np.bool_)) else float(v))
                for k, v in self.__dict__.items()}


def large_K_transition(*, g) -> LargeKTransition:
    """The K -> infinity specialisation transition from `beta f / K = alpha eps_inf(R) - 1/2
    ln(1 - R^2)` (see `large_K_eps_g`). ReLU: alpha_c = 2 pi, continuous; erf: first order with
    the literature's alpha_s ~ 60.99, alpha_c ~ 69.09 (Biehl, Schloesser & Ahr 1998).

    Example:
        >>> round(jaxdyn.large_K_transition(g=jaxdyn.ReLU()).alpha_c, 6)   # 2 pi
    """
    from scipy.optimize import brentq

    g = _check_g(g)
    d2 = float(_dG(g, 2)(jnp.zeros(())))
    a_inst = 1.0 / d2 if d2 > 0 else np.inf
    Rg = np.linspace(1e-4, 0.999, 4000)
    al = np.asarray(_large_K_alpha(jnp.asarray(Rg), g))
    i = int(np.argmin(al))
    if i == 0:
        return LargeKTransition(a_inst, a_inst, a_inst, 0.0, True, 1e-12 * a_inst, 1e-12 * a_inst)
    R_s = brentq(lambda R: float(_large_K_dalpha(jnp.asarray(R), g)), Rg[i - 1], Rg[i + 1],
                 xtol=1e-15, rtol=1e-15)
    alpha_s = float(_large_K_alpha(jnp.asarray(R_s), g))
    dphi = lambda R: float(_large_K_dphi(jnp.asarray(R), g))
    Rs = Rg[i:]
    d = np.asarray(_large_K_dphi(jnp.asarray(Rs), g))
    k = np.nonzero((d[:-1] > 0) & (d[1:] <= 0))[0][0]
    R_c = brentq(dphi, Rs[k], Rs[k + 1], xtol=1e-15, rtol=1e-15)
    alpha_c = float(_large_K_alpha(jnp.asarray(R_c), g))
    tol_c = abs(float(_large_K_dalpha(jnp.asarray(R_c), g))) * 4e-15 + 1e-14 * alpha_c
    return LargeKTransition(a_inst, alpha_s, alpha_c, float(R_c), False, 1e-14 * alpha_s, tol_c)
