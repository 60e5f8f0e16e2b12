"""`relu_i4_terms` (the vector field's ReLU eta^2 averages, each set of distinct units once, the
orthant probability shared within a set) against `relu_theta_moment` on each quadruple's gathered
sub-covariance (the per-quadruple evaluation the field used before), and against Monte Carlo."""

import jax
import jax.numpy as jnp
import numpy as np

import jaxdyn as jd
from jaxdyn._closed_forms import relu_moment_small
from jaxdyn._model import covariance
from jaxdyn._ode import i4_index
from jaxdyn._relu_moments import relu_i4_terms, relu_theta_moment


def _per_quadruple(C, idx):
    out = []
    for quad in idx.tolist():
        units = list(dict.fromkeys(quad))
        sub = C[np.ix_(units, units)]
        p, q = units.index(quad[2]), units.index(quad[3])
        f = relu_moment_small if len(units) <= 2 else relu_theta_moment
        out.append(f(jnp.asarray(sub), p, q))
    return jnp.stack(out)


def _state(K, rng, delta):
    B = rng.normal(size=(K, 3 * K))
    B /= np.linalg.norm(B, axis=1, keepdims=True)
    J = B + delta * rng.normal(size=B.shape)
    sc = jd.Scenario(K=K, M=K, T=jnp.asarray(B @ B.T))
    return covariance(sc, jd.OrderParams(Q=jnp.asarray(J @ J.T), R=jnp.asarray(J @ B.T)))


def test_values_and_jacobian_match_the_per_quadruple_evaluation():
    rng = np.random.default_rng(3)
    K = 3
    _, idx, _, _ = i4_index(K, K)
    sc = jd.Scenario(K=K, M=K, T=jnp.diag(jnp.arange(1.0, K + 1)))
    pl = covariance(sc, jd.OrderParams(Q=sc.T, R=sc.T))  # perfect learning: collinear pairs
    f = jax.jit(lambda C: relu_i4_terms(C, idx))
    for C in (_state(K, rng, 1.0), _state(K, rng, 1e-4), pl):
        ref = np.asarray(_per_quadruple(np.asarray(C), idx))
        np.testing.assert_allclose(np.asarray(f(C)), ref, rtol=0, atol=1e-14)
    # derivative at the singular point (what the pencil threshold differentiates), symmetrised in C
    ja = np.asarray(jax.jacfwd(f)(pl))
    jb = np.asarray(jax.jacfwd(lambda C: _per_quadruple(C, idx))(pl))
    sym = lambda j: j + np.swapaxes(j, -1, -2)
    np.testing.assert_allclose(sym(ja), sym(jb), rtol=0, atol=1e-12)
    assert np.all(np.isfinite(ja))


def test_monte_carlo_k2():
    rng = np.random.default_rng(4)
    C = np.asarray(_state(2, rng, 0.7))
    _, idx, _, _ = i4_index(2, 2)
    got = np.asarray(relu_i4_terms(jnp.asarray(C), idx))
    w, V = np.linalg.eigh(C)
    z = rng.standard_normal((1_000_000, 4)) @ (V * np.sqrt(np.clip(w, 0, None))).T
    th, rl = (z > 0).astype(float), np.maximum(z, 0)
    for t, (i, k, a, b) in enumerate(idx.tolist()):
        x = th[:, i] * th[:, k] * rl[:, a] * rl[:, b]
        assert abs(got[t] - x.mean()) < 5 * x.std() / 1e3, (i, k, a, b)
