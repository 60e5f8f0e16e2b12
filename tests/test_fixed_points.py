"""Fixed points, spectra, implicit derivatives, symmetric searches and continuation."""

import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd


def test_jacobian_finite_at_perfect_learning():
    """The eta^2 field (exact ReLU I4) has a finite Jacobian at the singular covariance of perfect
    learning (student = teacher): the fixed-point and threshold tests below rely on it."""
    from jaxdyn._fixed_points import flat_field

    sc = jd.Scenario(K=1, M=1)
    J = jax.jacfwd(lambda y: flat_field(sc, y, 1.0))(jnp.array([1.0, 1.0]))
    assert bool(jnp.all(jnp.isfinite(J)))


def test_flat_coordinates_roundtrip():
    assert jd.flat_labels(2, 2) == ("R11", "R12", "R21", "R22", "Q11", "Q12", "Q22")
    op = jd.OrderParams(Q=jnp.array([[1.0, 0.2], [0.2, 2.0]]), R=jnp.array([[0.1, 0.2], [0.3, 0.4]]))
    x = jd.flatten_op(op)
    np.testing.assert_array_equal(x, [0.1, 0.2, 0.3, 0.4, 1.0, 0.2, 2.0])
    back = jd.unflatten_op(x, 2, 2)
    np.testing.assert_array_equal(back.Q, op.Q)
    np.testing.assert_array_equal(back.R, op.R)
    xb = jnp.stack([x, 2 * x])  # batched
    assert jd.unflatten_op(xb, 2, 2).Q.shape == (2, 2, 2)
    with pytest.raises(ValueError):
        jd.unflatten_op(x[:5], 2, 2)


def test_paper000_plateau_fixed_point_spectrum():
    """Paper 000 fig. 2: plateau R_in ~ 0.52, one unstable eigenvalue 0.24 (per unit eta*alpha,
    i.e. d/dalpha at eta = 1), eigenvector (.5, -.5, -.5, .5, 0, 0, 0)."""
    sc = jd.Scenario(K=2, M=2)
    fp = jd.papers.plateau_fixed_point(sc, 1.0, eta2=False)
    x = np.asarray(fp.x)
    assert bool(fp.converged) and fp.kind == "saddle" and int(fp.n_unstable) == 1
    assert np.allclose(x[:4], x[0], atol=1e-12) and np.round(x[0], 2) == 0.52
    lam = np.asarray(fp.eigenvalues)
    assert np.round(lam[0].real, 2) == 0.24 and abs(lam[0].imag) < 1e-12
    # against the spectrum of a central-difference Jacobian (independent of jacfwd)
    from jaxdyn._fixed_points import flat_field

    h = 1e-6
    f = lambda y: np.asarray(flat_field(sc, jnp.asarray(y), 1.0, eta2=False))
    Jfd = np.stack([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in np.eye(x.size)], axis=1)
    assert lam[0].real == pytest.approx(np.max(np.linalg.eigvals(Jfd).real), abs=1e-6)
    u = np.asarray(fp.eigenvectors)[:, 0].real
    np.testing.assert_allclose(u / np.linalg.norm(u), [0.5, -0.5, -0.5, 0.5, 0, 0, 0], atol=1e-8)
    # the small-eta field is proportional to eta: so is the spectrum
    fp01 = jd.papers.plateau_fixed_point(sc, 0.1, eta2=False)
    np.testing.assert_allclose(np.asarray(fp01.x), x, atol=1e-8)
    np.testing.assert_allclose(np.asarray(fp01.eigenvalues).real, 0.1 * lam.real, atol=1e-8)
    # the same point from the full-space search
    full = jd.fixed_point(sc, fp.op, eta=jnp.asarray(1.0), eta2=False)
    np.testing.assert_allclose(np.asarray(full.x), x, atol=1e-8)


def test_eigenvalues_against_numpy():
    sc = jd.Scenario(K=2, M=2)
    fp = jd.papers.plateau_fixed_point(sc, 0.7, eta2=False)
    J = np.asarray(fp.jacobian)
    ref = np.linalg.eigvals(J)
    ref = ref[np.lexsort((ref.imag, -ref.real))]
    np.testing.assert_allclose(np.asarray(fp.eigenvalues), ref, atol=1e-12)
    V = np.asarray(fp.eigenvectors)
    lam = np.asarray(fp.eigenvalues)
    np.testing.assert_allclose(J @ V, V * lam[None, :], atol=1e-10)
    # erf with the eta^2 term, complex-free check against numpy as well
    sce, fpe = _erf_setup()
    J = np.asarray(fpe.jacobian)
    ref = np.linalg.eigvals(J)
    ref = ref[np.lexsort((ref.imag, -ref.real))]
    np.testing.assert_allclose(np.asarray(fpe.eigenvalues), ref, atol=1e-12)


@pytest.mark.parametrize("K", [2, 3])
def test_paper003_identical_student_saddle(K):
    """Paper 003 theorem: identical students, T = I, all R_in = (sqrt(K-1) - acos(1/sqrt K) + pi)/(pi K)."""
    fp = jd.papers.tian_saddle(K)
    x = np.asarray(fp.x)
    np.testing.assert_allclose(x[: K * K], jd.papers.tian_R(K), atol=1e-12)
    np.testing.assert_allclose(x[K * K:], K * jd.papers.tian_R(K) ** 2, atol=1e-12)  # J_i = R* sum_n B_n
    assert fp.kind == "saddle" and float(fp.residual) < 1e-8
    # attracting inside the identical-student subspace (so x0 = y0 converges to it), unstable outside
    assert np.all(np.asarray(fp.subspace_eigenvalues()).real < 0)
    assert int(fp.n_unstable) >= 2


def test_plateau_is_not_the_identical_student_saddle():
    sc = jd.Scenario(K=2, M=2)
    pl = jd.papers.plateau_fixed_point(sc, 1.0, eta2=False)
    ti = jd.papers.tian_saddle(2)
    assert float(pl.x[0]) < float(ti.x[0]) - 0.005
    assert float(pl.x[5]) < float(pl.x[4]) - 0.3  # Q12 < Q11: students differ
    assert int(pl.n_unstable) == 1 < int(ti.n_unstable)
    assert float(jd.eps_g(sc, pl.op)) < float(jd.eps_g(sc, ti.op))


def _erf_setup():
    sc = jd.Scenario(K=2, M=2, g=jd.Erf())
    fp = jd.papers.plateau_fixed_point(sc, 0.8, guess=jd.papers.symmetric_guess(sc, r=0.5, q=0.7, c=0.45))
    assert bool(fp.converged) and float(fp.residual) < 1e-12
    return sc, fp


# extended (35 s on 2 cores); default run: the same implicit derivative in the scenario's T
# (test_implicit_derivative_scenario_vs_finite_differences) and in eta for K = M = 1
# (test_tracing.py::test_fixed_point_under_jit_and_jacfwd)
@pytest.mark.extended
def test_implicit_derivative_eta_vs_finite_differences():
    sc, fp = _erf_setup()
    x0 = fp.x
    f = lambda e: jd.fixed_point(sc, x0, eta=e).x
    e0 = jnp.asarray(0.8)
    d_impl = np.asarray(jax.jacfwd(f)(e0))
    h = 1e-5
    d_fd = (np.asarray(f(e0 + h)) - np.asarray(f(e0 - h))) / (2 * h)
    np.testing.assert_allclose(d_impl, d_fd, rtol=1e-6, atol=1e-8)
    from jaxdyn._fixed_points import fixed_point_eta_derivative

    np.testing.assert_allclose(fixed_point_eta_derivative(fp, sc), d_impl, rtol=1e-8, atol=1e-10)
    # reverse mode, and the derivative of the stability margin
    g = lambda e: jd.fixed_point(sc, x0, eta=e).max_real
    d_rev = float(jax.grad(g)(e0))
    d_fd = (float(g(e0 + h)) - float(g(e0 - h))) / (2 * h)
    assert d_rev == pytest.approx(d_fd, rel=1e-5)


def test_implicit_derivative_scenario_vs_finite_differences():
    sc, fp = _erf_setup()
    x0 = fp.x

    def f(t22):
        s = eqx.tree_at(lambda s: s.T, sc, jnp.diag(jnp.stack([jnp.asarray(1.0), t22])))
        return jd.fixed_point(s, x0, eta=jnp.asarray(0.8)).x

    t = jnp.asarray(1.0)
    d = np.asarray(jax.jacfwd(f)(t))
    h = 1e-5
    d_fd = (np.asarray(f(t + h)) - np.asarray(f(t - h))) / (2 * h)
    np.testing.assert_allclose(d, d_fd, rtol=1e-6, atol=1e-8)


def test_no_recompile_across_eta():
    sc, fp = _erf_setup()
    jd.fixed_point(sc, fp.x, eta=jnp.asarray(0.81))
    t0 = time.perf_counter()
    for e in (0.82, 0.83):
        jd.fixed_point(sc, fp.x, eta=jnp.asarray(e))
    assert time.perf_counter() - t0 < 1.0


def test_symmetric_search_and_bad_subspace():
    sc = jd.Scenario(K=2, M=2)
    g = jd.papers.symmetric_guess(sc)
    P = jd.symmetry_basis(2, 2, *jd.symmetry_patterns(2, 2, "unspecialised"))
    assert P.shape == (7, 4)  # r1, r2, q, c
    fp = jd.symmetric_fixed_point(sc, g, eta=jnp.asarray(1.0), eta2=False)
    assert bool(fp.converged)
    assert len(fp.subspace_eigenvalues()) == 4
    # a subspace that is not invariant (all R_in and Q12 tied to one value) holds no true fixed
    # point: the full-space residual says so
    P_bad = np.zeros((7, 2))
    P_bad[[0, 1, 2, 3, 5], 0] = 1.0
    P_bad[[4, 6], 1] = 1.0
    bad = jd.fixed_point(sc, g, eta=jnp.asarray(1.0), eta2=False, symmetry=P_bad)
    assert not bool(bad.converged)


def test_continuation_erf_branch_points_are_fixed_points():
    sc, fp = _erf_setup()
    br = jd.continuation(sc, fp.x, eta_start=0.8, eta_stop=1.2, ds_max=0.1, max_points=40)
    assert br.eta[-1] >= 1.2 - 1e-12 or br.stopped != "max_points"
    assert np.all(br.residual < 1e-8)
    i = len(br.eta) // 2
    ref = jd.fixed_point(sc, br.x[i], eta=jnp.asarray(br.eta[i]))
    np.testing.assert_allclose(np.asarray(ref.x), br.x[i], atol=1e-9)


@pytest.mark.parametrize("eta", [0.5, 1.9, 2.5])
def test_paper000_kmm1_perfect_learning(eta):
    sc = jd.Scenario(K=1, M=1)
    fp = jd.fixed_point(sc, jd.papers.perfect_learning(sc), eta=jnp.asarray(eta))
    lam = np.sort(np.asarray(fp.eigenvalues).real)
    np.testing.assert_allclose(lam, np.sort([-eta / 2, eta**2 / 2 - eta]), atol=1e-10)
    assert fp.kind == ("stable" if eta < 2 else "saddle")


@pytest.mark.slow
def test_paper001_plateau_fold():
    """Paper 001: the plateau fixed point disappears at eta ~ 1.2545; exact I4: 1.2543259 (in the
    paper's 5e-4 grid cell (1.2540, 1.2545])."""
    sc, _ = jd.papers.paper001()
    fp = jd.papers.plateau_fixed_point(sc, 1.2)
    th = jd.fold_eta(sc, fp.x, eta_start=1.2, eta_stop=1.5)
    assert 1.2540 < th.value <= 1.2545  # the paper's 5e-4 grid cell
    # independent of the refinement: every branch point lies below the fold, the closest within
    # the branch's resolution; slightly above the fold Newton finds no fixed point nearby
    br = jd.continuation(sc, fp.x, eta_start=1.2, eta_stop=1.5, ds_max=0.01, stop_at_fold=True)
    assert 0 <= th.value - float(np.max(br.eta)) < 1e-6
    x_f = np.asarray(th.details["x"])
    above = jd.fixed_point(sc, jnp.asarray(x_f), eta=jnp.asarray(th.value + 1e-5))
    assert not (bool(above.converged) and np.max(np.abs(np.asarray(above.x) - x_f)) < 0.05)
    below = jd.fixed_point(sc, jnp.asarray(x_f), eta=jnp.asarray(th.value - 1e-5))
    assert bool(below.converged) and np.max(np.abs(np.asarray(below.x) - x_f)) < 0.05
    assert th.details["min_abs_eigenvalue"] < 1e-6
    assert th.details["n_unstable_on_branch"] == 1 and th.details["n_unstable_partner"] == 2
