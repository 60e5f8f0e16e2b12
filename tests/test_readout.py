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
