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
from ._checks import check_eta as check_eta, check_psd, concrete


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
        # value checks on the concrete inputs only (NumPy), so a Scenario can be built under jit
        T_c = None if T is None else concrete(T)  # the default identity is positive definite
        if T_c is not None:
            check_psd(T_c, "T", strict=True)
        for name, raw in (("noise", noise), ("weight_decay", weight_decay)):
            val = concrete(raw)
            if val is not None and val.ndim == 0 and float(val) < 0:
                raise ValueError(f"{name} must be >= 0, got {float(val)}")
        bs = concrete(batch_size)
        if bs is not None and bs.ndim == 0 and float(bs) < 1:
            raise ValueError(f"batch_size must be >= 1, got {float(bs)}")


def covariance(scenario: Scenario, op: OrderParams) -> jax.Array:
    """The (K+M) x (K+M) covariance `C = [[Q, R], [R^T, T]]` of `(x, y)`."""
    Q, R = op.Q, op.R
    T = jnp.broadcast_to(scenario.T, R.shape[:-2] + scenario.T.shape)
    top = jnp.concatenate([Q, R], axis=-1)
    bot = jnp.concatenate([jnp.swapaxes(R, -1, -2), T], axis=-1)
    return jnp.concatenate([top, bot], axis=-2)


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
    Q, R, T = concrete(op.Q), concrete(op.R), concrete(scenario.T)
    if Q is None or R is None or T is None:
        return
    # C built with NumPy: under jit a jnp-built C would be a tracer even from constant inputs
    T = np.broadcast_to(T, R.shape[:-2] + T.shape)
    C = np.concatenate(
        [np.concatenate([Q, R], axis=-1), np.concatenate([np.swapaxes(R, -1, -2), T], axis=-1)],
        axis=-2,
    )
    check_psd(C, "the overlap matrix C = [[Q, R], [R^T, T]]")

