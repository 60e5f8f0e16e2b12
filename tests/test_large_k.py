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
