"""`jaxdyn.integrate`: solver plumbing, divergence as a result, vmap, and bad input."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd


def _linear_kmm1():
    return jd.Scenario(K=1, M=1, g=jd.Linear())


def test_fixed_step_euler_matches_hand_written_euler():
    """A fixed-step Euler run reproduces a fixed-step code step for step (same vector field)."""
    sc = jd.Scenario(K=2, M=2, g=jd.Erf())
    op0 = jd.OrderParams(Q=jnp.diag(jnp.array([0.2, 0.3])), R=1e-3 * jnp.eye(2))
    dt, n = 0.01, 500
    tr = jd.integrate(sc, op0, eta=0.5, alphas=jnp.array([n * dt]), solver=diffrax.Euler(),
                      stepsize_controller=diffrax.ConstantStepSize(), dt0=dt)
    f = jax.jit(lambda op: jd.vector_field(sc, op, 0.5))
    Q, R = np.asarray(op0.Q), np.asarray(op0.R)
    for _ in range(n):
        d = f(jd.OrderParams(Q=Q, R=R))
        Q, R = Q + dt * np.asarray(d.Q), R + dt * np.asarray(d.R)
    assert int(tr.num_steps) == n
    np.testing.assert_allclose(tr.Q[-1], Q, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(tr.R[-1], R, rtol=1e-12, atol=1e-14)


def test_adaptive_linear_kmm1_against_closed_form():
    """Linear K=M=1: dR = eta (1 - R), dQ = 2 eta (R - Q) + eta^2 (Q - 2R + 1); solved exactly."""
    sc = _linear_kmm1()
    eta, R0, Q0 = 0.5, 0.2, 0.5
    alphas = jnp.linspace(0.0, 6.0, 13)
    tr = jd.integrate(sc, jd.OrderParams(Q=[[Q0]], R=[[R0]]), eta=eta, alphas=alphas)
    a = np.asarray(alphas)
    r = 1 - (1 - R0) * np.exp(-eta * a)  # r = R - 1
    # q = Q - 1 obeys q' = (eta^2 - 2 eta) q + 2 (eta - eta^2) (R - 1)
    lam, mu = eta**2 - 2 * eta, -eta
    c = 2 * (eta - eta**2) * (R0 - 1)
    q = (Q0 - 1 - c / (mu - lam)) * np.exp(lam * a) + c / (mu - lam) * np.exp(mu * a)
    np.testing.assert_allclose(tr.R[:, 0, 0], r, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(tr.Q[:, 0, 0], 1 + q, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(tr.eps_g, 0.5 * (tr.Q[:, 0, 0] - 2 * tr.R[:, 0, 0] + 1), atol=1e-13)


def test_divergence_is_a_result_with_its_alpha():
    """Linear K=M=1 from R = 1, Q = 2: Q - 1 = e^{(eta^2 - 2 eta) alpha}; above eta_c = 2 it blows up
    and crosses 1e4 at alpha* = ln(1e4 - 1) / (eta^2 - 2 eta)."""
    sc = _linear_kmm1()
    op0 = jd.OrderParams(Q=[[2.0]], R=[[1.0]])
    tr = jd.integrate(sc, op0, eta=3.0, alphas=jnp.linspace(0, 10, 11), blowup=1e4)
    assert bool(tr.diverged) and tr.result == jd.RESULTS.diverged
    a_star = np.log(1e4 - 1) / 3.0
    # the boolean event fires at the end of the step that crossed: within one step after a*
    assert a_star <= float(tr.alpha_diverged) < a_star + 0.2
    assert "diverged" in tr.message() and np.all(np.isinf(np.asarray(tr.Q)[np.asarray(tr.alpha) > 4]))
    assert np.all(np.isfinite(np.asarray(tr.eps_g)[np.asarray(tr.alpha) < 3]))
    ok = jd.integrate(sc, op0, eta=1.5, alphas=jnp.linspace(0, 10, 11))
    assert not bool(ok.diverged) and np.isnan(float(ok.alpha_diverged))


def test_vmap_over_eta_and_single_compile():
    sc = _linear_kmm1()
    op0 = jd.OrderParams(Q=[[2.0]], R=[[1.0]])
    etas = jnp.array([0.5, 1.5, 2.5, 3.0])
    f = jax.vmap(lambda e: jd.integrate(sc, op0, eta=e, alphas=jnp.linspace(0, 20, 5)))
    tr = f(etas)
    np.testing.assert_array_equal(np.asarray(tr.diverged), [False, False, True, True])
    for k, e in enumerate(np.asarray(etas)):
        one = jd.integrate(sc, op0, eta=e, alphas=jnp.linspace(0, 20, 5))
        assert bool(one.diverged) == bool(tr.diverged[k])
        if not bool(one.diverged):
            np.testing.assert_allclose(one.Q, tr.Q[k], rtol=1e-10)


def test_eta_array_does_not_retrace():
    from jaxdyn import _integrate

    sc = _linear_kmm1()
    op0 = jd.OrderParams(Q=[[0.5]], R=[[0.2]])
    alphas = jnp.linspace(0, 1, 3)
    jd.integrate(sc, op0, eta=0.3, alphas=alphas)
    n0 = _integrate._solve._cached._cache_size()
    for e in [0.4, 0.5, 0.6]:
        jd.integrate(sc, op0, eta=e, alphas=alphas)
    assert _integrate._solve._cached._cache_size() == n0


def test_max_steps_raises_or_reports():
    sc = jd.Scenario(K=2, M=2, g=jd.Erf())
    op0 = jd.OrderParams(Q=jnp.diag(jnp.array([0.2, 0.3])), R=1e-3 * jnp.eye(2))
    with pytest.raises(RuntimeError, match="max"):
        jd.integrate(sc, op0, eta=0.5, alphas=jnp.array([100.0]), max_steps=5)
    tr = jd.integrate(sc, op0, eta=0.5, alphas=jnp.array([100.0]), max_steps=5, throw=False)
    assert tr.result == jd.RESULTS.max_steps_reached


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(Q=[[1.0, 0.0], [0.0, 1.0]], R=[[1.5, 0.0], [0.0, 0.0]]), "positive semi-definite"),
        (dict(Q=[[1.0, 0.0], [0.0, -0.1]], R=[[0.0, 0.0], [0.0, 0.0]]), "positive semi-definite"),
        (dict(Q=[[1.0, 0.0], [0.0, 1.0]], R=[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), "R must have shape"),
        (dict(Q=[[1.0]], R=[[0.0, 0.0]]), "Q must have shape"),
        (dict(Q=[[1.0, 0.2], [0.3, 1.0]], R=[[0.0, 0.0], [0.0, 0.0]]), "symmetric"),
        (dict(Q=[[np.nan, 0.0], [0.0, 1.0]], R=[[0.0, 0.0], [0.0, 0.0]]), "non-finite"),
    ],
)
def test_bad_order_params(kwargs, match):
    sc = jd.Scenario(K=2, M=2)
    with pytest.raises(ValueError, match=match):
        jd.integrate(sc, jd.OrderParams(**kwargs), eta=0.5, alphas=jnp.array([1.0]))


@pytest.mark.parametrize("eta", [0.0, -1.0, np.nan, np.inf])
def test_bad_eta(eta):
    sc = jd.Scenario(K=1, M=1)
    with pytest.raises(ValueError, match="eta"):
        jd.integrate(sc, jd.OrderParams(Q=[[1.0]], R=[[0.0]]), eta=eta, alphas=jnp.array([1.0]))


def test_bad_scenario():
    with pytest.raises(ValueError, match="T must have shape"):
        jd.Scenario(K=2, M=2, T=jnp.eye(3))
    with pytest.raises(ValueError, match="positive definite"):
        jd.Scenario(K=2, M=2, T=jnp.array([[1.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="v must have shape"):
        jd.Scenario(K=2, M=2, v=jnp.ones(3))
    with pytest.raises(ValueError, match="w must have shape"):
        jd.Scenario(K=2, M=2, w=jnp.ones(1))
    with pytest.raises(ValueError, match="unknown activation"):
        jd.Scenario(K=2, M=2, g="softplusish")
    with pytest.raises(ValueError, match="unknown activation"):
        jd.Scenario(K=2, M=2, g=np.tanh)
    with pytest.raises(ValueError, match="K must be"):
        jd.Scenario(K=0, M=2)
    with pytest.raises(ValueError, match="noise"):
        jd.Scenario(K=1, M=1, noise=-1.0)
    with pytest.raises(ValueError, match="batch_size"):
        jd.Scenario(K=1, M=1, batch_size=0)


def test_bad_alphas_and_options():
    sc = jd.Scenario(K=1, M=1, g=jd.Erf())
    op = jd.OrderParams(Q=[[1.0]], R=[[0.0]])
    with pytest.raises(ValueError, match="alphas"):
        jd.integrate(sc, op, eta=0.5, alphas=jnp.array([2.0, 1.0]))
    with pytest.raises(ValueError, match="i4"):
        jd.integrate(sc, op, eta=0.5, alphas=jnp.array([1.0]), i4="magic")
    with pytest.raises(ValueError, match="dt0"):
        jd.integrate(sc, op, eta=0.5, alphas=jnp.array([1.0]),
                     stepsize_controller=diffrax.ConstantStepSize())
