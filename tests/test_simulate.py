"""SGD simulation (issue 4): exact initial overlaps, reproducibility, every option against the ODE,
and the 1/sqrt(N) approach of the simulation to the ODE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd


def _paper001():
    sc = jd.Scenario(K=2, M=2, T=jnp.diag(jnp.array([1.0, 2.0])))
    op0 = jd.OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=1e-3 * jnp.eye(2))
    return sc, op0


# ------------------------------------------------------------------ initialisation


@pytest.mark.parametrize("dtype,tol", [(jnp.float64, 1e-14), (jnp.float32, 2e-6)])
def test_initial_overlaps_exact(dtype, tol):
    sc, op0 = _paper001()
    for seed in range(3):
        B, J = jd.init_weights(jax.random.key(seed), sc, op0, 1000, dtype)
        assert B.shape == (2, 1000) and J.shape == (2, 1000) and J.dtype == dtype
        N = 1000
        np.testing.assert_allclose(np.asarray(B @ B.T / N), np.diag([1.0, 2.0]), atol=tol * 2)
        np.testing.assert_allclose(np.asarray(J @ J.T / N), np.asarray(op0.Q), atol=tol)
        np.testing.assert_allclose(np.asarray(J @ B.T / N), np.asarray(op0.R), atol=tol)


def test_initial_overlaps_singular_and_random_orientation():
    # K=3, M=2 with student 1 identical to teacher 1: C is singular (no Cholesky factor)
    sc = jd.Scenario(K=3, M=2)
    Q = jnp.diag(jnp.array([1.0, 0.3, 0.25]))
    R = jnp.zeros((3, 2)).at[0, 0].set(1.0)
    op0 = jd.OrderParams(Q=Q, R=R)
    B, J = jd.init_weights(jax.random.key(1), sc, op0, 500, jnp.float64)
    np.testing.assert_allclose(np.asarray(J @ J.T / 500), np.asarray(Q), atol=1e-13)
    np.testing.assert_allclose(np.asarray(J @ B.T / 500), np.asarray(R), atol=1e-13)
    np.testing.assert_allclose(np.asarray(J[0]), np.asarray(B[0]), atol=1e-12)
    B2, _ = jd.init_weights(jax.random.key(2), sc, op0, 500, jnp.float64)
    assert abs(float(B[0] @ B2[0]) / 500) < 0.3  # a different random orientation per seed


def test_simulate_records_exact_start():
    sc, op0 = _paper001()
    sim = jd.simulate(sc, op0, eta=1.0, N=400, alphas=[0.0, 0.1], seeds=3, dtype=jnp.float64)
    assert sim.Q.shape == (3, 2, 2, 2) and sim.R.shape == (3, 2, 2, 2) and sim.eps_g.shape == (3, 2)
    np.testing.assert_allclose(np.asarray(sim.Q[:, 0]), np.broadcast_to(op0.Q, (3, 2, 2)), atol=1e-14)
    np.testing.assert_allclose(np.asarray(sim.R[:, 0]), np.broadcast_to(op0.R, (3, 2, 2)), atol=1e-14)
    np.testing.assert_allclose(np.asarray(sim.eps_g[:, 0]), float(jd.eps_g(sc, op0)), rtol=1e-12)


# ------------------------------------------------------------------ reproducibility


def test_same_seed_same_run_and_independent_of_chunking():
    sc, op0 = _paper001()
    kw = dict(eta=1.0, N=300, alphas=np.array([0.0, 0.37, 1.0, 2.5]), dtype=jnp.float64)
    a = jd.simulate(sc, op0, seeds=[5, 7], **kw)
    b = jd.simulate(sc, op0, seeds=[5, 7], **kw)
    np.testing.assert_array_equal(np.asarray(a.Q), np.asarray(b.Q))
    # other chunk size, other recording times, seed alone: the same trajectory
    c = jd.simulate(sc, op0, seeds=[7], chunk=7, **{**kw, "alphas": np.array([1.0, 2.5])})
    np.testing.assert_allclose(np.asarray(c.Q[0]), np.asarray(a.Q[1, 2:]), rtol=1e-12, atol=1e-13)
    # different seeds differ
    assert float(jnp.max(jnp.abs(a.R[0, -1] - a.R[1, -1]))) > 1e-3
    # the (init, step) pair reproduces simulate step for step
    init, step = jd.make_sgd(sc, eta=1.0, N=300, dtype=jnp.float64)
    s = init(7, op0)
    s = step(s, 111)
    for _ in range(300 - 111):
        s = step(s)
    op = jd.sim_order_params(s)
    np.testing.assert_allclose(np.asarray(op.R), np.asarray(a.R[1, 2]), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(np.asarray(op.Q), np.asarray(a.Q[1, 2]), rtol=1e-11, atol=1e-13)


def test_vmapped_eta_matches_single_eta_and_jax_rng():
    sc, op0 = _paper001()
    kw = dict(N=200, alphas=[0.0, 1.0], seeds=2, dtype=jnp.float64)
    both = jd.simulate(sc, op0, eta=jnp.array([0.5, 1.0]), **kw)
    one = jd.simulate(sc, op0, eta=1.0, **kw)
    assert both.Q.shape == (2, 2, 2, 2, 2) and both.mean("eps_g").shape == (2, 2)
    np.testing.assert_allclose(np.asarray(both.Q[1]), np.asarray(one.Q), rtol=1e-12)
    j = jd.simulate(sc, op0, eta=1.0, rng="jax", **kw)
    assert np.all(np.isfinite(np.asarray(j.Q)))
    j2 = jd.simulate(sc, op0, eta=1.0, rng="jax", **kw)
    np.testing.assert_array_equal(np.asarray(j.Q), np.asarray(j2.Q))


def test_input_validation():
    sc, op0 = _paper001()
    with pytest.raises(ValueError):
        jd.simulate(sc, op0, eta=-1.0, N=100, alphas=[0.0, 1.0])
    with pytest.raises(ValueError):
        jd.simulate(sc, op0, eta=1.0, N=100, alphas=[1.0, 0.5])
    with pytest.raises(ValueError):
        jd.simulate(sc, jd.OrderParams(Q=jnp.eye(2), R=2 * jnp.eye(2)), eta=1.0, N=100, alphas=[1.0])
    with pytest.raises(ValueError):
        jd.simulate(sc, op0, eta=1.0, N=100, alphas=[1.0], rng="mt")


# ------------------------------------------------------------------ options follow the ODE convention


def _agree(sc, op0, eta, N, alpha_max, seeds, n_sigma=4.5, **kw):
    alphas = np.linspace(0, alpha_max, 6)
    sim = jd.simulate(sc, op0, eta=eta, N=N, alphas=alphas, seeds=seeds, **kw)
    tr = jd.integrate(sc, op0, eta=eta, alphas=sim.alpha)
    for f in ("Q", "R", "eps_g"):
        m, s = np.asarray(sim.mean(f)), np.asarray(sim.std(f))
        ode = np.asarray(getattr(tr, f))
        # the mean carries a ~1/N bias besides the seed error s / sqrt(S)
        err = np.abs(m - ode)
        bound = n_sigma * s / np.sqrt(seeds) + 3.0 / N + 1e-6
        assert np.all(err <= bound), (f, err.max(), (err - bound).max())
    return sim, tr


def test_options_match_ode_noise_decay_minibatch_mismatch():
    # erf student learning a ReLU teacher, output noise, weight decay, minibatch 4, eta = 1.5
    sc = jd.Scenario(K=2, M=1, g=jd.Erf(), g_teacher=jd.ReLU(), noise=0.5, weight_decay=0.2,
                     batch_size=4)
    op0 = jd.OrderParams(Q=jnp.array([[0.5, 0.1], [0.1, 0.3]]), R=jnp.array([[0.2], [0.0]]))
    _agree(sc, op0, 1.5, 1000, 2.0, 8, dtype=jnp.float32)


def test_eps_test_estimates_eps_g():
    sc = jd.Scenario(K=1, M=1)
    op0 = jd.OrderParams(Q=[[0.25]], R=[[0.0]])
    sim = jd.simulate(sc, op0, eta=0.5, N=500, alphas=[0.0, 1.0], seeds=4, n_test=4000,
                      dtype=jnp.float64)
    d = np.asarray(sim.eps_test - sim.eps_g)
    assert np.all(np.abs(d) < 5 * np.asarray(sim.eps_g) * np.sqrt(2.0 / 4000) * 2)


# ------------------------------------------------------------------ 1/sqrt(N) convergence to the ODE


def _deviation(N, seeds, eta=0.5, alpha_max=4.0):
    sc = jd.Scenario(K=1, M=1)
    op0 = jd.OrderParams(Q=[[0.25]], R=[[0.0]])
    alphas = np.linspace(0.5, alpha_max, 8)
    sim = jd.simulate(sc, op0, eta=eta, N=N, alphas=alphas, seeds=seeds, dtype=jnp.float32)
    tr = jd.integrate(sc, op0, eta=eta, alphas=sim.alpha)
    dQ = np.asarray(sim.Q[..., 0, 0]) - np.asarray(tr.Q[:, 0, 0])
    dR = np.asarray(sim.R[..., 0, 0]) - np.asarray(tr.R[:, 0, 0])
    return np.sqrt(np.mean(dQ**2 + dR**2, axis=1))  # per seed, RMS over the records


# extended (22 s of Monte Carlo); default run: SGD against the ODE with every option
# (test_options_match_ode_noise_decay_minibatch_mismatch), eps_test against eps_g
@pytest.mark.extended
def test_deviation_shrinks_like_inverse_sqrt_N():
    Ns = np.array([250, 1000, 4000])
    S = 24
    per_seed = [_deviation(int(N), S) for N in Ns]
    msd = np.array([np.mean(d**2) for d in per_seed])
    slope = np.polyfit(np.log(Ns), 0.5 * np.log(msd), 1)[0]
    # tolerance from the seed spread: bootstrap the seeds
    rng = np.random.default_rng(0)
    boots = []
    for _ in range(400):
        m = [np.mean(d[rng.integers(0, S, S)] ** 2) for d in per_seed]
        boots.append(np.polyfit(np.log(Ns), 0.5 * np.log(m), 1)[0])
    sd = float(np.std(boots))
    assert sd < 0.15
    assert abs(slope + 0.5) < max(3 * sd, 0.05), (slope, sd)
