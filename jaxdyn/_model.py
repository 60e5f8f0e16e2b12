"""The teacher-student model: `Scenario` (fixed structure) and `OrderParams` (the state).

Convention (SPEC section 1, used everywhere in jaxdyn): inputs xi ~ N(0, I_N), student
pre-activations x_i = J_i . xi / sqrt(N), teacher y_n = B_n . xi / sqrt(N);
sigma = sum_i v_i g(x_i), tau = sum_n w_n g*(y_n) (+ noise); Q = J J^T / N, R = J B^T / N,
T = B B^T / N; online SGD J_i <- J_i + (eta / sqrt N) delta_i xi with
delta_i = v_i g'(x_i) (tau - sigma); time alpha = steps / N.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._activations import AbstractActivation, as_activation


class OrderParams(eqx.Module):
    """Student-student overlaps `Q` (K x K, symmetric) and student-teacher overlaps `R` (K x M).

    A pytree: it can be vmapped over, differentiated, and returned by solvers. Leading batch axes
    are allowed (`Q[..., K, K]`, `R[..., K, M]`).

    Example:
        >>> op = jaxdyn.OrderParams(Q=jnp.diag(jnp.array([0.2, 0.3])), R=1e-3 * jnp.eye(2))
    """

    Q: jax.Array
    R: jax.Array

    def __init__(self, Q, R):
        self.Q = jnp.asarray(Q)
        self.R = jnp.asarray(R)

    @property
    def K(self) -> int:
        return self.Q.shape[-1]

    @property
    def M(self) -> int:
        return self.R.shape[-1]


class Scenario(eqx.Module):
    """A teacher-student soft committee machine with fixed second-layer weights.

    **Arguments** (keyword-only):
    - `K`, `M`: numbers of student and teacher hidden units.
    - `T`: teacher overlaps `B B^T / N` (M x M, positive definite). Default identity.
    - `g`: student activation (default `jaxdyn.ReLU()`); `g_teacher`: teacher activation (default `g`).
    - `v`, `w`: student and teacher second-layer weights (default ones; paper 002 uses 1/sqrt(K)).
    - `noise`: standard deviation of Gaussian noise added to the teacher's output (default 0).
      It adds `eta^2 noise^2 v_i v_k <g'(x_i) g'(x_k)>` to dQ_ik/dalpha. `eps_g` stays the
      noise-free generalisation error.
    - `weight_decay`: L2 coefficient lambda in `J_i <- (1 - eta lambda / N) J_i + ...`; it adds
      `-eta lambda R_in` to dR_in/dalpha and `-2 eta lambda Q_ik` to dQ_ik/dalpha.
    - `batch_size`: minibatch size B; each step averages B per-example gradients, alpha = steps / N,
      so the `eta^2` term is divided by B.

    Float fields are stored as JAX arrays so they can be swept without recompiling.

    Example:
        >>> sc = jaxdyn.Scenario(K=2, M=2, T=jnp.diag(jnp.array([1.0, 2.0])), g=jaxdyn.ReLU())
    """

    K: int = eqx.field(static=True)
    M: int = eqx.field(static=True)
    T: jax.Array
    g: AbstractActivation
    g_teacher: AbstractActivation
    v: jax.Array
    w: jax.Array
    noise: jax.Array
    weight_decay: jax.Array
    batch_size: jax.Array

    def __init__(
        self,
        *,
        K: int,
        M: int,
        T=None,
        g=None,
        g_teacher=None,
        v=None,
        w=None,
        noise=0.0,
        weight_decay=0.0,
        batch_size=1,
    ):
        if not (isinstance(K, (int, np.integer)) and K >= 1):
            raise ValueError(f"K must be a positive integer, got {K!r}")
        if not (isinstance(M, (int, np.integer)) and M >= 1):
            raise ValueError(f"M must be a positive integer, got {M!r}")
        self.K, self.M = int(K), int(M)
        self.g = as_activation(g if g is not None else "relu")
        self.g_teacher = as_activation(g_teacher) if g_teacher is not None else self.g
        self.T = jnp.eye(M) if T is None else jnp.asarray(T, dtype=float)
        self.v = jnp.ones(K) if v is None else jnp.asarray(v, dtype=float)
        self.w = jnp.ones(M) if w is None else jnp.asarray(w, dtype=float)
        self.noise = jnp.asarray(noise, dtype=float)
        self.weight_decay = jnp.asarray(weight_decay, dtype=float)
        self.batch_size = jnp.asarray(batch_size, dtype=float)
        if self.T.shape != (M, M):
            raise ValueError(f"T must have shape (M, M) = {(M, M)}, got {self.T.shape}")
        if self.v.shape != (K,):
            raise ValueError(f"v must have shape (K,) = {(K,)}, got {self.v.shape}")
        if self.w.shape != (M,):
            raise ValueError(f"w must have shape (M,) = {(M,)}, got {self.w.shape}")
        if not _is_tracer(self.T):
            _check_psd(np.asarray(self.T), "T", strict=True)
        for name in ("noise", "weight_decay"):
            val = getattr(self, name)
            if val.ndim == 0 and not _is_tracer(val) and float(val) < 0:
                raise ValueError(f"{name} must be >= 0, got {float(val)}")
        if not _is_tracer(self.batch_size) and self.batch_size.ndim == 0:
            if float(self.batch_size) < 1:
                raise ValueError(f"batch_size must be >= 1, got {float(self.batch_size)}")


def covariance(scenario: Scenario, op: OrderParams) -> jax.Array:
    """The (K+M) x (K+M) covariance `C = [[Q, R], [R^T, T]]` of `(x, y)`."""
    Q, R = op.Q, op.R
    T = jnp.broadcast_to(scenario.T, R.shape[:-2] + scenario.T.shape)
    top = jnp.concatenate([Q, R], axis=-1)
    bot = jnp.concatenate([jnp.swapaxes(R, -1, -2), T], axis=-1)
    return jnp.concatenate([top, bot], axis=-2)


def _is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def _check_psd(C: np.ndarray, what: str, *, strict: bool = False, rtol: float = 1e-10) -> None:
    if not np.all(np.isfinite(C)):
        raise ValueError(f"{what} contains non-finite entries")
    if not np.allclose(C, np.swapaxes(C, -1, -2), rtol=1e-12, atol=1e-12):
        raise ValueError(f"{what} must be symmetric")
    ev = np.linalg.eigvalsh(C)
    scale = max(1.0, float(np.max(np.abs(ev))))
    lo = float(np.min(ev))
    if strict and lo <= rtol * scale:
        raise ValueError(f"{what} must be positive definite (smallest eigenvalue {lo:.3e})")
    if lo < -rtol * scale:
        raise ValueError(
            f"{what} is not positive semi-definite (smallest eigenvalue {lo:.3e}): no network "
            "has these overlaps"
        )


def check_order_params(scenario: Scenario, op: OrderParams) -> None:
    """Raise `ValueError` if `op` does not fit `scenario` or its covariance C is not PSD."""
    if not isinstance(op, OrderParams):
        raise ValueError(f"expected jaxdyn.OrderParams, got {type(op).__name__}")
    K, M = scenario.K, scenario.M
    if op.Q.shape[-2:] != (K, K):
        raise ValueError(f"Q must have shape (..., K, K) = (..., {K}, {K}), got {op.Q.shape}")
    if op.R.shape[-2:] != (K, M):
        raise ValueError(f"R must have shape (..., K, M) = (..., {K}, {M}), got {op.R.shape}")
    if op.Q.shape[:-2] != op.R.shape[:-2]:
        raise ValueError(f"Q and R batch shapes differ: {op.Q.shape} vs {op.R.shape}")
    if _is_tracer(op.Q) or _is_tracer(op.R) or _is_tracer(scenario.T):
        return
    _check_psd(np.asarray(covariance(scenario, op)), "the overlap matrix C = [[Q, R], [R^T, T]]")


def check_eta(eta) -> None:
    """Raise `ValueError` unless every eta is a finite positive number (tracers pass through)."""
    if _is_tracer(eta):
        return
    e = np.asarray(eta, dtype=float)
    if not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise ValueError(f"eta must be > 0 and finite, got {eta!r}")
