"""Result types as Modules with array fields (`Branch`, `Threshold`, `MatchedTheory`, `SGDInit`,
`SGDStep`), and the ODE object passed in place of the `(eta2, i4, order)` keywords."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd

SC1 = jd.Scenario(K=1, M=1)
PL1 = jd.OrderParams(Q=[[1.0]], R=[[1.0]])


def _array_fields(m):
    return {f: getattr(m, f) for f in m.__dataclass_fields__
            if not m.__dataclass_fields__[f].metadata.get("static", False)}


def test_branch_is_a_module_of_arrays_with_the_old_views():
    br = jd.continuation(SC1, PL1, eta_start=1.5, eta_stop=2.5, ds_max=0.2)
    assert isinstance(br, eqx.Module)
    for name in ("eta", "x", "eigenvalues", "n_unstable", "residual", "tangent", "fold_index",
                 "change_index"):
        assert isinstance(getattr(br, name), jax.Array), name
    # K = M = 1 perfect learning: eigenvalues -eta/2 and eta^2/2 - eta (paper 000); the second
    # crosses zero at eta = 2, so exactly one stability change, between the two branch points
    (ch,) = br.stability_changes
    i = int(br.change_index[0])
    assert ch["index"] == i and ch["eta"] == float(br.eta[i])
    assert ch["eta_prev"] == float(br.eta[i - 1])
    assert ch["eta_prev"] < 2.0 <= ch["eta"]
    assert (ch["n_unstable_before"], ch["n_unstable_after"]) == (0, 1)
    assert br.folds == [] and br.fold_index.shape == (0,)
    lam = np.sort(np.real(np.asarray(br.eigenvalues)), axis=1)
    eta = np.asarray(br.eta)
    ref = np.sort(np.stack([-eta / 2, eta**2 / 2 - eta], 1), axis=1)
    np.testing.assert_allclose(lam, ref, atol=1e-9)
    np.testing.assert_allclose(np.asarray(br.max_real), ref[:, 1], atol=1e-9)
    # a Module of arrays goes through jit
    assert float(jax.jit(lambda b: b.eta[0])(br)) == pytest.approx(1.5)


def test_threshold_is_a_module():
    th = jd.stability_threshold(SC1, PL1, eta_bracket=(0.5, 3.0))
    assert isinstance(th, eqx.Module) and isinstance(th.value, jax.Array)
    assert abs(float(th) - 2.0) <= max(float(th.tol), 1e-12)  # eta_c = 2 (paper 000)
    d = th.as_dict()
    assert isinstance(d["value"], float) and d["bracket"] == [0.5, 3.0] and d["kind"] == "stability"
    # positional construction as before
    t2 = jd.Threshold(1.0, 0.1, "fold", (0.5, 2.0))
    assert float(t2) == 1.0 and t2.details == {}


def test_ode_object_in_place_of_the_keywords():
    eta = jnp.asarray(0.8)
    kw = jd.fixed_point(SC1, PL1, eta=eta, eta2=False)
    ode = jd.fixed_point(jd.OrderParamODE(SC1, eta2=False), PL1, eta=eta)
    full = jd.fixed_point(jd.OrderParamODE(SC1), PL1, eta=eta)
    np.testing.assert_array_equal(np.asarray(kw.jacobian), np.asarray(ode.jacobian))
    # K = M = 1 perfect learning (paper 000): eigenvalues -eta/2 and -eta (small-eta field),
    # -eta/2 and eta^2/2 - eta with the eta^2 term: the option really reached the field
    e = 0.8
    np.testing.assert_allclose(np.sort(np.real(np.asarray(ode.eigenvalues))), [-e, -e / 2],
                               atol=1e-12)
    np.testing.assert_allclose(np.sort(np.real(np.asarray(full.eigenvalues))),
                               np.sort([-e / 2, e**2 / 2 - e]), atol=1e-12)
    br = jd.continuation(jd.OrderParamODE(SC1, eta2=False), PL1, eta_start=0.5, eta_stop=0.7,
                         ds_max=0.1)
    assert br.stability_changes == []  # the small-eta field has no threshold at eta = 2
    with pytest.raises(ValueError, match="either on the OrderParamODE or as keywords"):
        jd.fixed_point(jd.OrderParamODE(SC1), PL1, eta=eta, eta2=False)
    with pytest.raises(ValueError, match="i4 must be 'exact' or 'hermite'"):
        jd.fixed_point(SC1, PL1, eta=eta, i4="series")


def test_make_sgd_pair_of_modules():
    op0 = jd.OrderParams(Q=[[0.5]], R=[[0.1]])
    init, step = jd.make_sgd(SC1, eta=1.0, N=200, dtype=jnp.float64)
    assert isinstance(init, jd.SGDInit) and isinstance(step, jd.SGDStep)
    s = step(init(4, op0), 200)
    sim = jd.simulate(SC1, op0, eta=1.0, N=200, alphas=np.array([1.0]), seeds=[4],
                      dtype=jnp.float64)
    np.testing.assert_allclose(np.asarray(step.order_params(s).R), np.asarray(sim.R[0, 0]),
                               rtol=1e-12, atol=1e-14)


def test_matched_theory_unpacks_and_is_the_ode_from_the_measured_start():
    op0 = jd.OrderParams(Q=[[0.5]], R=[[0.0]])
    sim = jd.simulate(SC1, op0, eta=1.0, N=200, alphas=np.linspace(0, 4, 9), seeds=2,
                      dtype=jnp.float64)
    m = jd.matched_theory(SC1, sim)
    assert isinstance(m, jd.MatchedTheory) and len(m) == 4
    alpha, Q, R, e = m
    assert alpha is m.alpha and m[3] is m.eps_g and Q.shape == (2, alpha.shape[0], 1, 1)
    i0 = int(np.argmin(np.abs(np.asarray(sim.alpha) - 2.0)))  # alpha_match = 2 / eta
    np.testing.assert_allclose(np.asarray(alpha), np.asarray(sim.alpha)[i0:])
    # seed 1, integrated by hand from its measured overlaps at alpha_match
    tr = jd.integrate(SC1, jd.OrderParams(Q=sim.Q[1, i0], R=sim.R[1, i0]), eta=1.0,
                      alphas=alpha, alpha0=float(alpha[0]))
    np.testing.assert_allclose(np.asarray(R[1]), np.asarray(tr.R), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(np.asarray(e[1]), np.asarray(tr.eps_g), rtol=1e-7, atol=1e-9)
