"""Critical learning rates: against closed forms, independent linear algebra and direct checks on
trajectories."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd
from jaxdyn._fixed_points import flat_field
from jaxdyn._thresholds import _illinois


def test_illinois_root_and_bracket():
    root, a, b, n = _illinois(lambda x: x**3 - 2.0, 0.0, 3.0, -2.0, 25.0, xtol=1e-13)
    assert root == pytest.approx(2 ** (1 / 3), abs=1e-12) and abs(b - a) <= 1e-13 and n < 60
    with pytest.raises(ValueError):
        _illinois(lambda x: x, 1.0, 2.0, 1.0, 2.0, xtol=1e-6)


def _generalised_eta_c(sc, x):
    """At a fixed point that exists for every eta (perfect learning) the Jacobian is
    eta A + eta^2 B; a real eigenvalue crosses 0 where det(A + eta B) = 0: eta in the spectrum of
    (A, -B). Independent of continuation and root finding."""
    J = lambda e: np.asarray(jax.jacfwd(lambda y: flat_field(sc, y, e))(x))
    J1, J2 = J(1.0), J(2.0)
    B = (J2 - 2 * J1) / 2
    A = J1 - B
    import scipy.linalg

    ev = scipy.linalg.eigvals(A, -B)  # A v = eta (-B) v; B is singular (no eta^2 in dR)
    ev = ev[np.isfinite(ev) & (np.abs(ev.imag) < 1e-10) & (ev.real > 0)].real
    return np.min(ev)


def test_erf_perfect_learning_stability_vs_linear_algebra():
    sc = jd.Scenario(K=1, M=1, g=jd.Erf())
    pl = jd.papers.perfect_learning(sc)
    th = jd.stability_threshold(sc, pl, eta_bracket=(0.5, 10.0))
    ref = _generalised_eta_c(sc, jd.flatten_op(pl))
    assert th.value == pytest.approx(ref, abs=1e-9)
    assert th.tol < 1e-8
    # the fixed point is stable just below and unstable just above
    for e, kind in [(th.value - 1e-4, "stable"), (th.value + 1e-4, "saddle")]:
        assert jd.fixed_point(sc, pl, eta=jnp.asarray(e)).kind == kind


def test_kmm1_relu_eta_c_is_2():
    """Paper 000: eta_c = 2 for K = M = 1, as a root-finding problem (and any teacher norm)."""
    for t in (1.0, 2.0):
        sc = jd.Scenario(K=1, M=1, T=[[t]])
        th = jd.stability_threshold(sc, jd.papers.perfect_learning(sc), eta_bracket=(0.5, 3.0))
        assert th.value == pytest.approx(2.0, abs=1e-9)


def test_kmm1_relu_divergence_vs_trajectories():
    """The divergence threshold from paper 000's initial condition, checked directly on
    trajectories on both sides."""
    sc = jd.Scenario(K=1, M=1)
    op0 = jd.OrderParams(Q=[[0.25]], R=[[0.0]])
    th = jd.divergence_eta(sc, op0, eta_bracket=(1.5, 3.0), alpha_max=500.0, xtol=1e-4)
    alphas = jnp.array([500.0])
    lo = jd.integrate(sc, op0, eta=th.value - 2e-3, alphas=alphas, throw=False)
    hi = jd.integrate(sc, op0, eta=th.value + 2e-3, alphas=alphas, throw=False)
    assert not bool(lo.diverged) and bool(hi.diverged)
    assert th.tol <= 1e-4


@pytest.mark.slow
def test_paper001_perfect_learning_threshold_closed_form():
    """K = M = 2, T = diag(1, 2): perfect learning loses stability at eta = 3 - sqrt(3)."""
    from jaxdyn.papers import paper001 as scenario_and_init

    sc, _ = scenario_and_init()
    pl = jd.papers.perfect_learning(sc)
    assert _generalised_eta_c(sc, jd.flatten_op(pl)) == pytest.approx(3 - np.sqrt(3), abs=1e-12)


@pytest.mark.slow
def test_paper001_perfect_learning_threshold_root_finding():
    from jaxdyn.papers import paper001 as scenario_and_init

    sc, _ = scenario_and_init()
    th = jd.stability_threshold(sc, jd.papers.perfect_learning(sc), eta_bracket=(1.0, 2.0))
    assert th.value == pytest.approx(3 - np.sqrt(3), abs=1e-10)


@pytest.mark.slow
def test_paper001_thresholds_vs_trajectories():
    """Paper 001 (exact I4): non-monotonic onset ~1.2175 and divergence ~1.2575, each checked on
    trajectories just below and above."""
    from jaxdyn.papers import paper001 as scenario_and_init

    sc, op0 = scenario_and_init()
    nm = jd.nonmonotonic_eta(sc, op0, eta_bracket=(1.20, 1.23), xtol=1e-7)
    # paper: ~1.2175, the end of a 5e-4 grid cell; the trajectories below are the real check
    assert 1.2170 < nm.value <= 1.2175
    alphas = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-3, 400.0, 6000)])
    for e, mono in [(nm.value - 1e-4, True), (nm.value + 1e-4, False)]:
        tr = jd.integrate(sc, op0, eta=e, alphas=alphas, rtol=1e-10, atol=1e-12)
        eg = np.asarray(tr.eps_g)
        d = np.diff(eg)[eg[1:] > 1e-7 * eg[0]]  # below that eps_g is rounding noise
        assert bool(np.all(d <= 0)) == mono
    dv = jd.divergence_eta(sc, op0, eta_bracket=(1.25, 1.27), xtol=1e-6)
    # paper: "above 1.2575"; at 1.2575 itself the trajectory converges (checked below)
    assert 1.2575 < dv.value <= 1.2580
    for e, div in [(dv.value - 1e-5, False), (dv.value + 1e-5, True)]:
        tr = jd.integrate(sc, op0, eta=e, alphas=jnp.array([2000.0]), throw=False)
        assert bool(tr.diverged) == div
    assert not bool(jd.integrate(sc, op0, eta=1.2575, alphas=jnp.array([2000.0])).diverged)


def test_newton_method_kmm1_closed_form_and_few_solves():
    """The general (moving fixed point) path, forced by an identity symmetry basis so that the
    pencil is skipped: K = M = 1 ReLU perfect learning loses stability at eta = 2 (paper 000),
    erf at the generalised eigenvalue of its Jacobians; a handful of Newton solves."""
    sc = jd.Scenario(K=1, M=1)
    th = jd.stability_threshold(sc, jd.papers.perfect_learning(sc), eta_bracket=(0.5, 3.0),
                                method="newton", symmetry=np.eye(2))
    assert th.value == pytest.approx(2.0, abs=1e-9)
    assert th.details["method"] == "newton" and th.details["n_solves"] <= 30
    assert (th.details["n_unstable_before"], th.details["n_unstable_after"]) == (0, 1)
    sc = jd.Scenario(K=1, M=1, g=jd.Erf())
    pl = jd.papers.perfect_learning(sc)
    th = jd.stability_threshold(sc, pl, eta_bracket=(0.5, 10.0), method="newton", symmetry=np.eye(2))
    assert th.value == pytest.approx(_generalised_eta_c(sc, jd.flatten_op(pl)), abs=1e-9)


def test_newton_method_stops_at_a_fold_and_auto_reports_it():
    """With output noise the K = M = 1 ReLU fixed point moves with eta and its branch folds at
    eta ~ 2.11326 (pseudo-arclength continuation); the Newton march stops just before the fold
    instead of jumping branches, and `"auto"` falls back to continuation, which names the fold."""
    sc = jd.Scenario(K=1, M=1, noise=0.5)
    pl = jd.papers.perfect_learning(sc)
    with pytest.raises(ValueError, match=r"leaves the branch near eta = 2\.1") as err:
        jd.stability_threshold(sc, pl, eta_bracket=(0.5, 3.0), method="newton")
    eta_stop = float(str(err.value).split("near eta = ")[1].split()[0])
    assert 2.09 < eta_stop < 2.11326
    with pytest.raises(ValueError, match=r"folds at eta ~ 2\.1132"):
        jd.stability_threshold(sc, pl, eta_bracket=(0.5, 3.0))
