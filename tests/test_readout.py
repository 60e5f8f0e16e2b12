"""Second-layer learning (issue 15): the readout v in the ODE, the simulator and the stability analysis.

Reference data: `tests/data/nn2pp-both/` holds the printed output of the C++ ODE integrator
`scmpp_ode.cpp --both` (Goldt, Advani, Saxe, Krzakala & Zdeborova, NeurIPS 2019, repository
sgoldt/nn2pp), erf K = M = 2, explicit Euler with dt = 0.01, 6 significant digits.

Mapping of its conventions to jaxdyn's (derived from its update equations, see `jaxdyn/_readout.py`):
- g = erf(x / sqrt 2) for student and teacher: `jaxdyn.Erf()`; teacher readout `A` -> `w`, `T` -> `T`.
- time `steps / N` -> alpha (the same); `--lr` (first-layer step lr / sqrt N) -> `eta` (the same
  convention, so the eta^2 term enters as `eta^2 <delta_i delta_k>` with delta_i = v_i g' (tau - sigma));
- `--lr2` (second-layer step lr2 / N) -> `eta_v` (no eta_v^2 term, no noise term in dv);
- `--sigma` (output noise) -> `noise`: it enters only dQ, as `eta^2 noise^2 v_i v_k J2(i, k)`;
- `--wd`: the C++ code subtracts `dt wd R`, `2 dt wd Q`, `dt wd v` per Euler step (no learning rate),
  jaxdyn's weight decay is the L2 coefficient of SGD (`eta lambda`, `eta_v lambda_v`), so
  `weight_decay = wd / lr` and `weight_decay_v = wd / lr2`;
- `eg` = jaxdyn's `eps_g` (noise-free); its printed time t is the state after round(t / dt) steps.
"""

import pathlib

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd

DATA = pathlib.Path(__file__).parent / "data" / "nn2pp-both"
LR, LR2, DT = 0.5, 0.3, 0.01


def _golden_ic():
    Q0, R0, T = (np.loadtxt(DATA / f"ic_{n}0.dat") for n in ("Q", "R", "T"))
    A, v0 = np.loadtxt(DATA / "ic_A0.dat"), np.loadtxt(DATA / "ic_v0.dat")
    return Q0, R0, T, A, v0


def _sixth_digit_error(ours, ref):
    """|ours - ref| in units of the last printed (6th significant) digit of ref."""
    unit = 10.0 ** (np.floor(np.log10(np.abs(ref))) - 5)
    return np.abs(ours - ref) / unit


@pytest.mark.parametrize("fname, sigma, wd", [("noiseless_ode.dat", 0.0, 0.0),
                                              ("noisy_wd_ode.dat", 0.1, 0.001)])
def test_euler_matches_cpp_both_layers(fname, sigma, wd):
    """Euler dt = 0.01 repeats the C++ --both trajectory step for step: every printed number
    (eg, Q, R, v at every printed time) agrees to within half a unit of its 6th digit."""
    Q0, R0, T, A, v0 = _golden_ic()
    dat = np.loadtxt(DATA / fname, delimiter=",", comments="#")
    extra = dict(weight_decay=wd / LR, weight_decay_v=wd / LR2) if wd else {}
    sc = jd.Scenario(K=2, M=2, T=T, g=jd.Erf(), w=A, eta_v=LR2, noise=sigma, **extra)
    alphas = np.rint(dat[:, 0] / DT) * DT
    tr = jd.integrate(sc, jd.OrderParams(Q=Q0, R=R0, v=v0), eta=LR, alphas=alphas,
                      solver=diffrax.Euler(), stepsize_controller=diffrax.ConstantStepSize(),
                      dt0=DT, max_steps=10_000)
    ours = np.column_stack([tr.eps_g, tr.Q[:, 0, 0], tr.Q[:, 0, 1], tr.Q[:, 1, 1],
                            np.asarray(tr.R).reshape(-1, 4), tr.v])
    ref = np.column_stack([dat[:, 1], dat[:, 6:13], dat[:, 15:17]])
    np.testing.assert_array_equal(dat[:, 13:15], np.broadcast_to(A, (len(dat), 2)))  # teacher fixed
    err = _sixth_digit_error(ours, ref)
    assert err.max() <= 0.5 + 1e-6, (err.max(), np.unravel_index(err.argmax(), err.shape))
    # the comparison has teeth: v moves by thousands of printed units over the run
    assert _sixth_digit_error(ref[-1, -2:], ref[0, -2:]).min() > 1000


# ----------------------------------------------------------------------------- ODE vs simulation
def _ic(K):
    """Generic initial overlaps (well away from any symmetric plateau) and readout."""
    if K == 2:
        return np.array([[1, .1], [.1, .8]]), np.array([[.3, .05], [.02, .2]]), np.array([.7, 1.2])
    Q0 = np.array([[1, .1, 0], [.1, .8, .05], [0, .05, .6]])
    R0 = np.array([[.3, .05], [.02, .2], [.1, .1]])
    return Q0, R0, np.array([.7, 1.2, .5])


def _ode_vs_sim(sc, op0, *, eta, N, seeds, alphas):
    """Max over (alpha, quantity) of |sim mean - ODE| / SE, and the Bonferroni threshold: the
    two-sided Student-t quantile (S - 1 degrees of freedom) at total level 1e-3 over all compared
    numbers (eps_g, Q, R, v at every alpha > 0)."""
    from scipy import stats

    tr = jd.integrate(sc, op0, eta=eta, alphas=alphas)
    sim = jd.simulate(sc, op0, eta=eta, N=N, alphas=alphas, seeds=seeds, dtype=jnp.float64)
    pairs = [(sim.eps_g, tr.eps_g), (sim.Q, tr.Q), (sim.R, tr.R), (sim.v, tr.v)]
    zs = []
    for s, o in pairs:
        s = np.asarray(s)[:, 1:]  # alpha = 0 is exact by construction
        se = s.std(0, ddof=1) / np.sqrt(seeds)
        zs.append((np.abs(s.mean(0) - np.asarray(o)[1:]) / se).ravel())
    z = np.concatenate(zs)
    thr = stats.t.ppf(1 - 1e-3 / (2 * z.size), seeds - 1)
    return z, thr, tr, sim


def test_ode_vs_sim_learned_readout_fast():
    """Small version (N = 500, 8 seeds; ReLU and N = 10^4 in the slow test): erf K = M = 2, both
    layers learning, in the mean-field convention (sigma = (1/K) sum v_i g(x_i)), with output noise
    and weight decay on both layers. The simulation mean agrees with the ODE within its standard
    error (Bonferroni-corrected t threshold), and the readout moved by many standard errors (the
    comparison tests the dv equation)."""
    al = np.array([0.0, 0.5, 1.0, 2.0, 3.0])
    Q0, R0, v0 = _ic(2)
    sc = jd.Scenario(K=2, M=2, g=jd.Erf(), eta_v=0.3 * 4, noise=0.1, weight_decay=0.01,
                     weight_decay_v=0.05, mean_field=True)
    v = 2 * v0  # effective readout v / K = v0
    z, thr, tr, sim = _ode_vs_sim(sc, jd.OrderParams(Q=Q0, R=R0, v=v), eta=0.5, N=500, seeds=8,
                                  alphas=al)
    assert z.max() < thr, (z.max(), thr)
    se_v = np.asarray(sim.v[:, -1]).std(0, ddof=1) / np.sqrt(8)
    assert np.all(np.abs(np.asarray(tr.v[-1]) - v) > 10 * se_v)


@pytest.mark.slow
@pytest.mark.parametrize("g, K", [(jd.Erf(), 2), (jd.ReLU(), 3)])
def test_ode_vs_sim_learned_readout_N1e4(g, K):
    """N = 10^4, 8 seeds: erf K = M = 2 (noise 0.1, weight decay) and ReLU K = 3, M = 2, both
    layers learning; every recorded eps_g, Q, R, v within the (Bonferroni) standard-error bound."""
    al = np.array([0.0, 0.5, 1.0, 2.0, 3.0])
    Q0, R0, v0 = _ic(K)
    sc = jd.Scenario(K=K, M=2, g=g, eta_v=0.3, noise=0.1, weight_decay=0.01)
    z, thr, tr, sim = _ode_vs_sim(sc, jd.OrderParams(Q=Q0, R=R0, v=v0), eta=0.5, N=10_000,
                                  seeds=8, alphas=al)
    print(type(g).__name__, "max z", z.max(), "threshold", thr)
    assert z.max() < thr


# ----------------------------------------------------------------------------- the dv equation
def _np_act(g):
    from scipy.special import erf as sp_erf

    if isinstance(g, jd.ReLU):
        return lambda x: np.maximum(x, 0)
    if isinstance(g, jd.Erf):
        return lambda x: sp_erf(x / np.sqrt(2))
    if isinstance(g, jd.Tanh):
        return np.tanh
    raise TypeError(g)


@pytest.mark.parametrize("g, mean_field", [(jd.ReLU(), False), (jd.Erf(), True), (jd.Tanh(), False)])
def test_dv_against_monte_carlo(g, mean_field, rng):
    """dv_i/dalpha = eta_v s <g(x_i) (tau - sigma)> - eta_v lambda_v v_i against a Monte Carlo
    average over sampled pre-activations (closed-form I2 for ReLU and erf, quadrature for tanh)."""
    K, M = 3, 2
    A = rng.normal(size=(K + M, K + M + 2))
    C = A @ A.T / (K + M + 2)
    v = np.array([0.8, -0.3, 1.1])
    w = np.array([1.0, 0.6])
    sc = jd.Scenario(K=K, M=M, T=C[K:, K:], g=g, w=w, eta_v=0.7, weight_decay_v=0.2,
                     mean_field=mean_field)
    op = jd.OrderParams(Q=C[:K, :K], R=C[:K, K:], v=v)
    dv = np.asarray(jd.vector_field(sc, op, 0.4, eta2=False).v)  # dv has no eta^2 term
    s = 1 / K if mean_field else 1.0
    f = _np_act(g)
    z = rng.normal(size=(400_000, K + M)) @ np.linalg.cholesky(C).T
    x, y = z[:, :K], z[:, K:]
    samp = 0.7 * s * f(x) * (f(y) @ w - s * f(x) @ v)[:, None]
    mc = samp.mean(0) - 0.7 * 0.2 * v
    se = samp.std(0) / np.sqrt(len(z))
    assert np.all(np.abs(dv - mc) < 5 * se), (dv, mc, se)


def test_fixed_readout_limit_and_first_layer_terms():
    """A learned readout with eta_v = 0 leaves v constant and gives the fixed-v field for Q, R
    exactly (the first layer sees the current readout, with the eta^2 and noise terms)."""
    K, M = 2, 3
    Q = np.array([[0.9, 0.2], [0.2, 0.7]])
    R = np.array([[0.3, 0.1, -0.2], [0.05, 0.4, 0.1]])
    v = np.array([0.6, -1.3])
    common = dict(K=K, M=M, g=jd.Erf(), noise=0.2, weight_decay=0.01, batch_size=2)
    d_fix = jd.vector_field(jd.Scenario(v=v, **common), jd.OrderParams(Q=Q, R=R), 0.8)
    d_learn = jd.vector_field(jd.Scenario(eta_v=0.0, **common), jd.OrderParams(Q=Q, R=R, v=v), 0.8)
    np.testing.assert_allclose(d_learn.Q, d_fix.Q, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(d_learn.R, d_fix.R, rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(d_learn.v, 0.0)
    eg_fix = jd.eps_g(jd.Scenario(v=v, **common), jd.OrderParams(Q=Q, R=R))
    eg_learn = jd.eps_g(jd.Scenario(eta_v=0.0, **common), jd.OrderParams(Q=Q, R=R, v=v))
    np.testing.assert_allclose(eg_learn, eg_fix, rtol=1e-14)


# ----------------------------------------------------------------------------- fixed points
def test_fixed_point_extended_state_erf():
    """erf K = M = 2 with output noise: the fixed point near perfect learning in the extended state
    (Q, R, v). Its v-v Jacobian block is -eta_v G_QQ (the I2 matrix, closed form), and a small
    perturbation along an eigenvector decays in the integrated ODE at the eigenvalue's rate."""
    sc = jd.Scenario(K=2, M=2, g=jd.Erf(), eta_v=0.3, noise=0.3)
    pl = jd.OrderParams(Q=jnp.eye(2), R=jnp.eye(2), v=jnp.ones(2))
    fp = jd.fixed_point(sc, pl, eta=jnp.array(0.5))
    assert bool(fp.converged) and fp.kind == "stable" and int(fp.n_marginal) == 0
    assert fp.labels[-2:] == ("v1", "v2") and fp.x.shape == (9,)
    Q = np.asarray(fp.op.Q)
    i2 = lambda a, b, c: (2 / np.pi) * np.arcsin(c / np.sqrt((1 + a) * (1 + b)))
    G = np.array([[i2(Q[i, i], Q[k, k], Q[i, k]) for k in range(2)] for i in range(2)])
    np.testing.assert_allclose(np.asarray(fp.jacobian)[7:, 7:], -0.3 * G, rtol=1e-12, atol=1e-14)
    # linear decay along the eigenvector with the most negative (real, simple) eigenvalue
    lam = np.asarray(fp.eigenvalues)
    j = int(np.argmin(lam.real))
    assert abs(lam[j].imag) < 1e-12 and np.min(np.abs(np.delete(lam, j) - lam[j])) > 1e-3
    e = np.real(np.asarray(fp.eigenvectors)[:, j])
    x0 = np.asarray(fp.x) + 1e-5 * e
    op0 = jd.unflatten_op(jnp.asarray(x0), 2, 2)
    alpha = 4.0
    tr = jd.integrate(sc, op0, eta=0.5, alphas=jnp.array([0.0, alpha]), rtol=1e-12, atol=1e-14)
    d = np.asarray(jd.flatten_op(jd.OrderParams(Q=tr.Q[-1], R=tr.R[-1], v=tr.v[-1]))) - np.asarray(fp.x)
    rate = np.log(np.linalg.norm(d) / np.linalg.norm(x0 - np.asarray(fp.x))) / alpha
    assert abs(rate - lam[j].real) < 1e-3 * abs(lam[j].real), (rate, lam[j])


def test_continuation_in_the_extended_state():
    """Pseudo-arclength continuation in eta of the erf (noise 0.3) fixed point in (Q, R, v): the
    branch points are fixed points, and the last one agrees with an independent Newton solve started
    away from it at the same eta; v moves along the branch."""
    sc = jd.Scenario(K=2, M=2, g=jd.Erf(), eta_v=0.3, noise=0.3)
    pl = jd.OrderParams(Q=jnp.eye(2), R=jnp.eye(2), v=jnp.ones(2))
    br = jd.continuation(sc, pl, eta_start=0.5, eta_stop=1.0, ds=0.1, ds_max=0.2, max_points=20,
                         residual_tol=1e-10)
    assert br.labels[-2:] == ("v1", "v2") and br.x.shape[1] == 9
    assert br.eta[-1] >= 1.0 and np.all(br.residual < 1e-10)
    guess = jd.unflatten_op(jnp.asarray(br.x[-1]) * 0.98, 2, 2)
    fp = jd.fixed_point(sc, guess, eta=br.eta[-1])
    assert bool(fp.converged)
    np.testing.assert_allclose(np.asarray(fp.x), br.x[-1], atol=1e-8)
    assert abs(br.x[-1][-1] - br.x[0][-1]) > 1e-3  # the readout is part of the branch
    assert br.op(len(br.eta) - 1).v.shape == (2,)


@pytest.mark.parametrize("K", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_relu_perfect_learning_is_a_continuous_family(K):
    """ReLU K = M with a learned readout: perfect learning is a family (each unit can trade its
    norm for its readout, (R_i, Q_ii, Q_ik, v_i) -> (c R_i, c^2 Q_ii, c Q_ik, v_i / c)). The
    analytic tangents of the family are null vectors of the Jacobian, there are exactly K zero
    eigenvalues (`n_marginal`), the rest are negative, and continuation refuses to start there.
    (K = 1 by default, K = 2 in the slow run.)"""
    sc = jd.Scenario(K=K, M=K, g=jd.ReLU(), eta_v=0.3)
    # a point of the family: unit 1 scaled by c = 1.3
    c = 1.3
    scale = np.ones(K)
    scale[0] = c
    Q = np.diag(scale**2)
    R = np.diag(scale)
    v = 1 / scale
    fp = jd.fixed_point(sc, jd.OrderParams(Q=Q, R=R, v=v), eta=0.5)
    assert bool(fp.converged) and int(fp.n_marginal) == K and fp.kind == "marginal"
    lam = np.asarray(fp.eigenvalues).real
    assert np.all(lam[K:] < -1e-3)
    J = np.asarray(fp.jacobian)
    labels = fp.labels
    for i in range(K):
        t = np.zeros(len(labels))
        for n in range(K):
            t[labels.index(f"R{i + 1}{n + 1}")] = R[i, n]
        for k in range(K):
            a, b = sorted((i, k))
            t[labels.index(f"Q{a + 1}{b + 1}")] += (2 if i == k else 1) * Q[i, k]
        t[labels.index(f"v{i + 1}")] = -v[i]
        assert np.linalg.norm(J @ t) < 1e-10 * np.linalg.norm(J) * np.linalg.norm(t)
    with pytest.raises(ValueError, match="continuous family"):
        jd.continuation(sc, fp.op, eta_start=0.5, eta_stop=1.0, residual_tol=1e-10)


# ----------------------------------------------------------------------------- bad input
def test_bad_input_clear_errors():
    with pytest.raises(ValueError, match="eta_v must be >= 0"):
        jd.Scenario(K=2, M=2, eta_v=-0.1)
    with pytest.raises(ValueError, match="weight_decay_v needs a learned readout"):
        jd.Scenario(K=2, M=2, weight_decay_v=0.1)
    with pytest.raises(ValueError, match="mean_field=True needs a learned readout"):
        jd.Scenario(K=2, M=2, mean_field=True)

    class NoAverages(jd.AbstractActivation):  # no __call__: no I2 for the dv equation
        pass

    with pytest.raises(ValueError, match="learning the readout"):
        jd.Scenario(K=2, M=2, g=NoAverages(), eta_v=0.3)
    sc = jd.Scenario(K=2, M=2, g=jd.Erf(), eta_v=0.3)
    bad = jd.OrderParams(Q=jnp.eye(2), R=0.1 * jnp.eye(2), v=jnp.ones(3))
    with pytest.raises(ValueError, match=r"v \(v0\) must have shape \(2,\)"):
        jd.integrate(sc, bad, eta=0.5, alphas=[0.0, 1.0])
    with pytest.raises(ValueError, match=r"v \(v0\) must have shape"):
        jd.simulate(sc, bad, eta=0.5, N=100, alphas=[0.0, 1.0])
    with pytest.raises(ValueError, match=r"v0 \(op0.v\) must have shape"):
        jd.init_weights(jax.random.key(0), sc, bad, N=100)
    with pytest.raises(ValueError, match="scenario keeps v fixed"):
        jd.integrate(jd.Scenario(K=2, M=2), jd.OrderParams(Q=jnp.eye(2), R=0.1 * jnp.eye(2),
                                                            v=jnp.ones(2)), eta=0.5, alphas=[1.0])
    with pytest.raises(ValueError, match="must carry it"):
        jd.vector_field(sc, jd.OrderParams(Q=jnp.eye(2), R=0.1 * jnp.eye(2)), 0.5)


def test_readout_under_jit_and_grad():
    """The learned-readout field works under jit and is differentiable in eta_v (traced)."""
    op = jd.OrderParams(Q=jnp.eye(2) * 0.8, R=0.2 * jnp.eye(2), v=jnp.array([0.5, 0.9]))

    def dv1(eta_v):
        sc = jd.Scenario(K=2, M=2, g=jd.Erf(), eta_v=eta_v)
        return jd.vector_field(sc, op, 0.5).v[0]

    d = jax.jit(jax.grad(dv1))(0.3)
    np.testing.assert_allclose(d, dv1(0.3) / 0.3, rtol=1e-12)  # dv is linear in eta_v
