"""The teacher-student model: `Scenario` (fixed structure) and `OrderParams` (the state).

Convention (docs/conventions.md, used everywhere in jaxdyn): inputs xi ~ N(0, I_N), student
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
from jaxtyping import Array, Float

from ._activations import AbstractActivation, as_activation
from ._averages import I2
from ._checks import check_eta as check_eta, check_psd, concrete


class OrderParams(eqx.Module):
    """Student-student overlaps `Q` (K x K, symmetric) and student-teacher overlaps `R` (K x M),
    and, when the scenario learns its readout (`Scenario(eta_v=...)`), the student's second-layer
    weights `v` (K); `v` is None otherwise.

    A pytree: it can be vmapped over, differentiated, and returned by solvers. Leading batch axes
    are allowed (`Q[..., K, K]`, `R[..., K, M]`, `v[..., K]`).

    Example:
        >>> op = jaxdyn.OrderParams(Q=jnp.diag(jnp.array([0.2, 0.3])), R=1e-3 * jnp.eye(2))
        >>> op_v = jaxdyn.OrderParams(Q=op.Q, R=op.R, v=jnp.array([0.7, 1.2]))  # with a readout
    """

    Q: Float[Array, "*batch K K"]
    R: Float[Array, "*batch K M"]
    v: Float[Array, "*batch K"] | None = None

    def __init__(self, Q, R, v=None):
        self.Q = jnp.asarray(Q)
        self.R = jnp.asarray(R)
        self.v = None if v is None else jnp.asarray(v)

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

    Second-layer learning (see `jaxdyn.readout_field`; all off by default, and then nothing changes):
    - `eta_v`: learning rate of the student's readout. `None` (default): `v` is fixed. A number
      (>= 0): `v` learns, `v_i <- (1 - eta_v lambda_v / N) v_i + (eta_v / N) s g(x_i) (tau - sigma)`
      per step (the `eta_v / N` scaling of the reference C++ code of Goldt et al. 2019: `v` moves
      on the same time scale alpha = steps / N as the overlaps, its step noise is O(1/N) and leaves
      no `eta_v^2` term). `v` then becomes part of the state (`OrderParams.v`); `Scenario.v` is the
      default initial readout `v0`.
    - `weight_decay_v`: lambda_v of the readout (default: the first layer's `weight_decay`, i.e. the
      same L2 penalty on both layers); it adds `-eta_v lambda_v v_i` to dv_i/dalpha.
    - `mean_field`: output `sigma = (1/K) sum_i v_i g(x_i)` (s = 1/K, the mean-field convention)
      instead of the sum (s = 1); needs a learned readout (with `v` fixed, pass `v / K` instead).

    Float fields are stored as JAX arrays so they can be swept without recompiling.

    Example:
        >>> sc = jaxdyn.Scenario(K=2, M=2, T=jnp.diag(jnp.array([1.0, 2.0])), g=jaxdyn.ReLU())
    """

    K: int = eqx.field(static=True)
    M: int = eqx.field(static=True)
    T: Float[Array, "M M"]
    g: AbstractActivation
    g_teacher: AbstractActivation
    v: jax.Array
    w: jax.Array
    noise: jax.Array
    weight_decay: jax.Array
    batch_size: jax.Array
    eta_v: jax.Array | None = None
    weight_decay_v: jax.Array | None = None
    learn_v: bool = eqx.field(static=True, default=False)
    mean_field: bool = eqx.field(static=True, default=False)

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
        eta_v=None,
        weight_decay_v=None,
        mean_field: bool = False,
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
            if val is not None and (np.any(~np.isfinite(val)) or np.any(val < 0)):
                raise ValueError(f"{name} must be finite and >= 0, got {val}")
        bs = concrete(batch_size)
        if bs is not None and bs.ndim == 0 and float(bs) < 1:
            raise ValueError(f"batch_size must be >= 1, got {float(bs)}")
        # --- second-layer learning (issue 15)
        self.learn_v = eta_v is not None
        self.mean_field = bool(mean_field)
        if not self.learn_v:
            if weight_decay_v is not None:
                raise ValueError("weight_decay_v needs a learned readout: pass eta_v= as well")
            if self.mean_field:
                raise ValueError(
                    "mean_field=True needs a learned readout (eta_v=...); with a fixed readout the "
                    "1/K output is the same as passing v / K"
                )
            self.eta_v = None
            self.weight_decay_v = None
        else:
            self.eta_v = jnp.asarray(eta_v, dtype=float)
            wv = self.weight_decay if weight_decay_v is None else weight_decay_v
            self.weight_decay_v = jnp.asarray(wv, dtype=float)
            for name, raw in (("eta_v", eta_v), ("weight_decay_v", wv)):
                val = concrete(raw)
                if val is not None and np.any(~np.isfinite(val)):
                    raise ValueError(f"{name} must be finite, got {val}")
                if val is not None and np.any(val < 0):
                    raise ValueError(f"{name} must be >= 0, got {val}")
            _check_readout_averages(self.g, self.g_teacher)


def _check_readout_averages(g, gs) -> None:
    """dv/dalpha needs I2 = E[g(x) g(x')] for (g, g) and (g, g*): refuse activations without it."""
    cov = np.array([[1.0, 0.3], [0.3, 0.8]])
    for acts in ((g, g), (g, gs)):
        try:
            with jax.ensure_compile_time_eval():  # concrete even when Scenario is built under jit
                val = np.asarray(I2(cov, acts))
        except (NotImplementedError, TypeError, ValueError) as e:
            raise ValueError(
                f"learning the readout (eta_v=...) needs the average I2 = E[g(x) g(x')] for "
                f"activations {acts[0].name!r} and {acts[1].name!r}, which is not available ({e}); "
                "use an activation with closed-form or quadrature averages (ReLU, Erf, Linear, ...)"
            ) from None
        if not np.all(np.isfinite(val)):
            raise ValueError(
                f"learning the readout needs I2 for activations {acts[0].name!r}, {acts[1].name!r}; "
                "it evaluates to a non-finite value"
            )


def readout(scenario: Scenario, op: OrderParams) -> jax.Array:
    """The effective output weights of the student: `s v` with `v = op.v` for a learned readout
    (`s = 1/K` under `mean_field`, else 1), `scenario.v` for a fixed one."""
    if not scenario.learn_v:
        return scenario.v
    v = scenario.v if op.v is None else op.v
    return v / scenario.K if scenario.mean_field else v


def gather(C, idx):
    """Sub-covariances C[idx][:, idx] for a static index array idx of shape (..., n)."""
    idx = jnp.asarray(idx)
    return C[..., idx[..., :, None], idx[..., None, :]]


def covariance(scenario: Scenario, op: OrderParams) -> Float[Array, "*batch K+M K+M"]:
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
    if op.v is not None:
        if not scenario.learn_v:
            raise ValueError(
                "the state carries a readout v but the scenario keeps v fixed: pass eta_v= to "
                "jaxdyn.Scenario to learn it, or drop v from OrderParams"
            )
        if op.v.shape != op.Q.shape[:-2] + (K,):
            raise ValueError(
                f"v (v0) must have shape {op.Q.shape[:-2] + (K,)} (one weight per student unit, "
                f"K = {K}), got {op.v.shape}"
            )
        v = concrete(op.v)
        if v is not None and not np.all(np.isfinite(v)):
            raise ValueError("v contains non-finite entries")
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

