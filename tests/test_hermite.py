"""Hermite coefficients and paper 001's series for I4: closed forms vs quadrature, the series vs
exact I4 (ReLU, erf) inside the trusted region to tight tolerance, and the convergence
diagnostic."""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd
from jaxdyn._averages import hermite as H


def relu_i4_exact(C):
    """The exact ReLU I4 (itself checked against Monte Carlo and an independent NumPy reference in
    tests/test_relu_moments.py)."""
    from jaxdyn._averages.relu_moments import relu_i4

    return np.asarray(relu_i4(jnp.asarray(C)))


def equi(r):
    return np.full((4, 4), r) + (1 - r) * np.eye(4)


def random_corr(rng, n, k_lo=4, k_hi=25):
    out = []
    while len(out) < n:
        A = rng.normal(size=(4, rng.integers(k_lo, k_hi))) * np.exp(rng.normal(size=(1, 1)))
        C = A @ A.T
        d = np.sqrt(np.diag(C))
        C = C / np.outer(d, d)
        if np.linalg.eigvalsh(C)[0] > 1e-3:
            out.append(C)
    return np.array(out)


# ------------------------------------------------------------------------------ coefficients
def test_relu_coefficients_closed_form():
    c = np.asarray(jd.hermite_coefficients(jd.ReLU(), 6))
    r = 1 / np.sqrt(2 * np.pi)
    np.testing.assert_allclose(c, [r, 0.5, r, 0, -r, 0, 3 * r], atol=1e-15)
    # <He_n, g'> = <He_{n+1}, g>
    cd = jd.hermite_coefficients(jd.ReLU(), 5, derivative=True)
    np.testing.assert_allclose(cd, c[1:], atol=1e-15)


@pytest.mark.parametrize("g", [jd.ReLU(), jd.LeakyReLU(0.2), jd.Abs(), jd.Linear(), jd.Erf()])
def test_closed_form_coefficients_vs_quadrature(g):
    """Closed forms (ReLU type, erf) against direct quadrature of the same function (user route)."""
    user = jd.Activation(g.__call__)
    norm = np.sqrt([math.factorial(n) for n in range(17)])
    for s in (0.4, 1.0, 2.5):
        for der in (False, True):
            a = jd.hermite_coefficients(g, 16, s, derivative=der)
            b = jd.hermite_coefficients(user, 16, s, derivative=der)
            assert np.max(np.abs(a - b) / norm) < 1e-13


def test_quadrature_coefficients_vs_direct_integral():
    """tanh coefficients against scipy adaptive quadrature; error estimate is small."""
    from scipy.integrate import quad
    from scipy.special import eval_hermitenorm

    c = np.asarray(jd.hermite_coefficients(jd.Tanh(), 9, 1.7))
    for n in range(10):
        f = lambda x: (eval_hermitenorm(n, x) * np.tanh(1.7 * x)
                       * np.exp(-x * x / 2) / np.sqrt(2 * np.pi))
        ref = quad(f, -np.inf, np.inf, epsabs=1e-14, limit=200)[0]
        assert abs(c[n] - ref) < 1e-12 * np.sqrt(math.factorial(n))
    for g in (jd.Tanh(), jd.Sigmoid(), jd.GELU(), jd.Swish()):
        for s in (0.3, 1.0, 3.0):
            assert float(jd.hermite_quadrature_error(g, 16, s).max()) < 1e-11
    # a coarse rule on a function kinked away from 0 is detected
    hard = jd.Activation(lambda x: jnp.clip(x, -1.0, 1.0))
    assert float(jd.hermite_quadrature_error(hard, 10, n_half=16).max()) > 1e-6


# ------------------------------------------------------------------------------------ series
def test_series_matches_flat_index_set_sum():
    """The bilinear contraction and the staged one equal the plain sum over the index set."""
    rng = np.random.default_rng(0)
    C = random_corr(rng, 3, 10, 20)
    N = 8
    ix = H.hermite_index_set(N)
    E, n = ix["E"], ix["n"]
    c = np.asarray(jd.hermite_coefficients(jd.ReLU(), N + 1))
    cd = c[1:]
    coef = ix["inv_fact"] * cd[n[:, 0]] * cd[n[:, 1]] * c[n[:, 2]] * c[n[:, 3]]
    iu = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    for Ck in C:
        rho = np.array([Ck[i, j] for i, j in iu])
        ref = np.sum(coef * np.prod(rho[None, :] ** E, axis=1))
        bil = float(H.hermite_i4(Ck, (jd.ReLU(),) * 4, N, warn=False))
        staged = float(H._series_staged(jnp.asarray(rho), jnp.asarray(
            np.stack([np.r_[cd[:N], 0], np.r_[cd[:N], 0], c[: N + 1], c[: N + 1]])), N))
        assert abs(bil - ref) < 1e-14 and abs(staged - ref) < 1e-14
    # size of the admissible set (brute-force count over all 6-tuples)
    assert [len(H.hermite_index_set(k)["E"]) for k in (6, 10, 14)] == [2352, 31460, 190400]


# orders 6 and 14 in the extended set (10 s each; the default run checks order 10)
@pytest.mark.parametrize("order", [pytest.param(6, marks=pytest.mark.extended), 10,
                                   pytest.param(14, marks=pytest.mark.extended)])
def test_relu_series_vs_exact_in_region(order):
    """Inside the trusted region (tol 1e-6) the ReLU series is within 1e-6 of the exact I4, on
    matrices not used to set the region (fresh seed), with non-unit variances (scaled by s3 s4)."""
    rng = np.random.default_rng(100 + order)
    C = random_corr(rng, 400)
    C = np.concatenate([C, [equi(r) for r in np.arange(0.02, 0.3, 0.02)]])
    inside = np.asarray(jd.hermite_in_region(C, order))
    assert inside.sum() >= 15
    C = C[inside]
    s = np.exp(rng.uniform(-0.5, 0.5, size=(len(C), 4)))
    Cs = C * s[:, :, None] * s[:, None, :]
    ser = np.asarray(jd.I4(Cs, jd.ReLU(), method="hermite", order=order))
    err = np.abs(ser - relu_i4_exact(Cs)) / (s[:, 2] * s[:, 3])
    assert err.max() < 1e-6


def test_relu_series_known_errors():
    """Independently computed figures (order 10, equicorrelation 0.3 / 0.5 / 0.7)."""
    C = np.array([equi(r) for r in (0.3, 0.5, 0.7)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jd.HermiteConvergenceWarning)
        err = np.abs(np.asarray(jd.I4(C, jd.ReLU(), method="hermite", order=10)) - relu_i4_exact(C))
    np.testing.assert_allclose(err, [4e-8, 4e-5, 2e-2], rtol=0.35)


@pytest.mark.parametrize("order", [6, 10, 14])
def test_erf_series_vs_closed_form_in_region(order):
    rng = np.random.default_rng(200 + order)
    C = random_corr(rng, 400)
    C = C[np.asarray(jd.hermite_in_region(C, order))]
    ser = jd.I4(C, jd.Erf(), method="hermite", order=order)
    assert np.abs(np.asarray(ser - jd.I4(C, jd.Erf()))).max() < 1e-6
    # non-unit variances: coefficients per covariance (closed form in the variance). The region
    # is measured at unit variances; erf(s u / sqrt 2) with s != 1 converges a little differently
    # (worst seen: 1.3e-6 at order 6 for variances within e^(+-0.6)), hence the looser bound.
    s = np.exp(rng.uniform(-0.3, 0.3, size=(len(C), 4)))
    Cs = C * s[:, :, None] * s[:, None, :]
    ser = jd.I4(Cs, jd.Erf(), method="hermite", order=order)
    assert np.abs(np.asarray(ser - jd.I4(Cs, jd.Erf()))).max() < 5e-6


def test_diagnostic_fires_outside_and_error_is_real():
    C = equi(0.7)
    assert not bool(jd.hermite_in_region(C, 14))
    with pytest.warns(jd.HermiteConvergenceWarning):
        v14 = float(jd.I4(C, jd.ReLU(), method="hermite", order=14))
    assert abs(v14 - float(relu_i4_exact(C))) > 0.1  # the series really fails there
    with pytest.warns(jd.HermiteConvergenceWarning):
        jd.I4(equi(0.5), jd.Tanh())  # generic I4 falls back to the series and warns too
    # inside: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", jd.HermiteConvergenceWarning)
        jd.I4(equi(0.15), jd.ReLU(), method="hermite", order=10)
    # under jit: a bool flag per covariance, no warning
    covs = jnp.asarray(np.array([equi(0.1), equi(0.5), equi(0.9)]))
    flag = jax.jit(lambda c: jd.hermite_in_region(c, 10))(covs)
    assert flag.dtype == jnp.bool_ and flag.tolist() == [True, False, False]
    assert jd.hermite_in_region(covs, 10, tol=1e-4).tolist() == [True, False, False]
    with pytest.raises(ValueError):
        jd.hermite_in_region(covs, 10, tol=1e-3)


def test_series_jit_vmap_grad():
    rng = np.random.default_rng(3)
    C = jnp.asarray(random_corr(rng, 6, 12, 20).reshape(2, 3, 4, 4) * 1.3)
    for g in (jd.ReLU(), jd.Tanh()):
        f = jax.jit(lambda c: jd.I4(c, g, method="hermite", order=8))
        batched = f(C)
        assert batched.shape == (2, 3)
        np.testing.assert_allclose(jax.vmap(f)(C), batched, rtol=1e-13, atol=1e-15)
        grad = jax.grad(lambda c: f(c).sum())(C)
        assert bool(jnp.all(jnp.isfinite(grad)))
        # directional derivative vs central finite difference
        V = jnp.asarray(rng.normal(size=(4, 4)))
        V = 0.5 * (V + V.T)
        h = 1e-5
        fd = (f(C + h * V) - f(C - h * V)).sum() / (2 * h)
        np.testing.assert_allclose(jnp.sum(grad * V), fd, rtol=1e-6)
