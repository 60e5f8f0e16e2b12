"""Properties that must hold for every input (hypothesis): symmetries of the vector field and of the
Gaussian averages, perfect learning as a fixed point, continuity at singular covariances.

The examples are generated, not hand-picked; each property is exact (up to rounding), so the
tolerances are a few hundred ulps of the quantities involved."""


import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

import jaxdyn as jd

from helpers import random_psd, random_state


SETTINGS = settings(max_examples=10, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow])
ACTS = {"relu": jd.ReLU(), "erf": jd.Erf()}


@st.composite
def states(draw, kmax=3, mmax=3):
    K = draw(st.integers(1, kmax))
    M = draw(st.integers(1, mmax))
    seed = draw(st.integers(0, 2**31 - 1))
    act = draw(st.sampled_from(sorted(ACTS)))
    noise = draw(st.sampled_from([0.0, 0.3]))
    rng = np.random.default_rng(seed)
    T, op = random_state(rng, K, M, scale=draw(st.floats(0.3, 1.5)))
    v = rng.uniform(0.5, 1.5, K)
    w = rng.uniform(0.5, 1.5, M)
    sc = jd.Scenario(K=K, M=M, T=jnp.asarray(T), g=ACTS[act], v=jnp.asarray(v), w=jnp.asarray(w),
                     noise=noise)
    return sc, op, rng


_jit_field = jax.jit(jd.vector_field, static_argnames=("eta2",))


def _field(sc, op, eta):
    return _jit_field(sc, op, jnp.asarray(eta), eta2=True)


@SETTINGS
@given(states(), st.floats(0.1, 2.0))
def test_field_equivariant_under_unit_permutations(data, eta):
    """Relabelling student units (with their v) and teacher units (with T, w) relabels the field."""
    sc, op, rng = data
    p = rng.permutation(sc.K)
    q = rng.permutation(sc.M)
    sc2 = jd.Scenario(K=sc.K, M=sc.M, T=sc.T[q][:, q], g=sc.g, v=sc.v[p], w=sc.w[q], noise=sc.noise)
    op2 = jd.OrderParams(Q=op.Q[p][:, p], R=op.R[p][:, q])
    f, f2 = _field(sc, op, eta), _field(sc2, op2, eta)
    scale = 1.0 + float(jnp.max(jnp.abs(f.Q))) + float(jnp.max(jnp.abs(f.R)))
    np.testing.assert_allclose(f2.Q, f.Q[p][:, p], rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(f2.R, f.R[p][:, q], rtol=0, atol=1e-12 * scale)


@SETTINGS
@given(states(), st.floats(0.1, 2.0))
def test_field_keeps_Q_symmetric_and_finite(data, eta):
    sc, op, _ = data
    f = _field(sc, op, eta)
    assert np.all(np.isfinite(f.Q)) and np.all(np.isfinite(f.R))
    np.testing.assert_allclose(f.Q, f.Q.T, rtol=0, atol=1e-14 * (1 + float(jnp.max(jnp.abs(f.Q)))))


@SETTINGS
@given(st.integers(1, 3), st.integers(0, 2**31 - 1), st.sampled_from(sorted(ACTS)),
       st.floats(0.1, 3.0), st.booleans())
def test_perfect_learning_is_a_fixed_point_without_noise(K, seed, act, eta, eta2):
    """Student = teacher (Q = R = T, v = w) makes the error signal vanish for every example."""
    rng = np.random.default_rng(seed)
    T, _ = random_state(rng, K, K)
    T = jnp.asarray(T + 0.1 * np.eye(K))
    sc = jd.Scenario(K=K, M=K, T=T, g=ACTS[act])
    f = _jit_field(sc, jd.OrderParams(Q=T, R=T), jnp.asarray(eta), eta2=eta2)
    np.testing.assert_allclose(f.Q, 0.0, atol=1e-12)
    np.testing.assert_allclose(f.R, 0.0, atol=1e-12)


_i4 = jax.jit(jd.I4, static_argnames=("g", "method"))
_i3 = jax.jit(jd.I3, static_argnames=("g",))


def _random_cov(rng, n):
    return random_psd(rng, n, rank=n + 1)


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.sampled_from(sorted(ACTS) + ["tanh"]))
def test_averages_symmetric_in_exchangeable_arguments(seed, act):
    """I2(a,b) = I2(b,a), J2 likewise; I4 is symmetric in (1,2) and in (3,4)."""
    g = {"relu": jd.ReLU(), "erf": jd.Erf(), "tanh": jd.Tanh()}[act]
    rng = np.random.default_rng(seed)
    C2 = jnp.asarray(_random_cov(rng, 2))
    s = jnp.asarray([1, 0])
    for fn in (jd.I2, jd.J2):
        np.testing.assert_allclose(fn(C2[s][:, s], g), fn(C2, g), rtol=1e-11, atol=1e-14)
    C4 = _random_cov(rng, 4)
    if act == "tanh":  # keep the series inside its convergence region (weak correlations)
        C4 = 0.3 * C4 + 0.7 * np.diag(np.diag(C4))
    perms = np.array([[0, 1, 2, 3], [1, 0, 2, 3], [0, 1, 3, 2], [1, 0, 3, 2]])
    batch = jnp.asarray(np.stack([C4[p][:, p] for p in perms]))
    vals = _i4(batch, g, method="hermite" if act == "tanh" else "exact")
    np.testing.assert_allclose(vals[1:], vals[0], rtol=1e-10, atol=1e-13)


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.sampled_from([(0, 1), (0, 2), (2, 3), (1, 3)]))
def test_relu_averages_continuous_at_singular_covariances(seed, pair):
    """Move two variables towards coincidence (correlation 1 - delta): I3 and I4 converge to their
    value at the singular covariance with the Hoelder-1/2 rate of the collinear limit."""
    rng = np.random.default_rng(seed)
    d = 6
    X = rng.normal(size=(4, d))
    i, j = pair
    X[j] = X[i] * rng.uniform(0.5, 2.0)  # collinear (positively), different norms
    C0 = X @ X.T / d
    base = _i4(jnp.asarray(C0), jd.ReLU())
    base3 = _i3(jnp.asarray(C0[:3, :3]), jd.ReLU())
    direction = rng.normal(size=d)
    direction -= direction @ X[j] / (X[j] @ X[j]) * X[j]
    for delta in (1e-4, 1e-6, 1e-8):
        Xd = X.copy()
        Xd[j] = X[j] + np.sqrt(delta) * np.linalg.norm(X[j]) * direction / np.linalg.norm(direction)
        Cd = Xd @ Xd.T / d
        scale = float(np.max(np.abs(C0)))
        i4 = float(_i4(jnp.asarray(Cd), jd.ReLU()))
        i3 = float(_i3(jnp.asarray(Cd[:3, :3]), jd.ReLU()))
        assert abs(i4 - float(base)) < 5 * np.sqrt(delta) * scale**2
        assert abs(i3 - float(base3)) < 5 * np.sqrt(delta) * scale
    assert np.isfinite(float(base)) and np.isfinite(float(base3))
