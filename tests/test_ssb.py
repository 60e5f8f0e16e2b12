"""Paper 003: single-ReLU convergence and spontaneous symmetry breaking of K ReLUs (cyclic ansatz),
checked against the full K d population-gradient flow, closed forms derived in jaxdyn/_ssb.py and
jaxdyn/_single_relu.py, finite differences, Monte Carlo, and jaxdyn's order-parameter fixed point."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd


def fd_jacobian(W, Wt, h=1e-6):
    """Central differences of the flow field -dL/dW (valid where units are distinct)."""
    W = np.asarray(W)
    K, d = W.shape
    f = jax.jit(lambda W: -jd.population_gradient(W, Wt).reshape(-1))
    J = np.zeros((K * d, K * d))
    for i in range(K * d):
        E = np.zeros(K * d)
        E[i] = h
        J[:, i] = (np.asarray(f((W.reshape(-1) + E).reshape(K, d)))
                   - np.asarray(f((W.reshape(-1) - E).reshape(K, d)))) / (2 * h)
    return J


# --------------------------------------------------------------------------- reduction
@pytest.mark.parametrize("K", [2, 3, 5])
def test_cyclic_field_is_the_projection_of_the_full_gradient(K):
    for x, y in [(0.3, 0.1), (0.1, 0.4), (0.7, 0.7), (-0.3, 0.6), (1.0, 0.0)]:
        W, Wt = jd.cyclic_weights(x, y, K=K, d=K + 2)
        F = -jd.population_gradient(W, Wt)
        fx, fy = jd.cyclic_field(x, y, K=K)
        Fc, _ = jd.cyclic_weights(fx, fy, K=K, d=K + 2)  # the full field keeps the ansatz
        assert np.max(np.abs(F - Fc)) < 3e-16 * K


def test_saddle_formula_K2_to_10():
    for K in range(2, 11):
        ys = jd.symmetric_saddle(K)
        assert abs(ys - (np.sqrt(K - 1) - np.arccos(1 / np.sqrt(K)) + np.pi) / (np.pi * K)) == 0
        z = np.asarray(jd.cyclic_fixed_point(0.5, 0.5, K=K))  # Newton on the closed-form field
        assert np.max(np.abs(z - ys)) < 1e-14, (K, z - ys)
    for K in (2, 5, 10):  # and a fixed point of the full K d flow (d = K + 1)
        ys = jd.symmetric_saddle(K)
        W, Wt = jd.cyclic_weights(ys, ys, K=K, d=K + 1)
        assert np.max(np.abs(jd.population_gradient(W, Wt))) < 1e-15 * K


def test_flow_from_the_diagonal_reaches_the_saddle_and_off_it_the_teacher():
    for K in (2, 5):
        ys = jd.symmetric_saddle(K)
        # identical students stay identical to the last bit in the full K d flow: x0 = y0 -> y*
        W0, Wt = jd.cyclic_weights(0.1, 0.1, K=K, d=K + 1)
        full = jd.gradient_flow(W0, Wt, times=jnp.array([0.0, 80.0]), rtol=1e-13, atol=1e-15)
        assert np.max(np.abs(full.W[-1] - jd.cyclic_weights(ys, ys, K=K, d=K + 1)[0])) < 1e-12
        # the reduced field is symmetric only to rounding, which the unstable direction (rate
        # beta_T) amplifies: the 2-D flow from the diagonal passes the saddle, then leaves it
        tr = jd.cyclic_flow(0.1, 0.1, K=K, times=jnp.array([0.0, 12.0, 400.0]))
        assert abs(float(tr.x[1]) - ys) < 1e-4 and abs(float(tr.y[1]) - ys) < 1e-4
        tr = jd.cyclic_flow(0.1, 0.1 - 1e-3, K=K, times=jnp.array([0.0, 400.0]))
        assert abs(float(tr.x[-1]) - 1) < 1e-10 and abs(float(tr.y[-1])) < 1e-10


def test_reduced_spectrum_against_closed_form_K2_to_10():
    # 2-D reduced field: -K/2 along (1, 1), beta_T = K / (2 pi y* sqrt(K-1)) along (K-1, -1)
    for K in range(2, 11):
        ys = jd.symmetric_saddle(K)
        sp = jd.saddle_spectrum(K)
        J2 = np.asarray(jd.cyclic_jacobian(ys, ys, K=K))
        assert np.max(np.abs(np.sort(np.linalg.eigvals(J2).real) - np.sort(sp.reduced))) < 1e-14 * K
        assert np.max(np.abs(J2 @ [1, 1] + K / 2 * np.array([1, 1]))) < 1e-14 * K
        assert np.max(np.abs(J2 @ [K - 1, -1] - sp.reduced[1] * np.array([K - 1, -1]))) < 1e-13 * K


def _full_spectrum_check(K):
    ys = jd.symmetric_saddle(K)
    sp = jd.saddle_spectrum(K, d=K + 2)
    # full K d Jacobian at coinciding students (jax.jacfwd; the field is C^1 there)
    W, Wt = jd.cyclic_weights(ys, ys, K=K, d=K + 2)
    J = np.asarray(jd.flow_jacobian(W, Wt))
    assert np.all(np.isfinite(J)) and np.max(np.abs(J - J.T)) < 1e-15
    ev = np.linalg.eigvalsh(J)
    assert np.max(np.abs(ev - sp.all())) < 1e-14 * K * K, K
    assert sp.multiplicities.sum() == K * (K + 2)


@pytest.mark.parametrize("K", [2, 3, 6])
def test_full_spectrum_at_the_saddle(K):
    _full_spectrum_check(K)


@pytest.mark.slow
def test_full_spectrum_at_the_saddle_K2_to_10():
    for K in range(2, 11):
        _full_spectrum_check(K)


def test_jacobian_at_coinciding_students_is_the_limit_from_either_side():
    # C^1: jacfwd at the saddle equals central differences through it (units separate on either
    # side) and the Jacobian at nearby distinct points converges to it; not C^2: the remainder
    # f(W + s D) - f(W) - s J D is ~ c s |s| (sign flips with s)
    K = 3
    ys = jd.symmetric_saddle(K)
    W, Wt = jd.cyclic_weights(ys, ys, K=K, d=K + 1)
    J = np.asarray(jd.flow_jacobian(W, Wt))
    D = np.zeros(W.shape)
    D[0, 0], D[1, 0] = 1.0, -1.0  # split students 1 and 2
    f = lambda W: np.asarray(-jd.population_gradient(W, Wt)).reshape(-1)  # noqa: E731
    for s in (1e-3, 1e-4):
        Jn = np.asarray(jd.flow_jacobian(W + s * D, Wt))
        assert np.max(np.abs(Jn - J)) < 30 * s
    r = {s: (f(W + s * D) - f(W) - s * J @ D.reshape(-1)) / s**2 for s in (1e-3, 1e-4, -1e-3, -1e-4)}
    # r(s) -> a + b sign(s): a genuine s^2 coefficient on each side (stable in s), different sides
    assert np.max(np.abs(r[1e-4] - r[1e-3])) < 1e-2 and np.max(np.abs(r[-1e-4] - r[-1e-3])) < 1e-2
    assert np.max(np.abs(r[1e-4] - r[-1e-4])) > 0.5
    # the "gram" angles give ~sqrt(eps) errors in the Jacobian at coinciding units (documented)
    Jg = np.asarray(jd.flow_jacobian(W, Wt, angles="gram"))
    assert np.max(np.abs(Jg - J)) < 1e-6


def test_saddle_relates_to_the_order_parameter_fixed_point():
    # the existing small-eta ODE fixed point (figures.stability.tian_saddle) is the same point;
    # its order-parameter spectrum consists of weight-space eigenvalues with an R image and of
    # sums of two eigenvalues of the modes that leave R unchanged (Q - R R^T is quadratic in them)
    from jaxdyn.figures.stability import tian_saddle

    for K in (2, 3):
        fp = tian_saddle(K)
        ys = jd.symmetric_saddle(K)
        assert np.max(np.abs(np.asarray(fp.x)[: K * K] - ys)) < 1e-14
        sp = jd.saddle_spectrum(K, d=3 * K)
        bT, bP = sp.reduced[1], np.sqrt(K - 1) / (2 * np.pi * ys)
        lam = np.array([-K / 2, bT - K / 2, bP - K / 2, 0.0, bT, bP])
        allowed = np.concatenate([lam, (lam[:, None] + lam[None, :]).ravel()])
        ev = np.asarray(fp.eigenvalues).real
        assert all(np.min(np.abs(allowed - e)) < 1e-6 for e in ev), (ev, allowed)


# --------------------------------------------------------------------------- x0 < y0
@pytest.mark.parametrize("K,index", [(3, 1), (5, 6)])
def test_below_the_diagonal_endpoint_and_its_classification(K, index):
    tr = jd.cyclic_flow(0.1, 0.2, K=K, times=jnp.array([0.0, 2000.0]))
    z = np.asarray(jd.cyclic_fixed_point(float(tr.x[-1]), float(tr.y[-1]), K=K))
    assert np.max(np.abs(z - [float(tr.x[-1]), float(tr.y[-1])])) < 1e-9
    assert z[0] < 0 < z[1]  # not a permutation of the teacher: x < 0, the unit is anti-aligned
    W, Wt = jd.cyclic_weights(z[0], z[1], K=K, d=K + 1)
    assert np.max(np.abs(jd.population_gradient(W, Wt))) < 1e-14
    # the full K d flow started on the ansatz follows the reduced one (cyclic to rounding) ...
    W0, _ = jd.cyclic_weights(0.1, 0.2, K=K, d=K + 1)
    ts = jnp.linspace(0.0, 100.0, 6)
    full = jd.gradient_flow(W0, Wt, times=ts)
    red = jd.cyclic_flow(0.1, 0.2, K=K, times=ts)
    assert np.max(np.abs(full.W - jd.cyclic_weights(red.x, red.y, K=K, d=K + 1)[0])) < 1e-9
    # classification in full space: jacfwd spectrum = finite-difference spectrum, `index`
    # unstable directions (saddle), stable inside the ansatz
    J = np.asarray(jd.flow_jacobian(W, Wt))
    Jfd = fd_jacobian(W, Wt)
    assert np.max(np.abs(J - Jfd)) < 1e-8
    ev = np.linalg.eigvalsh((Jfd + Jfd.T) / 2)
    assert np.sum(ev > 1e-6) == index and np.min(np.abs(ev)) > 1e-4
    assert np.all(np.linalg.eigvals(np.asarray(jd.cyclic_jacobian(z[0], z[1], K=K))).real < 0)


# --------------------------------------------------------------------------- one ReLU
def test_lyapunov_rate_and_region(rng):
    ws = jnp.array([1.3, 0.0, 0.0])
    for _ in range(20):
        w = jnp.asarray(rng.normal(size=3))
        g = jd.population_gradient(w[None], ws[None])[0]
        assert abs(float(jd.lyapunov_rate(w, ws) + (w - ws) @ g)) < 1e-14
    # V decreases at every w != 0, w* (not only in the paper's ball |w - w*| < |w*|): the form is
    # negative definite below theta_c and, beyond it, negative on a, b > 0 because B < 0 there
    tc = jd.lyapunov_critical_angle()
    assert np.pi / 2 < tc < np.pi
    th = np.linspace(1e-3, np.pi, 200)
    a = np.geomspace(1e-3, 1e3, 60)
    TH, A = np.meshgrid(th, a)
    w = 1.3 * A[..., None] * np.stack([np.cos(TH), np.sin(TH), 0 * TH], -1)
    assert float(jnp.max(jd.lyapunov_rate(jnp.asarray(w), ws))) < 0
    B = (2 * np.pi - tc) * np.cos(tc) + np.sin(tc)
    assert B < 0


def test_random_init_probability(rng):
    # exact cap integral vs Monte Carlo (with its standard error) vs the paper's bound
    d, r, n = 8, 0.15, 200_000
    x = rng.normal(size=(n, d))
    x *= (r * rng.uniform(size=n) ** (1 / d) / np.linalg.norm(x, axis=1))[:, None]
    inside = np.linalg.norm(x - np.eye(d)[0], axis=1) < 1
    p = jd.init_success_probability(r, d)
    se = np.sqrt(p * (1 - p) / n)
    assert abs(inside.mean() - p) < 5 * se
    for dd, rr in [(8, 0.15), (100, 0.2), (1000, 0.01)]:
        assert jd.init_success_probability(rr, dd) >= jd.tian_probability_bound(rr, dd)


def test_single_relu_converges_from_random_init_and_antiparallel_escape():
    d = 5
    ws = jnp.eye(1, d)
    W0 = jax.random.normal(jax.random.PRNGKey(0), (64, 1, d)) * 0.05
    t = jnp.array([0.0, 60.0])
    tr = jax.vmap(lambda W: jd.gradient_flow(W, ws, times=t))(W0)
    assert bool(jnp.all(tr.ok)) and float(jnp.max(tr.loss[:, -1])) < 1e-12
    # near-antiparallel: t_esc (angle back to pi/2) = 2 ln(1/phi0) + O(1); the norm dips to ~phi0/pi
    ts = jnp.linspace(0.0, 50.0, 5001)
    tesc, wmin = [], []
    for phi0 in (1e-4, 1e-6, 1e-8):
        w0 = jnp.array([[np.cos(np.pi - phi0), np.sin(np.pi - phi0), 0.0]])
        Wtr = np.asarray(jd.gradient_flow(w0, jnp.eye(1, 3), times=ts, atol=1e-24).W[:, 0])
        ang = np.arctan2(Wtr[:, 1], Wtr[:, 0])
        i = int(np.argmax(ang < np.pi / 2))
        tesc.append(np.interp(np.pi / 2, [ang[i], ang[i - 1]], [ts[i], ts[i - 1]]))
        wmin.append(np.min(np.linalg.norm(Wtr, axis=1)))
    slope = np.diff(tesc) / np.diff(np.log(1 / np.array([1e-4, 1e-6, 1e-8])))
    assert np.all(np.abs(slope - 2) < 2e-3), slope
    assert np.max(np.abs(np.array(tesc) - jd.antiparallel_escape_time(np.array([1e-4, 1e-6, 1e-8])))) < 0.01
    assert np.allclose(np.array(wmin) * np.pi / np.array([1e-4, 1e-6, 1e-8]), 1, atol=0.02)


def test_the_K3_endpoint_is_left_by_the_full_flow_after_a_perturbation():
    # index 1 in full space: a generic 1e-6 kick leads to the teacher (loss -> 0)
    K = 3
    z = np.asarray(jd.cyclic_fixed_point(-0.318, 0.659, K=K))
    W, Wt = jd.cyclic_weights(z[0], z[1], K=K, d=K + 1)
    kick = 1e-6 * jax.random.normal(jax.random.PRNGKey(3), W.shape)
    tr = jd.gradient_flow(W + kick, Wt, times=jnp.array([0.0, 100.0, 1500.0]))
    assert abs(float(tr.loss[1]) - float(jd.population_loss(W, Wt))) < 1e-6  # still there
    assert float(tr.loss[-1]) < 1e-10
