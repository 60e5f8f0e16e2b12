"""The ODE object, the one solve core and its result model."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest

import jaxdyn as jd


def _erf():
    sc = jd.Scenario(K=2, M=2, g=jd.Erf())
    op0 = jd.OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=1e-3 * jnp.eye(2))
    return sc, op0


def test_sweep_with_user_solver_matches_integrate_point_by_point():
    sc, op0 = _erf()
    etas = np.array([0.5, 1.5, 4.0])
    alphas = np.geomspace(0.1, 60.0, 20)
    kw = dict(solver=diffrax.Dopri5(), stepsize_controller=diffrax.PIDController(rtol=1e-7, atol=1e-9))
    ds = jd.sweep(sc, op0, eta=etas, alphas=alphas, batch_size=1, progress=False, **kw)
    assert ds.attrs["n_traces"] == 1
    for e in etas:
        tr = jd.integrate(sc, op0, eta=e, alphas=alphas, throw=False, **kw)
        np.testing.assert_allclose(ds["eps_g"].sel(eta=e).values, np.asarray(tr.eps_g),
                                   rtol=1e-12, atol=1e-14)
        assert int(ds["num_steps"].sel(eta=e)) == int(tr.num_steps)
        assert int(ds["status"].sel(eta=e)) == int(tr.status)
        assert bool(ds["diverged"].sel(eta=e)) == bool(tr.diverged)
    # a different solver is a different computation (Dopri5 and Tsit5 take different steps)
    ref = jd.sweep(sc, op0, eta=etas[:1], alphas=alphas, batch_size=1, progress=False,
                   stepsize_controller=kw["stepsize_controller"])
    assert int(ref["num_steps"][0]) != int(ds["num_steps"][0])


def test_ode_object_is_a_diffrax_term_and_an_optimistix_function():
    sc, op0 = _erf()
    ode = jd.OrderParamODE(sc, eta=1.0)
    ts = jnp.linspace(0.0, 20.0, 5)
    sol = diffrax.diffeqsolve(ode, diffrax.Tsit5(), t0=0.0, t1=20.0, dt0=None, y0=op0,
                              saveat=diffrax.SaveAt(ts=ts),
                              stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-10))
    tr = jd.integrate(sc, op0, eta=1.0, alphas=ts)
    np.testing.assert_allclose(sol.ys.Q, tr.Q, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ode.vf(0.0, op0, None).Q, jd.vector_field(sc, op0, 1.0).Q, rtol=1e-14)
    # the root function for optimistix: K = M = 1 erf, noise-free and realisable, so perfect
    # learning Q = R = T = 1 is a root (a regular one: two unknowns, two equations)
    ode1 = jd.OrderParamODE(jd.Scenario(K=1, M=1, g=jd.Erf()), eta=0.5)
    y0 = jd.OrderParams(Q=jnp.array([[0.9]]), R=jnp.array([[0.93]]))
    root = optx.root_find(ode1.root_fn, optx.Newton(rtol=1e-10, atol=1e-12), y0, max_steps=50)
    np.testing.assert_allclose(root.value.Q, 1.0, atol=1e-9)
    np.testing.assert_allclose(root.value.R, 1.0, atol=1e-9)


def test_i4_options_and_old_spellings_agree():
    # K + M = 4 units: the series only replaces moments of four distinct units (fewer are exact)
    sc = jd.Scenario(K=2, M=2, g=jd.ReLU())
    op = jd.OrderParams(Q=jnp.array([[0.5, 0.1], [0.1, 0.4]]),
                        R=jnp.array([[0.2, 0.1], [0.3, 0.05]]))
    a = jd.OrderParamODE(sc, eta=0.8, i4=jd.HermiteI4(6)).vf(0.0, op, None)
    b = jd.vector_field(sc, op, 0.8, i4="hermite", order=6)
    # the same formula; vf runs it compiled (XLA fuses, so rounding may differ by a few ulps)
    np.testing.assert_allclose(a.Q, b.Q, rtol=1e-13, atol=1e-16)
    c = jd.OrderParamODE(sc, eta=0.8).vf(0.0, op, None)
    assert float(jnp.max(jnp.abs(a.Q - c.Q))) > 0  # the options are not ignored
    with pytest.raises(ValueError, match="i4 must be"):
        jd.OrderParamODE(sc, eta=0.8, i4="magic")


def test_results_enumeration_and_status_codes():
    sc = jd.Scenario(K=1, M=1, g=jd.Linear())
    op0 = jd.OrderParams(Q=[[2.0]], R=[[1.0]])
    tr = jax.vmap(lambda e: jd.integrate(sc, op0, eta=e, alphas=jnp.array([20.0]), throw=False))(
        jnp.array([1.0, 3.0]))
    assert np.asarray(tr.status).tolist() == [0, 1]
    assert np.asarray(tr.result == jd.RESULTS.diverged).tolist() == [False, True]
    assert jd.RESULTS[jd.RESULTS.diverged].startswith("diverged")
    one = jd.integrate(sc, op0, eta=1.0, alphas=jnp.array([20.0]), max_steps=2, throw=False)
    assert one.result == jd.RESULTS.max_steps_reached and not bool(one.ok)
