"""Exact moments E[z_p z_q prod_k theta(z_k)] (`jaxdyn._averages.relu_moments`): Monte Carlo, independent
quadrature references, closed forms, singular covariances (values, limits, gradients), batching."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy.special import ndtr

from jaxdyn._averages.relu_moments import relu_i4, relu_theta_moment


TWO_PI = 2 * np.pi


# ------------------------------------------------------------------------------------ helpers
@functools.lru_cache(maxsize=None)
def _jitted(kind, n, p, q, tol=None):
    kw = {} if tol is None else {"tol": tol, "tol_mult": tol}
    f = lambda c: relu_theta_moment(c, p, q, **kw)
    if kind == "grad":
        f = jax.grad(f)
    elif kind == "jacfwd":
        f = jax.jacfwd(f)
    elif kind == "vmap_grad":
        f = jax.vmap(jax.grad(f))
    return jax.jit(f)


def _mom(C, p, q, tol=None):
    C = np.asarray(C, float)
    return float(_jitted("value", C.shape[-1], p, q, tol)(C))


def _random_cov(rng, n, extra=2):
    A = rng.normal(size=(n, n + extra))
    C = A @ A.T
    d = np.sqrt(np.diag(C))
    sd = rng.uniform(0.4, 2.5, n)  # non-unit variances
    return C / np.outer(d, d) * np.outer(sd, sd)


def _mc(C, pairs, rng, n_samples=1_000_000):
    """Monte Carlo estimates and standard errors of E[z_p z_q prod theta] for several (p, q)."""
    n = C.shape[0]
    w, V = np.linalg.eigh(C)
    L = V * np.sqrt(np.clip(w, 0, None))
    z = rng.standard_normal((n_samples, n)) @ L.T
    ind = np.all(z > 0, axis=1)
    out = {}
    for p, q in pairs:
        x = z[:, p] * z[:, q] * ind
        out[(p, q)] = (x.mean(), x.std() / np.sqrt(n_samples))
    return out


def _onefactor(lam, sd, p, q):
    """E[z_p z_q prod theta] for z_k = sd_k (lam_k w + sqrt(1 - lam_k^2) e_k), by 1-D quadrature
    over the common factor w (the variables are independent given w)."""
    lam = np.asarray(lam, float)
    s = np.sqrt(np.clip(1 - lam**2, 0, None))
    n = len(lam)

    def m(k, w, order):
        mu, sg = lam[k] * w, s[k]
        if sg == 0:
            return float(mu > 0) * mu**order
        a = mu / sg
        P, ph = ndtr(a), np.exp(-a * a / 2) / np.sqrt(2 * np.pi)
        if order == 0:
            return P
        if order == 1:
            return mu * P + sg * ph
        return (mu * mu + sg * sg) * P + mu * sg * ph

    def f(w):
        out = np.exp(-w * w / 2) / np.sqrt(2 * np.pi)
        for k in range(n):
            out = out * m(k, w, int(k == p) + int(k == q))
        return out

    sc = [s[k] / abs(lam[k]) for k in range(n) if s[k] > 0 and lam[k] != 0]
    br = sorted({0.0, 40.0} | {c * x for x in sc for c in (1, 8) if c * x < 40})
    br = sorted(set([-b for b in br] + br))
    v = sum(
        integrate.quad(f, a, b, epsabs=1e-16, epsrel=1e-13, limit=200)[0]
        for a, b in zip(br[:-1], br[1:])
    )
    return v * sd[p] * sd[q]


def _onefactor_cov(lam, sd):
    lam = np.asarray(lam, float)
    C = np.outer(lam, lam)
    np.fill_diagonal(C, 1.0)
    return C * np.outer(sd, sd)


def _i2(Q, T, R):
    """E[relu(x) relu(y)] for Var x = Q, Var y = T, Cov = R (paper 002)."""
    D = np.sqrt(max(Q * T - R * R, 0.0))
    return R / 4 + (D + R * np.arcsin(np.clip(R / np.sqrt(Q * T), -1, 1))) / TWO_PI


def _theta_relu(Caa, Cbb, Cab):
    """E[theta(a) relu(b)] = sd_b (1 + rho) / (2 sqrt(2 pi))."""
    return np.sqrt(Cbb) * (1 + Cab / np.sqrt(Caa * Cbb)) / (2 * np.sqrt(TWO_PI))


def _sym(E):
    return 0.5 * (E + E.T)


# ------------------------------------------------------------------------------ Monte Carlo
PAIRS = {1: [(0, 0)], 2: [(0, 1), (1, 1), (0, 0)], 3: [(1, 2), (2, 2), (0, 2)], 4: [(2, 3), (3, 3), (0, 1), (1, 2)]}


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_monte_carlo_random_covariances(n):
    rng = np.random.default_rng(100 + n)
    worst = 0.0
    for _ in range(10):
        C = _random_cov(rng, n)
        mc = _mc(C, PAIRS[n], rng)
        for (p, q), (m, se) in mc.items():
            v = _mom(C, p, q)
            assert abs(v - m) < 5 * se, (n, p, q, v, m, se)
            worst = max(worst, abs(v - m) / se)
    assert worst > 0  # the comparison really ran


# ------------------------------------------------------------- exact (quadrature) references
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_one_factor_quadrature_reference(n):
    rng = np.random.default_rng(200 + n)
    for _ in range(4):
        lam = rng.uniform(-0.97, 0.97, n)
        sd = rng.uniform(0.4, 2.5, n)
        C = _onefactor_cov(lam, sd)
        for p, q in PAIRS[n]:
            assert abs(_mom(C, p, q) - _onefactor(lam, sd, p, q)) < 1e-12


def _numpy_reference():
    import relu_i4_reference  # tests/relu_i4_reference.py: independent of jaxdyn

    return relu_i4_reference


def test_generic_4d_against_independent_numpy_reference(rng):
    ref = _numpy_reference()
    Cs = np.array([_random_cov(rng, 4) for _ in range(30)])
    s = np.sqrt(np.einsum("...ii->...i", Cs))
    corr = Cs / s[:, :, None] / s[:, None, :]
    expect = ref.relu_i4_reference(corr, 400) * s[:, 2] * s[:, 3]
    got = np.asarray(_jitted("value", 4, 2, 3)(Cs))
    np.testing.assert_allclose(got, expect, rtol=0, atol=1e-12)


def test_equicorrelated_against_one_dimensional_integral():
    ref = _numpy_reference()
    for r in (0.0, 0.3, 0.6, 0.9):
        C = np.full((4, 4), r)
        np.fill_diagonal(C, 1.0)
        assert abs(_mom(C, 2, 3) - ref.equicorrelated_relu_i4(r)) < 1e-12


# ---------------------------------------------------------------------- special cases
def test_block_diagonal_factorises(rng):
    for _ in range(5):
        a, b = _random_cov(rng, 2), _random_cov(rng, 2)
        v1, v2 = rng.uniform(0.5, 2, 2)
        # blocks {0}, {1}, {2, 3}: E[theta0] E[theta1] E[relu relu]
        C = np.zeros((4, 4))
        C[0, 0], C[1, 1], C[2:, 2:] = v1, v2, a
        assert abs(_mom(C, 2, 3) - 0.25 * _i2(a[0, 0], a[1, 1], a[0, 1])) < 1e-14
        # blocks {0, 2}, {1, 3}: E[theta0 relu2] E[theta1 relu3]
        C = np.zeros((4, 4))
        C[np.ix_([0, 2], [0, 2])], C[np.ix_([1, 3], [1, 3])] = a, b
        expect = _theta_relu(a[0, 0], a[1, 1], a[0, 1]) * _theta_relu(b[0, 0], b[1, 1], b[0, 1])
        assert abs(_mom(C, 2, 3) - expect) < 1e-14
        # blocks {0, 1}, {2, 3} with p = q = 3: P(z0, z1 > 0) E[z3^2 theta2 theta3]
        C = np.zeros((4, 4))
        C[:2, :2], C[2:, 2:] = a, b
        P01 = 0.25 + np.arcsin(a[0, 1] / np.sqrt(a[0, 0] * a[1, 1])) / TWO_PI
        assert abs(_mom(C, 3, 3) - P01 * _mom(b, 1, 1)) < 1e-14
    assert abs(float(relu_i4(jnp.eye(4))) - 0.25 / TWO_PI) < 1e-16


def test_k_m_1_closed_forms(rng):
    for _ in range(10):
        C = _random_cov(rng, 2)
        Q, T, R = C[0, 0], C[1, 1], C[0, 1]
        rho, D = R / np.sqrt(Q * T), np.sqrt(Q * T - R * R)
        yy = T * (0.25 + np.arcsin(rho) / TWO_PI) + R * D / (TWO_PI * Q)
        xy = R / 4 + (D + R * np.arcsin(rho)) / TWO_PI
        assert abs(_mom(C, 1, 1) - yy) < 1e-14
        assert abs(_mom(C, 0, 1) - xy) < 1e-14
        assert abs(_mom(C[:1, :1], 0, 0) - Q / 2) < 1e-15


# ------------------------------------------------------------------- singular covariances
def _vectors(rng, k, dim=6):
    return rng.normal(size=(k, dim))


def _singular_cases(rng):
    """(name, singular C, p, q, reduced C, reduced p, reduced q, factor): value = factor * reduced."""
    cases = []
    A = _vectors(rng, 4)
    A[1] = A[0]  # two identical indicator units (student i = student k)
    C = A @ A.T
    cases.append(("identical 0=1", C, 2, 3, C[np.ix_([0, 2, 3], [0, 2, 3])], 1, 2, 1.0))
    A = _vectors(rng, 4)
    A[2] = 1.7 * A[0]  # teacher collinear with a student
    C = A @ A.T
    cases.append(("collinear z2=1.7 z0", C, 2, 3, C[np.ix_([0, 1, 3], [0, 1, 3])], 0, 2, 1.7))
    a, v = np.array([1.0, 1.3, 0.8, 1.1]), 1.7
    C = v * np.outer(a, a)  # all four identical up to positive scales: z_k = a_k z
    cases.append(("all identical", C, 2, 3, np.array([[v]]), 0, 0, a[2] * a[3]))
    A = _vectors(rng, 4)
    A[3] = 0.6 * A[2]  # relu-relu pair
    C = A @ A.T
    cases.append(("collinear z3=0.6 z2", C, 2, 3, C[:3, :3], 2, 2, 0.6))
    A = _vectors(rng, 4)
    A[2], A[3] = 1.3 * A[0], 0.8 * A[1]  # two pairs (perfect learning, K = M = 2)
    C = A @ A.T
    cases.append(("two pairs", C, 2, 3, C[:2, :2], 0, 1, 1.3 * 0.8))
    A = _vectors(rng, 3)
    A[1] = 2.0 * A[0]
    C = A @ A.T
    cases.append(("n=3 pair", C, 1, 2, C[np.ix_([0, 2], [0, 2])], 0, 1, 2.0))
    return cases


def test_singular_values_reduced_problem_and_monte_carlo(rng):
    for name, C, p, q, Cr, pr, qr, fac in _singular_cases(rng):
        v = _mom(C, p, q)
        reduced = fac * _mom(Cr, pr, qr)
        assert np.isfinite(v)
        assert abs(v - reduced) < 1e-13 * max(1.0, abs(v)), name
        m, se = _mc(Cr, [(pr, qr)], rng)[(pr, qr)]
        assert abs(v - fac * m) < 5 * fac * se, name
    C = 1.37 * np.ones((4, 4))  # four identical variables: E[z^2 theta(z)] = C / 2
    for p, q in [(2, 3), (0, 0), (1, 3)]:
        assert abs(_mom(C, p, q) - 1.37 / 2) < 1e-15


def test_anti_collinear_and_rho_pm1_pairs(rng):
    A = _vectors(rng, 4)
    A[1] = -0.7 * A[0]
    C = A @ A.T
    for p, q in [(2, 3), (0, 1), (1, 1)]:
        assert _mom(C, p, q) == 0.0
    C2 = np.array([[1.0, -1.0], [-1.0, 1.0]]) * 1.5
    assert _mom(C2, 0, 1) == 0.0 and _mom(C2, 1, 1) == 0.0
    C2 = np.array([[1.0, 1.0], [1.0, 1.0]]) * 1.5  # rho = +1: E[z^2 theta] = 0.75
    assert abs(_mom(C2, 0, 1) - 0.75) < 1e-15 and abs(_mom(C2, 1, 1) - 0.75) < 1e-15
    # K = M = 1 closed forms at rho = +1
    assert abs(_mom(C2, 0, 1) - _i2(1.5, 1.5, 1.5)) < 1e-15


def test_singular_values_are_limits_of_regular_ones(rng):
    A = _vectors(rng, 4)
    A[1] = -0.7 * A[0]
    anti = ("anti-collinear", A @ A.T, 2, 3)
    cases = [(c[0], c[1], c[2], c[3]) for c in _singular_cases(rng)] + [anti]
    B = rng.normal(size=(4, 4))
    for name, C, p, q in cases:
        n = C.shape[0]
        E = (B[:n, :n] @ B[:n, :n].T + np.eye(n)) * np.sqrt(np.outer(np.diag(C), np.diag(C)))
        v0 = _mom(C, p, q)
        diffs = np.array([abs(_mom(C + t * E, p, q) - v0) for t in (1e-2, 1e-4, 1e-6)])
        # |f(C + t E) - f(C)| <= K sqrt(t) (or faster), K fixed from the first point
        K = diffs[0] / 1e-1
        assert np.all(diffs <= 1.5 * K * np.sqrt([1e-2, 1e-4, 1e-6]) + 1e-12), (name, diffs)
        assert diffs[2] < 1e-2 * diffs[0] + 1e-12, (name, diffs)


def _planar(A, p, q):
    """E[z_p z_q prod theta] for z = A w, w ~ N(0, I_2) (rank 2): an integral over the wedge."""
    phi = np.arctan2(A[:, 1], A[:, 0])
    br = np.sort(np.mod(np.concatenate([phi + np.pi / 2, phi - np.pi / 2]), 2 * np.pi))
    br = np.concatenate([[0.0], br, [2 * np.pi]])

    def f(th):
        z = A @ np.array([np.cos(th), np.sin(th)])
        return z[p] * z[q] * float(np.all(z > 0))

    segs = [(a, b) for a, b in zip(br[:-1], br[1:]) if b > a]
    return sum(integrate.quad(f, a, b, epsabs=1e-15, epsrel=1e-13)[0] for a, b in segs) / np.pi


def test_rank_deficient_without_collinear_pairs(rng):
    """Four variables in a plane (rank 2, no two collinear: e.g. students in the span of two
    teachers) and rank 3: exact, continuous, finite gradients."""
    B = rng.normal(size=(4, 4))
    E = B @ B.T
    for _ in range(4):
        A = rng.normal(size=(4, 2))
        A[:, 0] = np.abs(A[:, 0]) + 0.2  # mostly non-empty wedges
        C = A @ A.T
        for p, q in [(2, 3), (3, 3)]:
            v = _mom(C, p, q)
            assert abs(v - _planar(A, p, q)) < 1e-12
            diffs = [abs(_mom(C + t * E, p, q) - v) for t in (1e-4, 1e-6)]
            assert diffs[1] < 0.05 * diffs[0] + 1e-12
            assert np.all(np.isfinite(_grad(C, p, q)))
    A = rng.normal(size=(4, 3))
    C = A @ A.T
    mc = _mc(C, [(2, 3), (3, 3)], rng)
    for (p, q), (m, se) in mc.items():
        assert abs(_mom(C, p, q) - m) < 5 * se


# --------------------------------------------------------------------------- gradients
def test_gradients_match_central_differences_at_regular_points(rng):
    h = 1e-5
    for n in (1, 2, 3, 4):
        for _ in range(2 if n < 4 else 3):
            C = _random_cov(rng, n)
            for p, q in PAIRS[n][: (2 if n == 4 else 1)]:
                g = _grad(C, p, q)
                for a, b in itertools.combinations_with_replacement(range(n), 2):
                    E = np.zeros((n, n))
                    E[a, b] = E[b, a] = 1.0
                    fd = (_mom(C + h * E, p, q) - _mom(C - h * E, p, q)) / (2 * h)
                    assert abs(np.sum(g * E) - fd) < 1e-6 * max(1.0, abs(fd)), (n, p, q, a, b)


def _grad(C, p, q, tol=None):
    C = np.asarray(C, float)
    return np.asarray(_jitted("grad", C.shape[-1], p, q, tol)(C))


def test_gradients_finite_at_singular_points(rng):
    for name, C, p, q, *_ in _singular_cases(rng):
        g = _grad(C, p, q)
        J = np.asarray(_jitted("jacfwd", C.shape[-1], p, q)(C))
        assert np.all(np.isfinite(g)) and np.all(np.isfinite(J)), name
        np.testing.assert_allclose(g, J, rtol=1e-12, atol=1e-14)
        # jit and a batch containing the singular matrix
        gb = _jitted("vmap_grad", C.shape[-1], p, q)(np.stack([C, C]))
        assert np.all(np.isfinite(np.asarray(gb))), name
    A = _vectors(rng, 4)
    A[1] = -0.7 * A[0]
    assert np.all(np.isfinite(_grad(A @ A.T, 2, 3)))


def test_gradients_along_directions_that_keep_the_singularity(rng):
    """Moving the underlying vectors with the collinearity kept (z_l = c z_k): one-sided and
    central differences agree with grad . E (the function is smooth along this face)."""
    for name, C, p, q, *_ in _singular_cases(rng):
        n = C.shape[0]
        w, V = np.linalg.eigh(C)
        A = V * np.sqrt(np.clip(w, 0, None))  # C = A A^T
        # keep every linear relation between rows: perturb the factor on its row space
        dA = A @ rng.normal(size=(n, n)) * 0.3
        E = dA @ A.T + A @ dA.T
        g = _grad(C, p, q)
        h = 1e-6
        Cp = (A + h * dA) @ (A + h * dA).T
        fd = (_mom(Cp, p, q) - _mom(C, p, q)) / h
        assert abs(np.sum(g * E) - fd) < 1e-5 * max(1.0, abs(fd)), (name, np.sum(g * E), fd)


def test_gradients_equal_one_sided_derivative_when_opening_a_collinear_pair(rng):
    """Opening a collinear pair that contains a multiplier (z_p = c z_k): the one-sided derivative
    along C + t E (E positive definite) is finite, and the gradient at the singular point equals it
    and the limit of the gradients from regular matrices."""
    B = rng.normal(size=(4, 4))
    E = _sym(B @ B.T + np.eye(4))
    for name, C, p, q, *_ in _singular_cases(rng):
        if name in ("identical 0=1", "all identical"):
            continue  # a pure-indicator pair: the one-sided derivative is infinite
        n = C.shape[0]
        En = E[:n, :n]
        g = np.sum(_grad(C, p, q) * En)
        f0 = _mom(C, p, q)
        # one-sided differences d(t) = g + a sqrt(t) + O(t): finite, extrapolated in sqrt(t)
        d = [(_mom(C + t * En, p, q) - f0) / t for t in (1e-4, 1e-5)]
        r = np.sqrt(10.0)
        d0 = (r * d[1] - d[0]) / (r - 1)
        assert abs(g - d0) < 1e-5 * max(1.0, abs(g)), (name, g, d)
        # limit of gradients (unmerged formula at C + t D), Richardson in sqrt(t)
        D = np.diag(np.diag(C))
        gl = [np.sum(_grad(C + t * D, p, q, tol=0.0) * En) for t in (4e-5, 1e-5)]
        assert abs(g - (2 * gl[1] - gl[0])) < 1e-4 * max(1.0, abs(g)), (name, g, gl)


# -------------------------------------------------------------------------------- batching
def test_vmap_jit_batch_of_1000(rng):
    A = rng.normal(size=(1000, 4, 6))
    C = A @ np.swapaxes(A, -1, -2)
    A[:10, 1] = A[:10, 0]  # a few singular ones in the batch
    A[10:20, 2] = 1.7 * A[10:20, 0]
    C = jnp.asarray(A @ np.swapaxes(A, -1, -2))
    batched = np.asarray(jax.jit(relu_i4)(C))
    vmapped = np.asarray(jax.jit(jax.vmap(relu_i4))(C))
    np.testing.assert_allclose(batched, vmapped, rtol=1e-14, atol=1e-15)
    for i in (0, 15, 500, 999):
        assert abs(batched[i] - _mom(C[i], 2, 3)) < 1e-14
    assert np.all(np.isfinite(batched))
    g = np.asarray(jax.jit(jax.grad(lambda c: relu_i4(c).sum()))(C))
    assert np.all(np.isfinite(g))
    # leading batch axes of any shape
    C2 = C[:6, :2, :2].reshape(2, 3, 2, 2)
    np.testing.assert_allclose(
        np.asarray(relu_theta_moment(C2, 0, 1)).ravel(), [_mom(c, 0, 1) for c in C[:6, :2, :2]], rtol=1e-14
    )


def test_input_validation():
    with pytest.raises(ValueError):
        relu_theta_moment(jnp.eye(5), 0, 1)
    with pytest.raises(ValueError):
        relu_theta_moment(jnp.eye(3), 0, 3)
    with pytest.raises(ValueError):
        relu_i4(jnp.eye(3))
