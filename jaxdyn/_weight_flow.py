"""Weight-space dynamics under the analytic population gradient (paper 003): gradient flow with
diffrax, population gradient descent with a step size or any optax optimizer (infinite-batch
training), recording the order parameters.

Relation to jaxdyn's order-parameter ODE (docs/conventions.md): with `w_j = J_j / sqrt(N)`, `d = N`,
online SGD moves `w_j` by `-(eta / N) dL/dw_j` per example plus noise of zero mean; in
`alpha = steps / N` the drift is `dW/dalpha = -eta dL/dW`, and the noise only enters at `O(eta^2)`.
So the gradient flow `dW/dt = -dL/dW` is the small-learning-rate ODE (`eta2=False`) at
`t = eta * alpha`, with `Q = W W^T`, `R = W W_teacher^T`, `T = W_teacher W_teacher^T`.
(Paper 003's loss sums N samples, so its time is ours divided by N.)
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._activations import ReLU
from ._model import OrderParams, Scenario
from ._population import check_weights, population_gradient, population_loss


class WeightTrajectory(eqx.Module):
    """Weights and order parameters along a weight-space trajectory.

    Fields: `t` (n,) (flow time `t = eta * alpha` for `gradient_flow`, the step count for
    `population_descent`), `W` (n, K, d), `Q = W W^T` (n, K, K), `R = W W_teacher^T` (n, K, M),
    `T` (M, M), `loss` (n,) the population loss (= eps_g), `status` (0: finished; 1: the solver hit
    `max_steps`; 2: it failed), `num_steps`. Under vmap every field gains a leading axis.
    """

    t: jax.Array
    W: jax.Array
    Q: jax.Array
    R: jax.Array
    T: jax.Array
    loss: jax.Array
    status: jax.Array
    num_steps: jax.Array

    @property
    def order_params(self) -> OrderParams:
        return OrderParams(Q=self.Q, R=self.R)

    @property
    def ok(self):
        return self.status == 0


def weight_order_params(W, W_teacher) -> OrderParams:
    """`OrderParams(Q = W W^T, R = W W_teacher^T)` (batched over leading axes): the overlaps of
    jaxdyn's convention for weights `w_j = J_j / sqrt(N)`.

    Example:
        >>> op = jaxdyn.weight_order_params(jnp.array([[1.0, 0.5]]), jnp.eye(2))
    """
    W = jnp.asarray(W, float)
    Wt = jnp.asarray(W_teacher, float)
    if W.shape[-1] != Wt.shape[-1]:
        raise ValueError(f"W {W.shape} and W_teacher {Wt.shape} must share the last axis d")
    return OrderParams(Q=jnp.einsum("...kd,...ld->...kl", W, W),
                       R=jnp.einsum("...kd,...md->...km", W, Wt))


def population_scenario(W_teacher, *, K: int, v=None, u=None) -> Scenario:
    """The `jaxdyn.Scenario` (ReLU, `T = W_teacher W_teacher^T`, second-layer weights `v`, `u`)
    whose small-eta ODE the weight-space gradient flow follows.

    Example:
        >>> sc = jaxdyn.population_scenario(jnp.array([[1.0, 0.0], [0.3, 2.0]]), K=2)
    """
    Wt = jnp.asarray(W_teacher, float)
    if Wt.ndim != 2:
        raise ValueError(f"W_teacher must have shape (M, d), got {Wt.shape}")
    return Scenario(K=K, M=Wt.shape[0], T=Wt @ Wt.T, g=ReLU(), v=v, w=u)


def _record(Ws, Wt, v, u, angles):
    op = weight_order_params(Ws, Wt)
    loss = population_loss(Ws, Wt, v=v, u=u, angles=angles)
    return op, loss


@eqx.filter_jit
def _flow(W0, Wt, v, u, times, *, angles, solver, controller, max_steps, dt0):
    def rhs(t, W, args):
        return -population_gradient(W, Wt, v=v, u=u, angles=angles)

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(rhs), solver, t0=jnp.zeros((), times.dtype), t1=times[-1], dt0=dt0, y0=W0,
        saveat=diffrax.SaveAt(ts=times), stepsize_controller=controller, max_steps=max_steps,
        throw=False,
    )
    status = jnp.where(sol.result == diffrax.RESULTS.successful, 0,
                       jnp.where(sol.result == diffrax.RESULTS.max_steps_reached, 1, 2))
    Ws = sol.ys
    op, loss = _record(Ws, Wt, v, u, angles)
    return WeightTrajectory(t=times, W=Ws, Q=op.Q, R=op.R, T=Wt @ Wt.T, loss=loss, status=status,
                            num_steps=sol.stats["num_steps"])


def gradient_flow(
    W0,
    W_teacher,
    *,
    times,
    v=None,
    u=None,
    angles="auto",
    rtol: float = 1e-10,
    atol: float = 1e-12,
    solver=None,
    stepsize_controller=None,
    dt0=None,
    max_steps: int = 100_000,
    throw: bool = True,
) -> WeightTrajectory:
    """Integrate the population gradient flow `dW/dt = -dL/dW` (paper 003) from `W0` with diffrax.

    `t` is `eta * alpha` of jaxdyn's small-eta ODE (`integrate(..., eta2=False)`): the recorded
    `Q`, `R` equal its solution at `alpha = t / eta` (see the module docstring).

    **Arguments:** `W0` (K, d) students, `W_teacher` (M, d), `times` (non-decreasing, >= 0; the
    flow starts at t = 0), `v`, `u` second-layer weights, `angles` as in `population_gradient`,
    `rtol`/`atol` of the default `diffrax.PIDController` (default solver `diffrax.Dopri8()`),
    `throw`: raise if the solver did not finish (ignored under jit/vmap: read `.status`).

    Example:
        >>> W0 = jnp.array([[0.3, 0.1], [0.1, 0.2]])
        >>> tr = jaxdyn.gradient_flow(W0, jnp.eye(2), times=jnp.linspace(0.0, 20.0, 5))
        >>> tr.loss   # decreasing to ~0: the students become a permutation of the teachers
    """
    W0, Wt, v, u, angles = check_weights(W0, W_teacher, v, u, angles=angles)
    if W0.ndim != 2 or Wt.ndim != 2:
        raise ValueError("gradient_flow takes W0 (K, d) and W_teacher (M, d); vmap it for batches")
    times = jnp.asarray(times, float)
    if times.ndim != 1 or times.shape[0] < 1:
        raise ValueError("times must be a non-empty 1-D array")
    if not isinstance(times, jax.core.Tracer):
        tt = np.asarray(times)
        if np.any(np.diff(tt) < 0) or tt[0] < 0 or not np.all(np.isfinite(tt)):
            raise ValueError("times must be finite, non-decreasing and >= 0 (the flow starts at 0)")
    solver = diffrax.Dopri8() if solver is None else solver
    if stepsize_controller is None:
        stepsize_controller = diffrax.PIDController(rtol=rtol, atol=atol)
    traj = _flow(W0, Wt, v, u, times, angles=angles, solver=solver, controller=stepsize_controller,
                 max_steps=max_steps, dt0=dt0)
    if throw and not isinstance(traj.status, jax.core.Tracer) and int(np.max(traj.status)) != 0:
        raise RuntimeError("jaxdyn.gradient_flow: the solver did not finish (status "
                           f"{int(np.max(traj.status))}); increase max_steps or pass throw=False")
    return traj


@eqx.filter_jit
def _descent(W0, Wt, v, u, optimizer, *, n_rec, every, angles):
    def loss_grad(W):
        return population_gradient(W, Wt, v=v, u=u, angles=angles)

    def step(carry, _):
        W, state = carry
        g = loss_grad(W)
        # optax mixes Python floats with its int32 step count (Adam's `b1 ** count`): standard
        # promotion for the optimizer's own code, whatever the caller's setting
        with jax.numpy_dtype_promotion("standard"):
            upd, state = optimizer.update(g, state, W)
        return (W + upd, state), None

    def block(carry, _):
        carry, _ = jax.lax.scan(step, carry, None, length=every)
        return carry, carry[0]

    state0 = optimizer.init(W0)
    _, Ws = jax.lax.scan(block, (W0, state0), None, length=n_rec)
    Ws = jnp.concatenate([W0[None], Ws], axis=0)
    op, loss = _record(Ws, Wt, v, u, angles)
    t = jnp.arange(n_rec + 1, dtype=W0.dtype) * every
    return WeightTrajectory(t=t, W=Ws, Q=op.Q, R=op.R, T=Wt @ Wt.T, loss=loss,
                            status=jnp.zeros((), int), num_steps=jnp.asarray(n_rec * every))


def population_descent(
    W0,
    W_teacher,
    *,
    steps: int,
    lr=None,
    optimizer=None,
    record_every: int = 1,
    v=None,
    u=None,
    angles="auto",
) -> WeightTrajectory:
    """Discrete training on the population (infinite-batch) loss: `W <- W - lr dL/dW`, or the
    update of any optax `optimizer` (momentum, Adam, ...) fed with the analytic gradient.

    Records at steps `0, record_every, ..., steps` (`t` = step count). Plain descent with step
    `lr` is the Euler discretisation of `gradient_flow` with `dt = lr`.

    Example:
        >>> tr = jaxdyn.population_descent(jnp.array([[0.3, 0.1]]), jnp.eye(1, 2), steps=200,
        ...                                lr=0.5, record_every=50)
        >>> import optax
        >>> tr = jaxdyn.population_descent(jnp.array([[0.3, 0.1]]), jnp.eye(1, 2), steps=200,
        ...                                optimizer=optax.adam(0.05), record_every=50)
    """
    import optax

    W0, Wt, v, u, angles = check_weights(W0, W_teacher, v, u, angles=angles)
    if (lr is None) == (optimizer is None):
        raise ValueError("give exactly one of lr (plain gradient descent) or optimizer (an optax "
                         "GradientTransformation)")
    if optimizer is None:
        if not isinstance(lr, jax.core.Tracer) and not (np.isfinite(lr) and float(lr) > 0):
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        optimizer = optax.sgd(lr)
    if not (isinstance(steps, (int, np.integer)) and steps >= 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not (isinstance(record_every, (int, np.integer)) and record_every >= 1
            and steps % record_every == 0):
        raise ValueError(f"record_every must be a positive integer dividing steps = {steps}, "
                         f"got {record_every!r}")
    return _descent(W0, Wt, v, u, optimizer, n_rec=int(steps // record_every),
                    every=int(record_every), angles=angles)
