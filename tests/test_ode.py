"""The order-parameter vector field against independent references.

- Monte Carlo of the defining averages <delta_i y_n>, <delta_i x_k + delta_k x_i>, <delta_i delta_k>
  (sampled pre-activations, SE-based tolerances), for general K, M, T, v, w, noise, weight decay,
  minibatch size and mismatched activations;
- closed-form results of paper 000 (K=M=1 eigenvalues, eta_c = 2) and its figure values.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest
from scipy.special import erf as sp_erf

import jaxdyn as jd

from helpers import overlap_blocks, random_psd


def _np_act(g):
    if isinstance(g, jd.ReLU):
        return (lambda x: np.maximum(x, 0)), (lambda x: (x > 0).astype(float))
    if isinstance(g, jd.Erf):
        return (lambda x: sp_erf(x / np.sqrt(2))), (lambda x: np.sqrt(2 / np.pi) * np.exp(-x**2 / 2))
    if isinstance(g, jd.Linear):
        return (lambda x: x), (lambda x: np.ones_like(x))
    raise TypeError(g)


def _random_state(rng, K, M, scale=1.0):
    return overlap_blocks(random_psd(rng, K + M, rank=K + M + 2, scale=scale**2), K)


def _mc_field(sc, Q, R, T, eta, eta2, n, rng, chunks=8):
    """Monte Carlo estimate (mean, standard error) of dQ, dR from sampled (x, y) and noise."""
    K, M = sc.K, sc.M
    C = np.block([[Q, R], [R.T, T]])
    L = np.linalg.cholesky(C + 1e-14 * np.eye(K + M))
    g, dg = _np_act(sc.g)
    gs, _ = _np_act(sc.g_teacher)
    v, w = np.asarray(sc.v), np.asarray(sc.w)
    noise, lam, B = float(sc.noise), float(sc.weight_decay), float(sc.batch_size)
    dR_s, dQ_s = [], []
    for _ in range(chunks):
        z = rng.normal(size=(n // chunks, K + M)) @ L.T
        x, y = z[:, :K], z[:, K:]
        tau = gs(y) @ w + noise * rng.normal(size=len(z))
        sigma = g(x) @ v
        delta = v * dg(x) * (tau - sigma)[:, None]
        dR = eta * delta[:, :, None] * y[:, None, :]
        dQ = eta * (delta[:, :, None] * x[:, None, :] + delta[:, None, :] * x[:, :, None])
        if eta2:
            dQ = dQ + eta**2 / B * delta[:, :, None] * delta[:, None, :]
        dR_s.append(dR)
        dQ_s.append(dQ)
    dR, dQ = np.concatenate(dR_s), np.concatenate(dQ_s)
    se = lambda a: a.std(axis=0) / np.sqrt(len(a))
    dR_m = dR.mean(0) - eta * lam * R
    dQ_m = dQ.mean(0) - 2 * eta * lam * Q
    return dQ_m, se(dQ), dR_m, se(dR)


CASES = [
    dict(K=2, M=3, g=jd.Erf(), eta2=True),
    dict(K=3, M=2, g=jd.Linear(), eta2=True),
    dict(K=2, M=2, g=jd.ReLU(), eta2=False),
    dict(K=3, M=2, g=jd.Erf(), eta2=True, noise=0.3, weight_decay=0.05, batch_size=4),
    dict(K=2, M=2, g=jd.ReLU(), eta2=False, g_teacher=jd.ReLU(), v=[0.7, 1.3], w=[1.2, 0.5]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"K{c['K']}M{c['M']}-{c['g'].name}")
def test_vector_field_vs_monte_carlo(case, rng):
    case = dict(case)
    eta2 = case.pop("eta2")
    K, M = case["K"], case["M"]
    Q, R, T = _random_state(rng, K, M)
    sc = jd.Scenario(T=T, **case)
    eta = 0.7
    d = jd.vector_field(sc, jd.OrderParams(Q=Q, R=R), eta, eta2=eta2)
    dQ_m, dQ_se, dR_m, dR_se = _mc_field(sc, Q, R, T, eta, eta2, 2_000_000, rng)
    # 5 standard errors: a false alarm on any of ~20 entries has probability < 1e-5
    np.testing.assert_array_less(np.abs(np.asarray(d.R) - dR_m), 5 * dR_se + 1e-12)
    np.testing.assert_array_less(np.abs(np.asarray(d.Q) - dQ_m), 5 * dQ_se + 1e-12)
    np.testing.assert_allclose(d.Q, np.swapaxes(d.Q, -1, -2), atol=1e-14)


def test_vector_field_batched_and_jitted(rng):
    sc = jd.Scenario(K=2, M=2, g=jd.Erf())
    Qs, Rs = [], []
    for _ in range(5):
        Q, R, _ = _random_state(rng, 2, 2)
        Qs.append(Q)
        Rs.append(R)
    ops = jd.OrderParams(Q=np.stack(Qs), R=np.stack(Rs))
    batched = jd.vector_field(sc, ops, 0.5)
    f = jax.jit(lambda op: jd.vector_field(sc, op, 0.5))
    for b in range(5):
        one = f(jd.OrderParams(Q=Qs[b], R=Rs[b]))
        np.testing.assert_allclose(batched.Q[b], one.Q, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(batched.R[b], one.R, rtol=1e-13, atol=1e-15)


def test_eps_g_closed_forms():
    # K = M = 1, ReLU: eps_g = Q/4 + 1/4 - 2 I2(R) with I2 of paper 002 eq. 28
    sc = jd.Scenario(K=1, M=1)
    for Q, R in [(1.0, 0.0), (0.5, 0.3), (2.0, 1.2)]:
        rho = R / np.sqrt(Q)
        i2 = R / 4 + (np.sqrt(Q - R**2) + R * np.arcsin(rho)) / (2 * np.pi)
        ref = 0.5 * (Q / 2 - 2 * i2 + 0.5)
        assert float(jd.eps_g(sc, jd.OrderParams(Q=[[Q]], R=[[R]]))) == pytest.approx(ref, abs=1e-14)
    # erf, perfect learning and the K=M=1 value at R = 0, Q = T = 1: 1/3 + 1/3 = 2/3 -> eps_g = 1/3
    sce = jd.Scenario(K=1, M=1, g=jd.Erf())
    assert float(jd.eps_g(sce, jd.OrderParams(Q=[[1.0]], R=[[0.0]]))) == pytest.approx(1 / 3, abs=1e-14)
    assert float(jd.eps_g(sce, jd.OrderParams(Q=[[1.0]], R=[[1.0]]))) == pytest.approx(0.0, abs=1e-14)


def _flat_field(sc, eta, eta2):
    def f(x):
        d = jd.vector_field(sc, jd.OrderParams(Q=x[1:2, None], R=x[0:1, None]), eta, eta2=eta2)
        return jnp.stack([d.R[0, 0], d.Q[0, 0]])

    return f


@pytest.mark.parametrize("eta", [0.3, 1.0, 1.9, 2.5])
def test_paper000_kmm1_eigenvalues(eta):
    """Paper 000: at (R, Q) = (1, 1) the eigenvalues are -eta/2 and eta^2/2 - eta (eta_c = 2),
    with eigenvectors (1/2, 1) and (0, 1). Jacobian by jax.jacfwd at the singular point R^2 = QT."""
    sc = jd.Scenario(K=1, M=1)
    x = jnp.array([1.0, 1.0])
    assert np.allclose(_flat_field(sc, eta, True)(x), 0.0, atol=1e-15)
    J = np.asarray(jax.jacfwd(_flat_field(sc, eta, True))(x))
    assert np.all(np.isfinite(J))
    lam, vec = np.linalg.eig(J)
    order = np.argsort(lam)
    ref = np.sort([-eta / 2, eta**2 / 2 - eta])
    np.testing.assert_allclose(np.sort(lam.real), ref, atol=1e-12)
    if abs(eta - 1.0) > 1e-9:  # at eta = 1 the two eigenvalues coincide (-1/2)
        u1 = vec[:, np.argmin(np.abs(lam + eta / 2))]
        assert abs(u1[0] / u1[1] - 0.5) < 1e-12
        u2 = vec[:, np.argmin(np.abs(lam - (eta**2 / 2 - eta)))]
        assert abs(u2[0]) < 1e-12
    assert (eta**2 / 2 - eta < 0) == (eta < 2)
    del order


def test_paper000_kmm1_small_eta_jacobian():
    # without the eta^2 term the second eigenvalue is -eta: stable for every eta
    sc = jd.Scenario(K=1, M=1)
    J = np.asarray(jax.jacfwd(_flat_field(sc, 0.5, False))(jnp.array([1.0, 1.0])))
    np.testing.assert_allclose(np.sort(np.linalg.eigvals(J).real), [-0.5, -0.25], atol=1e-13)


def test_paper000_k3m2_final_Q_table():
    """Paper 000 table (two decimals): ReLU Q22 .24, Q23 .25, Q33 .27; erf Q22 = Q23 = 0, Q33 = 1."""
    from jaxdyn.figures.paper000 import k3m2

    tr = k3m2(jd.ReLU(), n=20)
    Q = np.asarray(tr.Q[-1])
    assert tr.status == 0
    assert np.round(Q[1, 1], 2) == 0.24 and np.round(Q[1, 2], 2) == 0.25
    assert np.round(Q[2, 2], 2) == 0.27
    assert Q[0, 0] == pytest.approx(1.0, abs=1e-3)
    # the ReLU student combines two units into one teacher unit: J2 + J3 = B2 (R22 + R32 = 1)
    R = np.asarray(tr.R[-1])
    assert R[1, 1] + R[2, 1] == pytest.approx(1.0, abs=1e-3)
    assert float(tr.eps_g[-1]) < 1e-8
    tr = k3m2(jd.Erf(), n=20)
    Q = np.asarray(tr.Q[-1])
    np.testing.assert_allclose([Q[0, 0], Q[1, 1], Q[1, 2], Q[2, 2]], [1, 0, 0, 1], atol=2e-3)


def test_paper000_k2m3_unrealisable():
    """Paper 000 fig. 4: R22 = R23 = 0.94 (figure precision) and eps_g(inf) > 0."""
    from jaxdyn.figures.paper000 import k2m3

    tr = k2m3(n=20)
    R = np.asarray(tr.R[-1])
    assert R[1, 1] == pytest.approx(R[1, 2], abs=1e-8)  # teachers 2 and 3 enter symmetrically
    assert abs(R[1, 1] - 0.94) < 0.01  # read off a figure: two digits
    assert float(tr.eps_g[-1]) > 0.05


def test_paper000_k2m2_plateau_is_the_symmetric_fixed_point():
    """Paper 000 fig. 2: the plateau R_in ~ 0.52 is the unspecialised fixed point of the small-eta
    ODE (all R_in = r, Q11 = Q22 = q, Q12 = c), found here by Newton's method (optimistix)."""
    from jaxdyn.figures.paper000 import k2m2_plateau, plateau_summary

    sc = jd.Scenario(K=2, M=2)

    def F(x, args):
        r, q, c = x
        op = jd.OrderParams(Q=jnp.array([[q, c], [c, q]]), R=jnp.full((2, 2), r))
        d = jd.vector_field(sc, op, 1.0, eta2=False)
        return jnp.stack([d.R[0, 0], d.Q[0, 0], d.Q[0, 1]])

    sol = optx.root_find(F, optx.Newton(rtol=1e-12, atol=1e-12), jnp.array([0.5, 0.5, 0.3]))
    r, q, c = np.asarray(sol.value)
    assert np.max(np.abs(F(sol.value, None))) < 1e-12
    assert np.round(r, 2) == 0.52
    plat = plateau_summary(k2m2_plateau(n=300))
    # the trajectory passes within a few 1e-2 of the fixed point (it is a saddle: no closer)
    assert plat["R_min"] < r < plat["R_max"]
