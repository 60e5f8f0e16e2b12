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
