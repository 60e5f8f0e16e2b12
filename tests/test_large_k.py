"""ReLU at large K: the pencil method of `stability_threshold` against closed forms (papers 000,
001), against continuation, and its refusal where the fixed point moves with eta."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd
from jaxdyn.figures import large_k as lk


def test_pencil_kmm1_is_2_and_stable_below_unstable_above():
    """Paper 000: K = M = 1 perfect learning, eigenvalues -eta/2 and eta^2/2 - eta: eta_c = 2."""
    for t in (1.0, 2.5):
        sc = jd.Scenario(K=1, M=1, T=[[t]])
        pl = jd.OrderParams(Q=sc.T, R=sc.T)
        th = jd.stability_threshold(sc, pl, eta_bracket=(0.5, 3.0), method="pencil")
        assert th.value == pytest.approx(2.0, abs=1e-12)
        assert th.details["method"] == "pencil" and not th.details["hopf"]
        assert (th.details["n_unstable_before"], th.details["n_unstable_after"]) == (0, 1)
        for e, kind in [(1.99, "stable"), (2.01, "saddle")]:
            assert jd.fixed_point(sc, pl, eta=jnp.asarray(e)).kind == kind


def test_pencil_refuses_a_moving_fixed_point():
    """With output noise perfect learning is no longer a fixed point for every eta."""
    sc = jd.Scenario(K=1, M=1, noise=0.3)
    pl = jd.OrderParams(Q=sc.T, R=sc.T)
    with pytest.raises(ValueError, match="moves with eta"):
        jd.stability_threshold(sc, pl, eta_bracket=(0.5, 3.0), method="pencil")
    with pytest.raises(ValueError, match="method"):
        jd.stability_threshold(sc, pl, eta_bracket=(0.5, 3.0), method="newton")


def test_near_perfect_learning_is_a_valid_covariance():
    for kind in ("isotropic", "graded"):
        op = lk.near_perfect_learning(3, kind, delta=1e-3)
        sc = jd.Scenario(K=3, M=3, T=lk.teacher(3, kind))
        C = np.block([[np.asarray(op.Q), np.asarray(op.R)], [np.asarray(op.R).T, np.asarray(sc.T)]])
        assert np.min(np.linalg.eigvalsh(C)) > -1e-12
        assert np.max(np.abs(np.asarray(op.R) - np.asarray(sc.T))) < 1e-2


@pytest.mark.slow
def test_pencil_kmm2_closed_form_continuation_and_trajectories():
    """Paper 001: K = M = 2, any diagonal T: 3 - sqrt(3); the same number by continuation; and
    trajectories from near perfect learning converge 2% below and leave it 2% above."""
    for kind in ("isotropic", "graded"):
        th = lk.perfect_learning_eta_c(2, kind)
        assert th.value == pytest.approx(3 - np.sqrt(3), abs=1e-12)
    sc = jd.Scenario(K=2, M=2, T=lk.teacher(2, "graded"))
    pl = jd.OrderParams(Q=sc.T, R=sc.T)
    tc = jd.stability_threshold(sc, pl, eta_bracket=(1.0, 2.0), method="continuation")
    assert tc.value == pytest.approx(3 - np.sqrt(3), abs=1e-9)
    chk = lk.trajectory_check(2, "isotropic", th.value)
    assert chk["confirms"], chk


def _pencil_crossings(K, T):
    sc = jd.Scenario(K=K, M=K, T=T)
    pl = jd.OrderParams(Q=sc.T, R=sc.T)
    th = jd.stability_threshold(sc, pl, eta_bracket=(0.1, 3.0), method="pencil",
                                with_fixed_point=False)
    rc = np.sort(np.asarray(th.details["real_crossings"]))
    # the K^2 modes along the teacher have no eta^2 term: infinite generalised eigenvalues,
    # returned by LAPACK as inf or as ~1/eps
    return th, rc[rc < 1e8]


@pytest.mark.parametrize("K, T", [
    (1, [[1.0]]), (2, np.eye(2)), (2, np.diag([1.0, 2.0])),
    # K = 3 (10-12 s each) in the extended set; K = 4-6 are slow
    pytest.param(3, np.eye(3), marks=pytest.mark.extended),
    pytest.param(3, np.diag([0.5, 3.0, 1.7]), marks=pytest.mark.extended),
])
def test_pencil_spectrum_matches_the_derivation(K, T):
    """The whole derived spectrum of perfect learning (docs/large_k.md: every eta at which a mode
    of the perfect-learning Jacobian crosses zero, with multiplicities), against the generalised
    eigenvalues of the Jacobians that jaxdyn's exact-I4 field gives by `jacfwd`. Independent:
    hand algebra on orthant probabilities vs autodiff of the ODE. Tolerance 1e-10: the pencil's
    eigenvalues carry ~1e-13 of rounding (A and B are differences of Jacobians at two etas)."""
    th, rc = _pencil_crossings(K, jnp.asarray(T, float))
    want = lk.pencil_spectrum(K)
    assert rc.shape == want.shape, (rc, want)
    np.testing.assert_allclose(rc, want, rtol=1e-10, atol=0)
    assert th.value == pytest.approx(float(lk.closed_form_eta_c(K)), rel=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("K", [4, 5, 6])
def test_pencil_spectrum_matches_the_derivation_larger_K(K):
    for T in (np.eye(K), np.diag(np.arange(1.0, K + 1))):
        th, rc = _pencil_crossings(K, jnp.asarray(T))
        np.testing.assert_allclose(rc, lk.pencil_spectrum(K), rtol=1e-10, atol=0)


def test_pencil_spectrum_bad_input():
    with pytest.raises(ValueError, match="K must be"):
        lk.pencil_spectrum(0)


@pytest.mark.slow
def test_plateau_fold_kmm2_paper001_and_trajectories():
    """Paper 001's setting (K = M = 2, T = diag(1, 2)): the plateau disappears at 1.2543259
    (`fold_eta`, full-space pseudo-arclength continuation; paper: ~1.2545 on a 5e-4 grid); the
    subspace continuation of `plateau_fold` must give the same fold to 1e-9 (both refine the
    same root of d eta / ds to ~1e-13). The trajectory from the unspecialised start reaches a fixed
    point 0.3 % below the fold and none 0.3 % above it."""
    f = lk.plateau_fold(2, "graded")
    assert f["eta_fold"] == pytest.approx(1.25432587, abs=2e-8)
    assert f["residual"] < 1e-12 and f["min_singular_value"] < 1e-10
    chk = lk.fold_trajectory_check(2, "graded", f["eta_fold"], f["eps_g"])
    assert chk["confirms"], chk
