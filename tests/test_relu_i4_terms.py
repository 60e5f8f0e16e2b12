"""`relu_i4_terms` (the vector field's ReLU eta^2 averages, each set of distinct units once, the
orthant probability shared within a set) against `relu_theta_moment` on each quadruple's gathered
sub-covariance (the per-quadruple evaluation the field used before), and against Monte Carlo."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd
from jaxdyn._averages.closed_forms import relu_moment_small
from jaxdyn._model import covariance
from jaxdyn._ode import _relu_groups, i4_index
from jaxdyn._averages.relu_moments import relu_i4_terms, relu_theta_moment


def _per_quadruple(C, idx):
    """Every quadruple separately: `relu_theta_moment` on its gathered sub-covariance (batched
    over the quadruples of one coincidence pattern, as the vector field did before)."""
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    out = jnp.zeros(idx.shape[0], C.dtype)
    for pos, units, p, q in _relu_groups(idx.tobytes(), idx.shape):
        sub = jnp.asarray(C)[units[:, :, None], units[:, None, :]]
        f = relu_moment_small if units.shape[1] <= 2 else relu_theta_moment
        out = out.at[pos].set(f(sub, int(p), int(q)))
    return out


def _state(K, rng, delta, M=None):
    M = K if M is None else M
    B = rng.normal(size=(max(K, M), 3 * K))
    B /= np.linalg.norm(B, axis=1, keepdims=True)
    J = B[:K] + delta * rng.normal(size=(K, 3 * K))
    sc = jd.Scenario(K=K, M=M, T=jnp.asarray(B[:M] @ B[:M].T))
    return covariance(sc, jd.OrderParams(Q=jnp.asarray(J @ J.T), R=jnp.asarray(J @ B[:M].T)))


def _check_against_per_quadruple(K, M):
    rng = np.random.default_rng(3)
    _, idx, _, _ = i4_index(K, M)
    sc = jd.Scenario(K=K, M=M, T=jnp.diag(jnp.arange(1.0, M + 1)))
    R = np.zeros((K, M))
    R[np.arange(K), np.arange(K) % M] = np.diag(np.asarray(sc.T))[np.arange(K) % M]
    # K = M: perfect learning; K > M: students copying teachers (collinear and identical units)
    Q = R @ np.linalg.inv(np.asarray(sc.T)) @ R.T
    pl = covariance(sc, jd.OrderParams(Q=jnp.asarray(Q), R=jnp.asarray(R)))
    f = jax.jit(lambda C: relu_i4_terms(C, idx))
    g = jax.jit(lambda C: _per_quadruple(C, idx))
    # near perfect learning (1 - rho ~ 1e-8) both orderings lose ~eps / (1 - rho) to cancellation
    # in the partial correlations (the module's documented accuracy), so they agree to ~1e-8 only
    for C, atol in ((_state(K, rng, 1.0, M), 1e-14), (_state(K, rng, 1e-4, M), 1e-8), (pl, 1e-14)):
        ref = np.asarray(g(C))
        np.testing.assert_allclose(np.asarray(f(C)), ref, rtol=0, atol=atol)
    # derivative at the singular point (what the pencil threshold differentiates), symmetrised in C
    ja = np.asarray(jax.jacfwd(f)(pl))
    jb = np.asarray(jax.jacfwd(g)(pl))
    sym = lambda j: j + np.swapaxes(j, -1, -2)
    np.testing.assert_allclose(sym(ja), sym(jb), rtol=0, atol=1e-12)
    assert np.all(np.isfinite(ja))


@pytest.mark.slow
def test_against_per_quadruple_k3_m1():
    """Every 4-unit set {3 students, 1 teacher} carries three moments sharing one orthant."""
    _check_against_per_quadruple(3, 1)


@pytest.mark.slow
def test_against_per_quadruple_k3_m3():
    _check_against_per_quadruple(3, 3)


def test_monte_carlo_k2():
    rng = np.random.default_rng(4)
    C = np.asarray(_state(2, rng, 0.7))
    _, idx, _, _ = i4_index(2, 2)
    got = np.asarray(relu_i4_terms(jnp.asarray(C), idx))
    w, V = np.linalg.eigh(C)
    z = rng.standard_normal((400_000, 4)) @ (V * np.sqrt(np.clip(w, 0, None))).T
    th, rl = (z > 0).astype(float), np.maximum(z, 0)
    for t, (i, k, a, b) in enumerate(idx.tolist()):
        x = th[:, i] * th[:, k] * rl[:, a] * rl[:, b]
        assert abs(got[t] - x.mean()) < 5 * x.std() / np.sqrt(len(x)), (i, k, a, b)
