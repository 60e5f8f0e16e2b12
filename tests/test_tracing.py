"""Every public entry point works inside jax.jit / jax.vmap / jax.grad where that makes sense.

Each transformed result is compared with the same computation done eagerly (or with a central
finite difference for gradients), so a test fails if tracing changes the answer, not only if it
raises. `sweep`, `continuation` and the threshold finders are host-side loops (files, bisection)
and are not meant to be traced.
"""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd

from helpers import directional_difference


# small and cheap to compile (the machine running the suite has 2 cores)
SC = jd.Scenario(K=2, M=1, T=jnp.array([[1.5]]), g=jd.Erf())
OP0 = jd.OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=jnp.array([[1e-3], [2e-3]]))
ALPHAS = jnp.linspace(0.0, 3.0, 4)


def _fd(f, x, h=1e-5):
    return directional_difference(f, x, h=h)


# extended (five solves compiled, 25 s); default run: jit in test_integrate_throw_under_jit, vmap in
# test_integrate.py::test_vmap_over_eta_and_single_compile, derivatives in
# test_integrate_forward_mode_jacfwd and test_protocols.py::test_piecewise_gradient_matches_central_differences
@pytest.mark.extended
def test_integrate_under_jit_vmap_grad():
    f = lambda eta: jd.integrate(SC, OP0, eta=eta, alphas=ALPHAS).eps_g
    eager = f(0.7)
    np.testing.assert_allclose(jax.jit(f)(0.7), eager, rtol=1e-12)
    etas = jnp.array([0.5, 0.7])
    batched = jax.vmap(f)(etas)
    np.testing.assert_allclose(batched[1], eager, rtol=1e-7)  # vmapped adaptive steps differ
    g = jax.grad(lambda e: f(e)[-1])(0.7)
    np.testing.assert_allclose(g, _fd(lambda e: f(e)[-1], 0.7), rtol=1e-5)
    # traced initial condition and traced scenario field
    fq = jax.jit(lambda q: jd.integrate(SC, jd.OrderParams(Q=q, R=OP0.R), eta=0.7,
                                        alphas=ALPHAS).eps_g)
    np.testing.assert_allclose(fq(OP0.Q), eager, rtol=1e-12)


def test_integrate_throw_under_jit():
    f = jax.jit(lambda eta: jd.integrate(SC, OP0, eta=eta, alphas=jnp.array([100.0]),
                                         max_steps=5, throw=True).eps_g)
    with pytest.raises(RuntimeError, match="max"):
        jax.block_until_ready(f(0.5))
    fv = jax.jit(jax.vmap(lambda eta: jd.integrate(SC, OP0, eta=eta, alphas=jnp.array([100.0]),
                                                   max_steps=5, throw=True).eps_g))
    with pytest.raises(RuntimeError, match="max"):
        jax.block_until_ready(fv(jnp.array([0.5, 0.6])))
    # divergence is a result, never an error, also under jit and vmap
    # (linear K = M = 1 from Q = 2, R = 1: Q - 1 = exp((eta^2 - 2 eta) alpha) blows up for eta > 2)
    lin = jd.Scenario(K=1, M=1, g=jd.Linear())
    op = jd.OrderParams(Q=[[2.0]], R=[[1.0]])
    tr = jax.jit(jax.vmap(lambda eta: jd.integrate(lin, op, eta=eta, alphas=jnp.array([20.0]),
                                                   throw=True)))(jnp.array([2.5, 3.0]))
    assert bool(jnp.all(tr.diverged))
    assert bool(jnp.all(tr.result == jd.RESULTS.diverged))


def test_vector_field_and_eps_g_under_transforms():
    vf = lambda eta, q: jd.vector_field(SC, jd.OrderParams(Q=q, R=OP0.R), eta).Q[0, 1]
    eager = vf(0.7, OP0.Q)
    np.testing.assert_allclose(jax.jit(vf)(0.7, OP0.Q), eager, rtol=1e-13)
    np.testing.assert_allclose(jax.vmap(vf, in_axes=(0, None))(jnp.array([0.7, 0.8]), OP0.Q)[0],
                               eager, rtol=1e-13)
    np.testing.assert_allclose(jax.grad(vf)(0.7, OP0.Q), _fd(lambda e: vf(e, OP0.Q), 0.7), rtol=1e-6)
    # a Scenario built under jit (its value checks skip the tracer)
    vs = jax.jit(lambda s: jd.vector_field(jd.Scenario(K=2, M=1, T=SC.T, g=jd.Erf(), noise=s),
                                           OP0, 0.7).Q[0, 1])
    np.testing.assert_allclose(vs(0.0), eager, rtol=1e-13)
    eg = lambda r: jd.eps_g(SC, jd.OrderParams(Q=OP0.Q, R=r * jnp.ones((2, 1))))
    np.testing.assert_allclose(jax.jit(eg)(0.3), eg(0.3), rtol=1e-13)
    np.testing.assert_allclose(jax.grad(eg)(0.3), _fd(eg, 0.3), rtol=1e-6)


def test_ode_object_under_transforms():
    ode = jd.OrderParamODE(SC, eta=0.7)
    f = jax.jit(lambda o, y: o.vf(0.0, y, None))
    np.testing.assert_allclose(f(ode, OP0).R, jd.vector_field(SC, OP0, 0.7).R, rtol=1e-13)


@pytest.mark.parametrize("name, n", [("I2", 2), ("I3", 3), ("I4", 4), ("J2", 2)])
@pytest.mark.parametrize("g", [jd.ReLU(), jd.Erf()])
def test_averages_under_transforms(name, n, g):
    fn = getattr(jd, name)
    base = 0.3 * jnp.ones((n, n)) + 0.7 * jnp.eye(n)
    f = lambda s: fn(base.at[0, 1].set(s).at[1, 0].set(s), g)
    eager = f(0.2)
    np.testing.assert_allclose(jax.jit(f)(0.2), eager, rtol=1e-12)
    np.testing.assert_allclose(jax.vmap(f)(jnp.array([0.2, 0.25]))[0], eager, rtol=1e-12)
    np.testing.assert_allclose(jax.grad(f)(0.2), _fd(f, 0.2), rtol=1e-5, atol=1e-9)


def test_fixed_point_under_jit_and_jacfwd():
    # with output noise the fixed point near perfect learning moves with eta
    sc = jd.Scenario(K=1, M=1, g=jd.Erf(), noise=0.3)
    guess = jd.OrderParams(Q=[[0.9]], R=[[0.9]])
    f = lambda eta: jd.fixed_point(sc, guess, eta=eta).x
    eager = f(jnp.array(0.5))
    np.testing.assert_allclose(jax.jit(f)(jnp.array(0.5)), eager, rtol=1e-12)
    d = jax.jacfwd(f)(jnp.array(0.5))
    np.testing.assert_allclose(d, _fd(f, jnp.array(0.5), h=1e-4), rtol=1e-6, atol=1e-9)
    assert float(jnp.max(jnp.abs(d))) > 1e-3  # the check is not trivially zero


def test_simulate_under_jit():
    # alphas fix the number of steps (static shapes): concrete, only eta is traced
    f = lambda eta: jd.simulate(SC, OP0, eta=eta, N=200, alphas=np.array([0.0, 1.0]),
                                dtype=jnp.float64).eps_g
    np.testing.assert_allclose(jax.jit(f)(0.5), f(0.5), rtol=1e-10)


def test_integrate_forward_mode_jacfwd():
    f = lambda eta: jd.integrate(SC, OP0, eta=eta, alphas=ALPHAS,
                                 adjoint=diffrax.ForwardMode()).eps_g[-1]
    np.testing.assert_allclose(jax.jacfwd(f)(0.7), _fd(f, 0.7), rtol=1e-5)
