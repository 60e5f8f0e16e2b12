"""The generic route of I2/I3/J2/I4 (quadrature, exact ReLU reductions, Hermite series) against
Monte Carlo with 1e6 samples and a 5-standard-error tolerance."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf as sp_erf, expit

import jaxdyn as jd


N_MC = 1_000_000
SQ2PI = np.sqrt(2 * np.pi)
Phi = lambda x: 0.5 * (1 + sp_erf(x / np.sqrt(2)))

NP = {  # numpy (g, g') for Monte Carlo
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "sigmoid": (expit, lambda x: expit(x) * (1 - expit(x))),
    "gelu": (lambda x: x * Phi(x), lambda x: Phi(x) + x * np.exp(-x * x / 2) / SQ2PI),
    "relu": (lambda x: np.maximum(x, 0), lambda x: (x > 0) * 1.0),
    "erf": (lambda x: sp_erf(x / np.sqrt(2)), lambda x: np.sqrt(2 / np.pi) * np.exp(-x * x / 2)),
    "leaky": (lambda x: np.where(x > 0, x, 0.1 * x), lambda x: np.where(x > 0, 1.0, 0.1)),
    "abs": (np.abs, np.sign),
}
JD = {"tanh": jd.Tanh(), "sigmoid": jd.Sigmoid(), "gelu": jd.GELU(), "relu": jd.ReLU(),
      "erf": jd.Erf(), "leaky": jd.LeakyReLU(0.1), "abs": jd.Abs()}


def covs(seed, n=4, count=3, corr=1.0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        A = rng.normal(size=(n, n + 2))
        C = A @ A.T / (n + 2)
        d = np.sqrt(np.diag(C))
        C = C / np.outer(d, d)
        C = corr * C + (1 - corr) * np.eye(n)
        s = np.exp(rng.uniform(-0.5, 0.5, size=n))
        out.append(C * np.outer(s, s))
    return np.array(out)


def samples(C, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N_MC, len(C))) @ np.linalg.cholesky(C).T


def check(val, x):
    ref, se = x.mean(), x.std() / np.sqrt(len(x))
    assert abs(float(val) - ref) < 5 * se + 1e-12, (float(val), ref, se)


def check_i2_i3_j2(a1, a2, C, seed):
    (f1, d1), (f2, d2) = NP[a1], NP[a2]
    g = (JD[a1], JD[a2])
    z = samples(C[:3, :3], seed)
    check(jd.I2(C[:2, :2], g), f1(z[:, 0]) * f2(z[:, 1]))
    check(jd.J2(C[:2, :2], g), d1(z[:, 0]) * d2(z[:, 1]))
    check(jd.I3(C[:3, :3], g), d1(z[:, 0]) * z[:, 1] * f2(z[:, 2]))


@pytest.mark.parametrize("name", ["tanh", "gelu", "sigmoid"])
def test_smooth_i2_i3_j2_vs_monte_carlo(name):
    for k, C in enumerate(covs(1, 3, 3)):
        check_i2_i3_j2(name, name, C, 10 * k)


@pytest.mark.parametrize("name", ["leaky", "abs"])
def test_piecewise_linear_exact_route_vs_monte_carlo(name):
    for k, C in enumerate(covs(2, 3, 3)):
        check_i2_i3_j2(name, name, C, 20 + k)


def test_piecewise_linear_i4_exact_route_vs_monte_carlo():
    for name in ("leaky", "abs"):
        f, d = NP[name]
        for k, C in enumerate(covs(3, 4, 2)):
            z = samples(C, 30 + k)
            check(jd.I4(C, JD[name]), d(z[:, 0]) * d(z[:, 1]) * f(z[:, 2]) * f(z[:, 3]))
        # mixture: ReLU student units, leaky teacher units
        fr, dr = NP["relu"]
        C = covs(4, 4, 1)[0]
        z = samples(C, 40)
        check(jd.I4(C, (jd.ReLU(), jd.ReLU(), JD[name], JD[name])),
              dr(z[:, 0]) * dr(z[:, 1]) * f(z[:, 2]) * f(z[:, 3]))


def test_mixed_relu_erf_vs_monte_carlo():
    """ReLU student, erf teacher: I2/I3/J2 by split quadrature, I4 by the series (in region)."""
    for k, C in enumerate(covs(5, 3, 2)):
        check_i2_i3_j2("relu", "erf", C, 50 + k)
        check_i2_i3_j2("erf", "relu", C, 60 + k)
    (fr, dr), (fe, _) = NP["relu"], NP["erf"]
    C = covs(6, 4, 1, corr=0.4)[0]
    assert bool(jd.hermite_in_region(C, 10, tol=1e-4))
    z = samples(C, 70)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jd.HermiteConvergenceWarning)
        val = jd.I4(C, (jd.ReLU(), jd.ReLU(), jd.ReLU(), jd.Erf()))
    check(val, dr(z[:, 0]) * dr(z[:, 1]) * fr(z[:, 2]) * fe(z[:, 3]))


def test_tanh_series_i4_vs_monte_carlo():
    f, d = NP["tanh"]
    for k, C in enumerate(covs(7, 4, 2, corr=0.4)):
        z = samples(C, 80 + k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jd.HermiteConvergenceWarning)
            val = jd.I4(C, jd.Tanh(), method="hermite", order=12)
        check(val, d(z[:, 0]) * d(z[:, 1]) * f(z[:, 2]) * f(z[:, 3]))


def test_user_activation():
    """`Activation(fn)` (derivative by autodiff) agrees with the built-in class and with MC."""
    C3 = covs(8, 3, 2)
    user = jd.Activation(jnp.tanh, name="mytanh")
    np.testing.assert_allclose(jd.I3(C3, user), jd.I3(C3, jd.Tanh()), rtol=1e-12, atol=1e-15)
    C2 = C3[:, :2, :2]
    np.testing.assert_allclose(jd.J2(C2, user), jd.J2(C2, jd.Tanh()), rtol=1e-12)
    softplus = jd.Activation(jax.nn.softplus, name="softplus")
    C = C3[0]
    z = samples(C, 90)
    sp = lambda x: np.logaddexp(0, x)
    check(jd.I2(C[:2, :2], softplus), sp(z[:, 0]) * sp(z[:, 1]))
    check(jd.I3(C, (softplus, jd.ReLU())), expit(z[:, 0]) * z[:, 1] * np.maximum(z[:, 2], 0))
    # jit / grad through the quadrature route
    f = jax.jit(lambda c: jd.I3(c, softplus).sum())
    assert bool(jnp.all(jnp.isfinite(jax.grad(f)(jnp.asarray(C3)))))
