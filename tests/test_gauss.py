"""Closed-form Gaussian averages (ReLU I2/I3/J2, erf I2/I3/I4/J2, linear) against Monte Carlo,
and the finiteness and correctness of ReLU derivatives at singular covariances."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf as sp_erf

import jaxdyn as jd

from helpers import directional_difference, mc_mean, random_covariances


N_MC = 1_000_000

ACTS = {
    "relu": (jd.ReLU(), lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(float)),
    "erf": (jd.Erf(), lambda x: sp_erf(x / np.sqrt(2)), lambda x: np.sqrt(2 / np.pi) * np.exp(-x**2 / 2)),
    "linear": (jd.Linear(), lambda x: x, lambda x: np.ones_like(x)),
}


def random_covs(rng, n, count=10):
    """Random covariances with non-unit variances (between ~0.2 and ~4)."""
    return random_covariances(rng, n, count)


def mc(cov, fn, rng, n=N_MC):
    z = rng.normal(size=(n, cov.shape[0])) @ np.linalg.cholesky(cov + 1e-15 * np.eye(len(cov))).T
    return mc_mean(fn(z))


@pytest.mark.parametrize("name", ["relu", "erf", "linear"])
def test_I2_I3_J2_vs_monte_carlo(name, rng):
    g, f, df = ACTS[name]
    for C in random_covs(rng, 3, 10):
        C2 = C[:2, :2]
        ref, se = mc(C2, lambda z: f(z[:, 0]) * f(z[:, 1]), rng)
        assert abs(float(jd.I2(C2, g)) - ref) < 5 * se + 1e-12
        ref, se = mc(C2, lambda z: df(z[:, 0]) * df(z[:, 1]), rng)
        assert abs(float(jd.J2(C2, g)) - ref) < 5 * se + 1e-12
        ref, se = mc(C, lambda z: df(z[:, 0]) * z[:, 1] * f(z[:, 2]), rng)
        assert abs(float(jd.I3(C, g)) - ref) < 5 * se + 1e-12


@pytest.mark.parametrize("name", ["erf", "linear"])
def test_I4_closed_forms_vs_monte_carlo(name, rng):
    g, f, df = ACTS[name]
    covs = random_covs(rng, 4, 10)
    vals = jd.I4(covs, g)  # batched
    for C, val in zip(covs, np.asarray(vals)):
        ref, se = mc(C, lambda z: df(z[:, 0]) * df(z[:, 1]) * f(z[:, 2]) * f(z[:, 3]), rng)
        assert abs(val - ref) < 5 * se + 1e-12


def test_erf_I2_unit_value():
    # E[g(u)^2] for u ~ N(0, 1), g = erf(x/sqrt 2): (2/pi) asin(1/2) = 1/3
    assert float(jd.I2(jnp.ones((2, 2)), jd.Erf())) == pytest.approx(1 / 3, abs=1e-15)


def test_mixed_relu_erf_rejected_until_generic_route():
    C = np.eye(2)
    try:
        val = jd.I2(C, (jd.ReLU(), jd.Erf()))
    except NotImplementedError:
        return
    # with the generic route present, E[relu(z1) erf(z2/sqrt2)] = 0 for independent z (odd erf)
    assert abs(float(val)) < 1e-10


def test_relu_I2_I3_gradients_interior(rng):
    for C in random_covs(rng, 3, 5):
        E = rng.normal(size=(3, 3))
        E = E + E.T
        for fn, sub in [(lambda c: jd.I3(c, jd.ReLU()), slice(0, 3)),
                        (lambda c: jd.I2(c, jd.ReLU()), slice(0, 2))]:
            c, e = jnp.asarray(C[sub, sub]), jnp.asarray(E[sub, sub])
            jvp = jax.jvp(fn, (c,), (e,))[1]
            assert float(jvp) == pytest.approx(float(directional_difference(fn, c, e, 1e-6)), rel=1e-6, abs=1e-9)


def test_relu_singular_points_values_and_one_sided_derivatives():
    """x collinear with y (R^2 = Q T): values continuous, jvp finite and equal to the one-sided
    difference quotient along a feasible direction (one that moves into the PSD cone)."""
    Q, T = 0.7, 1.8
    R = np.sqrt(Q * T)
    # I3(x, y, y) = E[theta(x) y relu(y)] and I3(x, x, y); I2(x, y)
    C2 = jnp.array([[Q, R], [R, T]])
    C3_xyy = jnp.array([[Q, R, R], [R, T, T], [R, T, T]])
    C3_xxy = jnp.array([[Q, Q, R], [Q, Q, R], [R, R, T]])
    # feasible direction: lower R, i.e. C(t) = C + t D with D = d/dR of the covariance * (-1)
    D2 = -jnp.array([[0.0, 1.0], [1.0, 0.0]])
    D3_xyy = -jnp.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    D3_xxy = -jnp.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    cases = [(lambda c: jd.I2(c, jd.ReLU()), C2, D2), (lambda c: jd.I3(c, jd.ReLU()), C3_xyy, D3_xyy),
             (lambda c: jd.I3(c, jd.ReLU()), C3_xxy, D3_xxy)]
    for fn, C, D in cases:
        val, jvp = jax.jvp(fn, (C,), (D,))
        assert np.isfinite(float(val)) and np.isfinite(float(jvp))
        g = jax.grad(fn)(C)
        assert np.all(np.isfinite(np.asarray(g)))
        # one-sided difference quotients converge to the jvp (error O(sqrt h) at worst)
        errs = []
        for h in [1e-4, 1e-6, 1e-8]:
            q = (fn(C + h * D) - fn(C)) / h
            errs.append(abs(float(q) - float(jvp)))
        # the difference quotient converges to the jvp like sqrt(h) (or faster): over four decades
        # of h the error must drop by at least ~1.6 decades
        assert errs[-1] < 1e-4 and errs[-1] <= 10**-1.6 * errs[0] + 1e-9
    # values at the singular point equal the limit from inside
    for fn, C, D in cases:
        assert abs(float(fn(C + 1e-10 * D)) - float(fn(C))) < 1e-4
