"""Paper 003 (Tian 2017): Theorem 1, the K-ReLU population gradient and loss, checked against
deterministic quadrature, Monte Carlo with its standard error, finite differences, and jaxdyn's
independent order-parameter code (eps_g, the small-eta vector field)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd


# --------------------------------------------------------------------------- references
def quad_gating(theta, wnorm, n_ang=40, n_rad=8):
    """E[x 1{e.x>0} relu(w.x)] in the (e, w) plane, e = (1, 0), w = |w| (cos t, sin t), by 2-D
    quadrature in polar coordinates: Gauss-Laguerre in s = r^2/2, Gauss-Legendre in the angle over
    the sector where both gates are open, [theta - pi/2, pi/2] (the integrand is smooth there)."""
    s, ws = np.polynomial.laguerre.laggauss(n_rad)
    radial = np.sum(ws * 2 * s)  # int r^3 e^{-r^2/2} dr = int 2 s e^{-s} ds
    lo, hi = theta - np.pi / 2, np.pi / 2
    z, wz = np.polynomial.legendre.leggauss(n_ang)
    phi = 0.5 * (hi - lo) * z + 0.5 * (hi + lo)
    wphi = 0.5 * (hi - lo) * wz
    g = np.cos(phi - theta)
    fx = np.sum(wphi * np.cos(phi) * g)
    fy = np.sum(wphi * np.sin(phi) * g)
    return wnorm * radial / (2 * np.pi) * np.array([fx, fy])


def mc_gradient(W, Wt, v, u, n, key):
    """Per-sample autodiff gradient of (f - f*)^2/2 (JAX relu'(0) = 0), averaged: mean and SE."""
    x = jax.random.normal(key, (n, W.shape[1]))

    def per(xi):
        def loss(W):
            f = v @ jax.nn.relu(W @ xi)
            fs = u @ jax.nn.relu(Wt @ xi)
            return 0.5 * (f - fs) ** 2

        return jax.grad(loss)(W)

    g = jax.lax.map(per, x, batch_size=4096)
    return np.asarray(g.mean(0)), np.asarray(g.std(0) / np.sqrt(n))


ANGLES = [1e-12, 1e-8, 1e-4, 0.3, np.pi / 2, 2.5, np.pi - 1e-4, np.pi - 1e-8, np.pi - 1e-12]


# --------------------------------------------------------------------------- Theorem 1
@pytest.mark.parametrize("theta", ANGLES)
def test_theorem1_against_quadrature(theta, rng):
    # embed the plane in d = 5 by a random rotation; compare in absolute terms relative to |w|
    # (near pi the components are O(phi^2), O(phi^3): F itself, not only its digits, is small)
    Qm, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    wnorm = 1.7
    e = 0.8 * Qm[:, 0]
    w = wnorm * (np.cos(theta) * Qm[:, 0] + np.sin(theta) * Qm[:, 1])
    F = np.asarray(jd.population_gating(e, w))
    ref = quad_gating(theta, wnorm)
    ref_d = ref[0] * Qm[:, 0] + ref[1] * Qm[:, 1]
    assert np.max(np.abs(F - ref_d)) < 2e-15 * wnorm
    # in the plane itself (no rotation rounding) the tiny components near pi agree relatively too
    F2 = np.asarray(jd.population_gating(jnp.array([1.0, 0.0]), wnorm * jnp.array([np.cos(theta), np.sin(theta)])))
    assert np.max(np.abs(F2 - ref)) < 2e-15 * wnorm


def test_angle_is_stable_where_acos_is_not():
    for t in [1e-12, 1e-9, np.pi - 1e-9, np.pi - 1e-12]:
        a = jnp.array([1.0, 0.0])
        b = jnp.array([np.cos(t), np.sin(t)])
        th = float(jd.vector_angle(a, b))
        assert abs(th - t) <= 2e-15 * t  # relative accuracy at 1e-12, absolute ~1e-16 near pi
        acos = float(np.arccos(np.clip(np.dot(a, b), -1, 1)))
        assert abs(acos - t) > 0.5 * min(t, np.pi - t)  # acos of the rounded cosine: all lost


def test_theorem1_against_monte_carlo(rng):
    # unbiased: every component within 5 standard errors (15 components, false alarm ~1e-5)
    d, n = 4, 400_000
    key = jax.random.PRNGKey(1)
    x = jax.random.normal(key, (n, d))
    for theta in [0.2, 1.5, 3.0]:
        e = jnp.asarray(rng.normal(size=d))
        p = rng.normal(size=d)
        p -= p @ e / (e @ e) * e
        w = 1.3 * (np.cos(theta) * e / jnp.linalg.norm(e) + np.sin(theta) * p / np.linalg.norm(p))
        samples = x * jnp.where(x @ e > 0, jax.nn.relu(x @ w), 0.0)[:, None]
        mean, se = np.asarray(samples.mean(0)), np.asarray(samples.std(0) / np.sqrt(n))
        z = (mean - np.asarray(jd.population_gating(e, w))) / se
        assert np.max(np.abs(z)) < 5, z


def test_monte_carlo_error_scales_as_inverse_sqrt_samples(rng):
    # rms error over 64 batches: n -> 16 n divides it by 4 (relative sd of each rms ~ 4%)
    d = 5
    e = jnp.asarray(rng.normal(size=d))
    w = jnp.asarray(rng.normal(size=d))
    F = np.asarray(jd.population_gating(e, w))
    rms = []
    for n in (500, 8000):
        x = jax.random.normal(jax.random.PRNGKey(n), (64, n, d))
        est = jnp.mean(x * jnp.where(x @ e > 0, jax.nn.relu(x @ w), 0.0)[..., None], axis=1)
        rms.append(float(np.sqrt(np.mean((np.asarray(est) - F) ** 2))))
    assert 3.3 < rms[0] / rms[1] < 4.8, rms


# --------------------------------------------------------------------------- K ReLUs
def _random_net(rng, K=3, M=2, d=6):
    W = rng.normal(size=(K, d)) / np.sqrt(d)
    Wt = rng.normal(size=(M, d)) * np.array([[1.0], [1.8]])[:M] / np.sqrt(d)
    v = rng.uniform(0.5, 1.5, K) * np.array([1, -1, 1])[:K]
    u = rng.uniform(0.5, 1.5, M)
    return jnp.asarray(W), jnp.asarray(Wt), jnp.asarray(v), jnp.asarray(u)


def test_loss_equals_eps_g_and_gradient_equals_its_grad(rng):
    W, Wt, v, u = _random_net(rng)
    L = jd.population_loss(W, Wt, v=v, u=u)
    sc = jd.population_scenario(Wt, K=3, v=v, u=u)
    assert abs(float(L - jax.jit(jd.eps_g)(sc, jd.weight_order_params(W, Wt)))) < 1e-15
    g = jd.population_gradient(W, Wt, v=v, u=u)
    g_ad = jax.grad(lambda W: jd.population_loss(W, Wt, v=v, u=u))(W)
    assert np.max(np.abs(g - g_ad)) < 1e-15


def test_gradient_against_finite_differences(rng):
    W, Wt, v, u = _random_net(rng)
    W = np.asarray(W)
    g = np.asarray(jd.population_gradient(W, Wt, v=v, u=u))
    h = 1e-5
    fd = np.zeros_like(W)
    loss = jax.jit(lambda W: jd.population_loss(W, Wt, v=v, u=u))
    for idx in np.ndindex(W.shape):
        E = np.zeros_like(W)
        E[idx] = h
        # 4th-order central difference: truncation ~h^4 |L^(5)|, rounding ~eps/h
        fd[idx] = (8 * (loss(W + E) - loss(W - E)) - (loss(W + 2 * E) - loss(W - 2 * E))) / (12 * h)
    assert np.max(np.abs(fd - g)) < 1e-10


def test_gradient_against_monte_carlo(rng):
    W, Wt, v, u = _random_net(rng, d=4)
    mean, se = mc_gradient(W, Wt, v, u, 120_000, jax.random.PRNGKey(7))
    z = (mean - np.asarray(jd.population_gradient(W, Wt, v=v, u=u))) / se
    assert np.max(np.abs(z)) < 5.0, z


def test_vector_field_is_the_flow_of_the_overlaps(rng):
    # d(Q, R)/dt from -dL/dW equals jaxdyn's small-eta field (eta = 1) at every point
    W, Wt, v, u = _random_net(rng)
    dW = -jd.population_gradient(W, Wt, v=v, u=u)
    sc = jd.population_scenario(Wt, K=3, v=v, u=u)
    f = jd.vector_field(sc, jd.weight_order_params(W, Wt), 1.0, eta2=False)
    assert np.max(np.abs(dW @ Wt.T - f.R)) < 1e-14
    assert np.max(np.abs(dW @ W.T + W @ dW.T - f.Q)) < 1e-14


def test_gram_and_stable_angles_agree(rng):
    W, Wt, v, u = _random_net(rng)
    W = W.at[1].set(W[0] * 2.0 + 1e-9)  # nearly coinciding students
    a = jd.population_gradient(W, Wt, v=v, u=u, angles="stable")
    b = jd.population_gradient(W, Wt, v=v, u=u, angles="gram")
    assert np.max(np.abs(a - b)) < 1e-14
    L = float(jd.population_loss(W, Wt))
    assert abs(float(jd.population_loss(W, Wt, angles="gram")) - L) < 1e-15 * L


def test_batched_jit_vmap_grad(rng):
    Ws = jnp.asarray(rng.normal(size=(4, 2, 3)))
    Wt = jnp.eye(2, 3)
    g_b = jd.population_gradient(Ws, Wt)
    g_v = jax.vmap(lambda W: jd.population_gradient(W, Wt))(Ws)
    g_j = jax.jit(lambda W: jd.population_gradient(W, Wt))(Ws)
    assert g_b.shape == (4, 2, 3)
    assert np.max(np.abs(g_b - g_v)) < 1e-15 and np.max(np.abs(g_b - g_j)) < 1e-15
    # the loss is differentiable (twice: C^1 gradient) at coinciding students and at the teacher
    W = jnp.stack([Wt[0], Wt[0]])
    H = jax.hessian(lambda W: jd.population_loss(W, Wt))(W)
    assert np.all(np.isfinite(np.asarray(H)))
    assert np.all(np.isfinite(np.asarray(jd.flow_jacobian(Wt, Wt))))


def test_zero_teacher_unit_is_a_dead_unit(rng):
    W, Wt, v, u = _random_net(rng)
    Wt0 = jnp.concatenate([Wt, jnp.zeros((1, Wt.shape[1]))])
    u0 = jnp.concatenate([u, jnp.array([2.0])])
    assert np.max(np.abs(jd.population_gradient(W, Wt0, v=v, u=u0)
                         - jd.population_gradient(W, Wt, v=v, u=u))) < 1e-15


def test_bad_input_gives_clear_errors(rng):
    W, Wt, v, u = _random_net(rng)
    Wz = W.at[1].set(0.0)
    with pytest.raises(ValueError, match="zero norm"):
        jd.population_gradient(Wz, Wt)
    # under jit the documented value: a dead unit (gradient 0), the others finite and unchanged
    g = jax.jit(lambda W: jd.population_gradient(W, Wt))(Wz)
    assert np.all(np.isfinite(np.asarray(g))) and np.all(np.asarray(g[1]) == 0)
    ref = jd.population_gradient(jnp.delete(Wz, 1, axis=0), Wt)
    assert np.max(np.abs(np.delete(np.asarray(g), 1, axis=0) - ref)) < 1e-15
    # the loss is continuous at w = 0: no error, equals dropping the unit
    assert abs(float(jd.population_loss(Wz, Wt) - jd.population_loss(jnp.delete(Wz, 1, axis=0), Wt))) < 1e-15
    with pytest.raises(ValueError, match="same input dimension"):
        jd.population_gradient(W, Wt[:, :-1])
    with pytest.raises(ValueError, match="K, d"):
        jd.population_gradient(W[0], Wt)
    with pytest.raises(ValueError, match="v .student"):
        jd.population_gradient(W, Wt, v=jnp.ones(2))
    with pytest.raises(ValueError, match="u .teacher"):
        jd.population_loss(W, Wt, u=jnp.ones(5))
    with pytest.raises(ValueError, match="angles"):
        jd.population_gradient(W, Wt, angles="acos")
    with pytest.raises(ValueError, match="non-finite"):
        jd.population_gradient(W.at[0, 0].set(jnp.nan), Wt)
    with pytest.raises(ValueError, match="e must be non-zero"):
        jd.population_gating(jnp.zeros(3), jnp.ones(3))
    with pytest.raises(ValueError, match="last dimension"):
        jd.population_gating(jnp.ones(3), jnp.ones(2))


# --------------------------------------------------------------------------- dynamics
def test_gradient_flow_equals_small_eta_ode_over_a_long_run():
    # non-orthogonal teacher with unequal norms (|w*_1| = 1, |w*_2| = 1.8, cos = 0.4), v != 1;
    # t = eta * alpha; both sides Dopri8 at rtol 1e-12
    import diffrax

    d = 6
    Wt = jnp.zeros((2, d)).at[0, 0].set(1.0).at[1, 0].set(1.8 * 0.4).at[1, 1].set(1.8 * np.sqrt(1 - 0.16))
    W0 = jnp.asarray(np.random.default_rng(3).normal(size=(2, d)) * 0.2)
    v = jnp.array([1.0, 0.7])
    u = jnp.array([1.0, 1.0])
    t = jnp.linspace(0.0, 300.0, 31)
    tr = jd.gradient_flow(W0, Wt, times=t, v=v, u=u, rtol=1e-12, atol=1e-14)
    eta = 0.5
    sc = jd.population_scenario(Wt, K=2, v=v, u=u)
    ode = jd.integrate(sc, jd.weight_order_params(W0, Wt), eta=eta, alphas=t / eta, eta2=False,
                       solver=diffrax.Dopri8(), rtol=1e-12, atol=1e-14)
    assert np.max(np.abs(tr.Q - ode.Q)) < 1e-10
    assert np.max(np.abs(tr.R - ode.R)) < 1e-10
    assert np.max(np.abs(tr.loss - ode.eps_g)) < 1e-10
    assert float(tr.loss[-1]) < 1e-3 * float(tr.loss[0])  # it learns over this run (not trivial)


def test_descent_is_euler_of_the_flow_and_takes_optax(rng):
    import optax

    W0 = jnp.asarray(rng.normal(size=(2, 3)) * 0.3)
    Wt = jnp.eye(2, 3)
    ref = jd.gradient_flow(W0, Wt, times=jnp.array([0.0, 4.0])).W[-1]
    errs = []
    for lr, steps in [(0.02, 200), (0.01, 400)]:
        tr = jd.population_descent(W0, Wt, steps=steps, lr=lr, record_every=steps // 4)
        errs.append(float(jnp.max(jnp.abs(tr.W[-1] - ref))))
    assert 1.8 < errs[0] / errs[1] < 2.2  # first order in the step size
    a = jd.population_descent(W0, Wt, steps=50, lr=0.1, record_every=10)
    b = jd.population_descent(W0, Wt, steps=50, optimizer=optax.sgd(0.1), record_every=10)
    assert np.max(np.abs(a.W - b.W)) == 0 and a.W.shape == (6, 2, 3) and a.t[-1] == 50
    for opt in (optax.sgd(0.05, momentum=0.9), optax.adam(0.02)):
        tr = jd.population_descent(W0, Wt, steps=2000, optimizer=opt, record_every=500)
        assert float(tr.loss[-1]) < 1e-3 * float(tr.loss[0])
    with pytest.raises(ValueError, match="exactly one"):
        jd.population_descent(W0, Wt, steps=10)
    with pytest.raises(ValueError, match="record_every"):
        jd.population_descent(W0, Wt, steps=10, lr=0.1, record_every=3)
    with pytest.raises(ValueError, match="times"):
        jd.gradient_flow(W0, Wt, times=jnp.array([1.0, 0.5]))
