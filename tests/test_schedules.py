"""Learning-rate schedules: values, constraints, the integrate/simulate hooks, declared jumps, bad input."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd

SC1 = jd.Scenario(K=1, M=1, g="erf")
OP1 = jd.OrderParams(Q=[[0.2]], R=[[0.0]])
TIGHT = dict(rtol=1e-11, atol=1e-13)


def test_piecewise_values_and_edges():
    s = jd.PiecewiseConstant(jnp.array([2.0, 1.0, 0.5]), jnp.array([10.0, 50.0]))
    # left-closed pieces: eta jumps *at* the switching time
    np.testing.assert_allclose(s(jnp.array([0.0, 9.999, 10.0, 49.0, 50.0, 1e3])),
                               [2, 2, 1, 1, 0.5, 0.5], rtol=1e-14)
    g = jd.PiecewiseConstant.on_grid(jnp.array([3.0, 2.0]), jnp.array([0.0, 5.0, 9.0]))
    np.testing.assert_allclose(np.asarray(g.jumps()), [5.0])
    np.testing.assert_allclose(np.asarray(g.eta), [3.0, 2.0], rtol=1e-14)


@pytest.mark.parametrize("eta_max", [None, 3.0])
def test_parametrisation_keeps_eta_in_bounds(eta_max):
    # any theta maps into (0, eta_max): the optimiser cannot leave the admissible set
    theta = jnp.asarray(np.random.default_rng(0).normal(0, 30, 64))
    s = jd.PiecewiseConstant(jnp.ones(64), jnp.arange(1.0, 64.0), eta_max=eta_max)
    s = jax.tree_util.tree_map(lambda x: x, s)
    import equinox as eqx

    s = eqx.tree_at(lambda q: q.theta, s, theta)
    e = np.asarray(s.eta)
    assert np.all(e >= 0) and np.all(np.isfinite(e))
    if eta_max is not None:
        assert np.all(e <= eta_max)
    c = jd.Chebyshev(theta[:8], alpha_range=(0.0, 10.0), eta_max=eta_max)
    v = np.asarray(c(jnp.linspace(0, 10, 101)))
    assert np.all(v >= 0) and np.all(np.isfinite(v))


def test_chebyshev_is_the_series():
    th = jnp.array([0.1, -0.3, 0.2, 0.05])
    c = jd.Chebyshev(th, alpha_range=(0.0, 20.0))
    a = np.linspace(0, 20, 7)
    x = 2 * a / 20 - 1
    ref = np.exp(np.polynomial.chebyshev.chebval(x, np.asarray(th)))
    np.testing.assert_allclose(np.asarray(c(jnp.asarray(a))), ref, rtol=1e-13)
    cl = jd.Chebyshev(th, alpha_range=(0.0, 20.0), scale="log")
    xl = 2 * np.log1p(a) / np.log1p(20) - 1
    np.testing.assert_allclose(np.asarray(cl(jnp.asarray(a))),
                               np.exp(np.polynomial.chebyshev.chebval(xl, np.asarray(th))), rtol=1e-13)
    k = jd.Chebyshev.constant(0.7, 5, alpha_range=(0.0, 20.0), eta_max=2.0)
    np.testing.assert_allclose(np.asarray(k(jnp.asarray(a))), 0.7, rtol=1e-13)


def test_integrate_piecewise_equals_restarted_constant_solves():
    """integrate(eta=PiecewiseConstant) against an independent construction: constant-eta solves
    restarted at each switching time from the previous end state."""
    etas, jumps = [2.0, 0.8, 0.3], [4.0, 9.0]
    s = jd.PiecewiseConstant(jnp.array(etas), jnp.array(jumps))
    tr = jd.integrate(SC1, OP1, eta=s, alphas=jnp.array([4.0, 9.0, 15.0]), **TIGHT)
    op, t0 = OP1, 0.0
    ends = []
    for e, t1 in zip(etas, jumps + [15.0]):
        seg = jd.integrate(SC1, op, eta=e, alphas=jnp.array([t1]), alpha0=t0, **TIGHT)
        op, t0 = jd.OrderParams(Q=seg.Q[-1], R=seg.R[-1]), t1
        ends.append(float(seg.eps_g[-1]))
    np.testing.assert_allclose(np.asarray(tr.eps_g), ends, rtol=1e-8)


def test_schedule_bad_input():
    with pytest.raises(ValueError, match="eta"):
        jd.PiecewiseConstant(jnp.array([1.0, -0.5]), jnp.array([5.0]))
    with pytest.raises(ValueError, match="eta"):
        jd.PiecewiseConstant(jnp.array([1.0, np.nan]), jnp.array([5.0]))
    with pytest.raises(ValueError, match="eta_max"):
        jd.PiecewiseConstant(jnp.array([1.0, 3.0]), jnp.array([5.0]), eta_max=2.0)
    with pytest.raises(ValueError, match="increasing"):
        jd.PiecewiseConstant(jnp.array([1.0, 2.0, 3.0]), jnp.array([5.0, 4.0]))
    with pytest.raises(ValueError, match="jump_ts"):
        jd.PiecewiseConstant(jnp.array([1.0, 2.0]), jnp.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="eta_max"):
        jd.Constant(1.0, eta_max=-1.0)
    al = jnp.linspace(0, 10, 3)
    # jumps outside an objective's horizon (dead pieces); integrate may run over part of a schedule
    late = jd.PiecewiseConstant(jnp.array([1.0, 0.5]), jnp.array([20.0]))
    with pytest.raises(ValueError, match="outside the integration range"):
        jd.evaluate_schedule(SC1, OP1, late, objective=jd.FinalError(alpha_F=10.0))
    with pytest.raises(ValueError, match="outside the integration range"):
        jd.optimize_schedule(SC1, OP1, objective=jd.FinalError(alpha_F=10.0), schedule=late)
    # a user callable that turns negative / non-finite somewhere in the range
    with pytest.raises(ValueError, match="finite eta > 0"):
        jd.integrate(SC1, OP1, eta=jd.FunctionSchedule(lambda a: 1.0 - a / 5.0), alphas=al)
    with pytest.raises(ValueError, match="finite eta > 0"):
        jd.simulate(SC1, OP1, eta=jd.FunctionSchedule(lambda a: jnp.log(a)), N=50, alphas=al)
    # a constant step size cannot step onto the jumps
    with pytest.raises(ValueError, match="adaptive"):
        jd.integrate(SC1, OP1, eta=jd.PiecewiseConstant(jnp.array([1.0, 0.5]), jnp.array([5.0])),
                     alphas=al, solver=diffrax.Euler(),
                     stepsize_controller=diffrax.ConstantStepSize(), dt0=0.1)


def test_simulate_schedule_is_evaluated_per_step():
    """simulate(eta=schedule) against make_sgd stepped by hand with a constant eta per piece
    (jumps on whole steps): same random stream, so the runs agree to float rounding."""
    N = 200
    s = jd.PiecewiseConstant(jnp.array([1.5, 0.5]), jnp.array([0.5]))  # jump after 100 steps
    sim = jd.simulate(SC1, OP1, eta=s, N=N, alphas=jnp.array([0.5, 1.0]), seeds=[3])
    init1, step1 = jd.make_sgd(SC1, eta=1.5, N=N)
    _, step2 = jd.make_sgd(SC1, eta=0.5, N=N)
    st = step1(init1(3, OP1), 100)
    R_half = float(step1.order_params(st).R[0, 0])
    st = step2(st, 100)
    R_end = float(step2.order_params(st).R[0, 0])
    np.testing.assert_allclose(np.asarray(sim.R[0, :, 0, 0]), [R_half, R_end], rtol=1e-6)


# extended (20 s); default run: gradients of piecewise schedules against central differences
# (test_protocols.py::test_piecewise_gradient_matches_central_differences)
@pytest.mark.extended
def test_declared_jumps_give_the_switching_time_gradient():
    """diffrax issue #363: a jump the solver does not know about has no derivative with respect to
    its time (it only enters through a comparison). jaxdyn declares PiecewiseConstant's jumps, so
    d eps_g / d(switching time) matches central differences; the same schedule written as an
    undeclared FunctionSchedule gets an (exactly) zero derivative, against a non-zero FD value."""
    obj = jd.FinalError(alpha_F=20.0)
    h = 1e-4

    def declared(j):
        s = jd.PiecewiseConstant(jnp.array([2.0, 0.5]), j)
        return jd.evaluate_schedule(SC1, OP1, s, objective=obj, **TIGHT).value

    j0 = jnp.array([5.0])
    g = float(jax.grad(declared)(j0)[0])
    fd = float((declared(j0 + h) - declared(j0 - h)) / (2 * h))
    assert abs(fd) > 1e-2
    assert abs(g - fd) <= 1e-6 * abs(fd)

    def undeclared(T):
        s = jd.FunctionSchedule(lambda a, th: jnp.where(a < th[0], 2.0, 0.5), jnp.array([T]))
        return jd.evaluate_schedule(SC1, OP1, s, objective=obj, **TIGHT).value

    g_bad = float(jax.grad(undeclared)(5.0))
    fd_bad = float((undeclared(5.0 + h) - undeclared(5.0 - h)) / (2 * h))
    assert g_bad == 0.0
    assert abs(fd_bad - fd) < 1e-3 * abs(fd)  # the function is the same; only the gradient is lost
