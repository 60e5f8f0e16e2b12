"""Learning-rate protocols: objectives of the learning curve, their gradients with respect to a
schedule's parameters, their optimisation with optax, and a Pontryagin (costate) cross-check.

Objectives (Modules, `objective.value(...)` inside `evaluate_schedule`):

- `FinalError(alpha_F, log=True)`: `ln eps_g(alpha_F)` (or `eps_g(alpha_F)`);
- `TimeToTarget(eps_target, alpha_max)`: the first alpha with `eps_g = eps_target`, located by a
  diffrax event with a Newton root find on the dense solution (so the time is differentiable);
  not reached by `alpha_max`: the penalised value `alpha_max (1 + ln(eps_g(alpha_max)/eps_target))`
  (continuous at the boundary, still decreasing as the error falls) and `reached=False`;
- `IntegratedError(alpha_F)`: `int_0^alpha_F eps_g dalpha` (an extra state of the ODE).

The ODE is `jaxdyn.OrderParamODE(scenario, eta=schedule)` (the object `jaxdyn.integrate` solves;
eta = schedule(alpha) through its `rate`), integrated by diffrax (Tsit5,
PID controller at `rtol`/`atol`, the schedule's jumps declared through `ClipStepSizeController`).
Gradients: reverse mode with `diffrax.RecursiveCheckpointAdjoint` (discretise-then-optimise: the
exact derivative of the computed solution, memory by binomial checkpointing); forward mode with
`diffrax.ForwardMode` (`jax.jacfwd`) as a cross-check. `pontryagin` solves the costate (adjoint)
ODE backwards along the dense forward solution, written out by hand (optimise-then-discretise):
it gives a third, independent gradient and the Hamiltonian H = p . f, whose minimiser over eta is
Pontryagin's optimal eta(alpha) for the current trajectory.

`simulate_objective` measures an objective on finite-N SGD instead (one value per seed, by the
exact overlap chain or in weight space), to check an optimised schedule against SGD.

A divergence (a `Q_ii` above `blowup * max(1, max|T|)`) stops the solve by an event; the objective
is then evaluated at the blow-up state (huge), so an optimiser is pushed back, and
`diverged=True` reports it.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jax.flatten_util import ravel_pytree

from ._model import OrderParams, Scenario, check_order_params
from ._ode import OrderParamODE, eps_g
from ._schedules import (AbstractSchedule, Constant, PiecewiseConstant, check_schedule,
                         declare_jumps)


# ----------------------------------------------------------------------------- objectives


def _as_float(x):
    # an array field (not static), so that a new alpha_F or target does not recompile
    return jnp.asarray(x, dtype=float)


class FinalError(eqx.Module):
    """Objective: `ln eps_g(alpha_F)` (`log=True`, default; well scaled over decades) or
    `eps_g(alpha_F)`.

    Example:
        >>> obj = jaxdyn.FinalError(alpha_F=50.0)
    """

    alpha_F: float = eqx.field(converter=_as_float)
    log: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        if not (np.isfinite(float(self.alpha_F)) and float(self.alpha_F) > 0):
            raise ValueError(f"alpha_F must be finite and > 0, got {self.alpha_F!r}")

    @property
    def t1(self):
        return self.alpha_F


class TimeToTarget(eqx.Module):
    """Objective: the first alpha at which `eps_g` falls to `eps_target` (searched up to
    `alpha_max`; see the module docstring for the value when it is not reached).

    Example:
        >>> obj = jaxdyn.TimeToTarget(eps_target=1e-3, alpha_max=200.0)
    """

    eps_target: float = eqx.field(converter=_as_float)
    alpha_max: float = eqx.field(converter=_as_float)

    def __check_init__(self):
        if not (np.isfinite(float(self.eps_target)) and float(self.eps_target) > 0):
            raise ValueError(f"eps_target must be finite and > 0, got {self.eps_target!r}")
        if not (np.isfinite(float(self.alpha_max)) and float(self.alpha_max) > 0):
            raise ValueError(f"alpha_max must be finite and > 0, got {self.alpha_max!r}")

    @property
    def t1(self):
        return self.alpha_max


class IntegratedError(eqx.Module):
    """Objective: `int_0^alpha_F eps_g(alpha) dalpha` (the area under the learning curve).

    Example:
        >>> obj = jaxdyn.IntegratedError(alpha_F=50.0)
    """

    alpha_F: float = eqx.field(converter=_as_float)

    def __check_init__(self):
        if not (np.isfinite(float(self.alpha_F)) and float(self.alpha_F) > 0):
            raise ValueError(f"alpha_F must be finite and > 0, got {self.alpha_F!r}")

    @property
    def t1(self):
        return self.alpha_F


_OBJECTIVES = (FinalError, TimeToTarget, IntegratedError)


class ProtocolValue(eqx.Module):
    """The value of an objective for one schedule: `value` (what is minimised), `eps_end`
    (eps_g where the solve ended), `alpha_end` (where it ended: alpha_F, the target time or the
    blow-up), `reached` (the target was reached / alpha_F reached without divergence),
    `diverged`, `num_steps`."""

    value: jax.Array
    eps_end: jax.Array
    alpha_end: jax.Array
    reached: jax.Array
    diverged: jax.Array
    num_steps: jax.Array

    def message(self) -> str:
        if bool(self.diverged):
            return f"diverged at alpha = {float(self.alpha_end):.6g}"
        if not bool(self.reached):
            return (f"target not reached by alpha = {float(self.alpha_end):.6g} "
                    f"(eps_g = {float(self.eps_end):.4g}); the value is the penalised one")
        return f"value {float(self.value):.8g} at alpha = {float(self.alpha_end):.6g}"


def _check_objective(objective):
    if not isinstance(objective, _OBJECTIVES):
        raise ValueError("objective must be jaxdyn.FinalError, jaxdyn.TimeToTarget or "
                         f"jaxdyn.IntegratedError, got {type(objective).__name__}")


def _as_schedule(schedule):
    if isinstance(schedule, AbstractSchedule):
        return schedule
    if np.ndim(schedule) == 0 and not isinstance(schedule, jax.core.Tracer):
        return Constant(schedule)
    raise ValueError(f"schedule must be a jaxdyn schedule or a scalar eta, got {type(schedule).__name__}")


def _blowup_scale(scenario, blowup):
    return blowup * jnp.maximum(1.0, jnp.max(jnp.abs(scenario.T)))


def _solve_impl(scenario, op0, schedule, objective, *, eta2, i4, order, rtol, atol, max_steps, blowup,
           adjoint):
    t1 = objective.t1
    # the ODE object of jaxdyn.integrate (eta = schedule(alpha) through its `rate`), plus the
    # running integral of eps_g as a second state
    ode = OrderParamODE(scenario, eta=schedule, eta2=eta2, i4=i4, order=order)

    def rhs(t, y, ode):
        op, _ = y
        return ode.vf(t, op, None), eps_g(scenario, op)

    scale = _blowup_scale(scenario, blowup)

    def blow(t, y, args, **kw):
        q = jnp.diagonal(y[0].Q)
        return ~jnp.all(jnp.isfinite(y[0].Q)) | (jnp.max(jnp.abs(q)) > scale)

    conds = [blow]
    if isinstance(objective, TimeToTarget):
        lt = jnp.log(objective.eps_target)

        def target(t, y, args, **kw):
            return jnp.log(eps_g(scenario, y[0])) - lt

        conds.append(target)
        event = diffrax.Event(conds, root_finder=optx.Newton(rtol=1e-12, atol=1e-12))
    else:
        event = diffrax.Event(conds)
    controller = declare_jumps(diffrax.PIDController(rtol=rtol, atol=atol), schedule)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(rhs), diffrax.Tsit5(), t0=0.0, t1=t1, dt0=None,
        y0=(op0, jnp.zeros((), op0.Q.dtype)), args=ode, saveat=diffrax.SaveAt(t1=True),
        stepsize_controller=controller, max_steps=max_steps, event=event, adjoint=adjoint,
        throw=False,
    )
    op = jax.tree_util.tree_map(lambda x: x[-1], sol.ys[0])
    integral = sol.ys[1][-1]
    t_end = sol.ts[-1]
    diverged = sol.event_mask[0]
    finite = jnp.all(jnp.isfinite(op.Q)) & jnp.all(jnp.isfinite(op.R))
    safe = OrderParams(Q=jnp.where(finite, op.Q, jnp.eye(scenario.K)),
                       R=jnp.where(finite, op.R, 0.0))
    e = jnp.where(finite, eps_g(scenario, safe), 1e300)
    if isinstance(objective, FinalError):
        value = jnp.log(e) if objective.log else e
        reached = ~diverged & (sol.result == diffrax.RESULTS.successful)
    elif isinstance(objective, IntegratedError):
        value = integral + jnp.where(diverged, (t1 - t_end) * e, 0.0)
        reached = ~diverged & (sol.result == diffrax.RESULTS.successful)
    else:
        hit = sol.event_mask[1] & ~diverged
        penal = t1 * (1.0 + jnp.log(e / objective.eps_target))
        value = jnp.where(hit, t_end, jnp.where(diverged, penal + (t1 - t_end), penal))
        reached = hit
    return ProtocolValue(value=value, eps_end=e, alpha_end=t_end, reached=reached,
                         diverged=diverged, num_steps=sol.stats["num_steps"])


_solve = eqx.filter_jit(_solve_impl)


def _value_aux(theta, scenario, op0, schedule, objective, adjoint, opts):
    r = _solve_impl(scenario, op0, _with_theta(schedule, theta), objective, adjoint=adjoint, **opts)
    return r.value, r


@eqx.filter_jit
def _value_and_grad(theta, scenario, op0, schedule, objective, opts):
    # reverse mode: the exact derivative of the computed solution, binomial checkpointing
    return jax.value_and_grad(_value_aux, has_aux=True)(
        theta, scenario, op0, schedule, objective, diffrax.RecursiveCheckpointAdjoint(), opts)


@eqx.filter_jit
def _jac_forward(theta, scenario, op0, schedule, objective, opts):
    return jax.jacfwd(lambda th: _value_aux(th, scenario, op0, schedule, objective,
                                            diffrax.ForwardMode(), opts)[0])(theta)


def _solver_kw(kw):
    out = dict(eta2=True, i4="exact", order=10, rtol=1e-8, atol=1e-10, max_steps=100_000,
               blowup=1e4)
    unknown = set(kw) - set(out)
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)}; known: {sorted(out)}")
    out.update(kw)
    for k in ("rtol", "atol", "blowup"):
        v = out[k]
        if not isinstance(v, jax.core.Tracer) and not (np.ndim(v) == 0 and np.isfinite(v) and v > 0):
            raise ValueError(f"{k} must be a finite number > 0, got {v!r}")
        # arrays, not Python floats: a new tolerance does not recompile the solve
        out[k] = jnp.asarray(v, dtype=jnp.result_type(float))
    return out


def evaluate_schedule(scenario: Scenario, op0: OrderParams, schedule, *, objective,
                      adjoint=None, **options) -> ProtocolValue:
    """The value of `objective` for the learning-rate `schedule` (a jaxdyn schedule or a scalar).

    Differentiable with respect to the schedule (`jax.grad` of `.value` by reverse mode through
    diffrax with `diffrax.RecursiveCheckpointAdjoint`, the default; pass
    `adjoint=diffrax.ForwardMode()` for `jax.jacfwd`). Options: `eta2`, `i4`, `order`, `rtol`
    (1e-8), `atol` (1e-10), `max_steps`, `blowup` as in `jaxdyn.integrate`.

    Example:
        >>> sc = jaxdyn.Scenario(K=1, M=1, g="erf")
        >>> op0 = jaxdyn.OrderParams(Q=[[0.2]], R=[[0.0]])
        >>> jaxdyn.evaluate_schedule(sc, op0, 1.0, objective=jaxdyn.FinalError(alpha_F=10.0)).value
    """
    _check_objective(objective)
    check_order_params(scenario, op0)
    schedule = _as_schedule(schedule)
    check_schedule(schedule, 0.0, objective.t1)
    opts = _solver_kw(options)
    adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
    dtype = jnp.result_type(float)
    op0 = OrderParams(Q=jnp.asarray(op0.Q, dtype), R=jnp.asarray(op0.R, dtype))
    return _solve(scenario, op0, schedule, objective, adjoint=adjoint, **opts)


def schedule_gradient(scenario: Scenario, op0: OrderParams, schedule, *, objective,
                      mode: str = "reverse", return_result: bool = False, **options):
    """`(value, d value / d theta)` for the schedule's trainable parameters `theta`
    (`(ProtocolValue, d value / d theta)` with `return_result=True`: reached, diverged, ...).

    `mode="reverse"`: `jax.value_and_grad` through diffrax with `RecursiveCheckpointAdjoint`;
    `mode="forward"`: `jax.jacfwd` with `diffrax.ForwardMode()` (one tangent per parameter).
    For `PiecewiseConstant`, `theta = log eta` (or `logit(eta / eta_max)`), so
    `d value / d eta_j = grad_j / (d eta_j / d theta_j)`.

    Example:
        >>> sc = jaxdyn.Scenario(K=1, M=1, g="erf")
        >>> op0 = jaxdyn.OrderParams(Q=[[0.2]], R=[[0.0]])
        >>> s = jaxdyn.PiecewiseConstant(jnp.array([1.0, 0.5]), jnp.array([5.0]))
        >>> v, g = jaxdyn.schedule_gradient(sc, op0, s, objective=jaxdyn.FinalError(alpha_F=10.0))
    """
    schedule = _as_schedule(schedule)
    _check_objective(objective)
    check_order_params(scenario, op0)
    check_schedule(schedule, 0.0, objective.t1)
    if mode not in ("reverse", "forward"):
        raise ValueError(f"mode must be 'reverse' or 'forward', got {mode!r}")
    opts = _solver_kw(options)
    dtype = jnp.result_type(float)
    op0 = OrderParams(Q=jnp.asarray(op0.Q, dtype), R=jnp.asarray(op0.R, dtype))
    (val, res), g = _value_and_grad(schedule.theta, scenario, op0, schedule, objective, opts)
    if mode == "forward":
        g = _jac_forward(schedule.theta, scenario, op0, schedule, objective, opts)
    return (res if return_result else val), g


def _with_theta(schedule, theta):
    return eqx.tree_at(lambda s: s.theta, schedule, theta)


# ----------------------------------------------------------------------------- optimisation


class OptimizedSchedule(eqx.Module):
    """Result of `optimize_schedule`: `schedule` (the best one seen, a schedule object of the input's
    type), `value` (its objective), `initial_value`, `history` (objective per step, (steps,)),
    `best_step`, and `result` (the `ProtocolValue` of the returned schedule: reached, diverged,
    alpha_end...)."""

    schedule: AbstractSchedule
    value: jax.Array
    initial_value: jax.Array
    history: jax.Array
    best_step: int = eqx.field(static=True)
    result: ProtocolValue


def optimize_schedule(
    scenario: Scenario,
    op0: OrderParams,
    *,
    objective,
    schedule,
    optimizer=None,
    steps: int = 200,
    progress: bool = True,
    **options,
) -> OptimizedSchedule:
    """Minimise `objective` over the schedule's parameters `theta` by gradient descent through the
    ODE (reverse mode, `RecursiveCheckpointAdjoint`), with an optax optimiser.

    **Arguments:**
    - `objective`: `jaxdyn.FinalError`, `jaxdyn.TimeToTarget` or `jaxdyn.IntegratedError`.
    - `schedule`: the initial schedule (e.g. `jaxdyn.PiecewiseConstant.on_grid(eta0, edges,
      eta_max=2.0)` or `jaxdyn.Chebyshev.constant(...)`). Constraints are its parametrisation:
      eta = exp(theta) > 0, or 0 < eta = eta_max sigmoid(theta) < eta_max.
    - `optimizer`: an `optax.GradientTransformation` (default `optax.adam(0.05)`: steps in theta
      are relative changes of eta).
    - `steps`: number of gradient steps; `progress`: a tqdm progress bar.
    - `options`: solver options as in `evaluate_schedule`.

    Returns an `OptimizedSchedule` (the best schedule seen, its value, the history). A step whose
    objective or gradient is not finite is skipped (the history records nan) instead of poisoning
    the optimiser state.

    Example:
        >>> sc = jaxdyn.Scenario(K=1, M=1, g="erf")
        >>> op0 = jaxdyn.OrderParams(Q=[[0.2]], R=[[0.0]])
        >>> s0 = jaxdyn.PiecewiseConstant.on_grid(0.5, jnp.linspace(0, 10, 3), eta_max=4.0)
        >>> res = jaxdyn.optimize_schedule(sc, op0, objective=jaxdyn.FinalError(alpha_F=10.0),
        ...                                schedule=s0, steps=5, progress=False)
        >>> res.value < res.initial_value
    """
    import optax
    from tqdm.auto import tqdm

    _check_objective(objective)
    check_order_params(scenario, op0)
    schedule = _as_schedule(schedule)
    check_schedule(schedule, 0.0, objective.t1)
    if not (isinstance(steps, (int, np.integer)) and steps >= 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if schedule.theta is None:
        raise ValueError("the schedule has no trainable parameters (theta is None)")
    opts = _solver_kw(options)
    optimizer = optax.adam(0.05) if optimizer is None else optimizer
    dtype = jnp.result_type(float)
    op0 = OrderParams(Q=jnp.asarray(op0.Q, dtype), R=jnp.asarray(op0.R, dtype))

    @eqx.filter_jit
    def update(g, state, theta):
        # optax mixes Python floats with its int32 step count (Adam's `b1 ** count`): standard
        # promotion for the optimizer's own code, whatever the caller's setting
        with jax.numpy_dtype_promotion("standard"):
            upd, state = optimizer.update(g, state, theta)
        return optax.apply_updates(theta, upd), state

    def evaluate(theta):
        (val, res), g = _value_and_grad(theta, scenario, op0, schedule, objective, opts)
        ok = bool(jnp.isfinite(val)) and bool(jnp.all(jnp.isfinite(g)))
        return float(val) if ok else np.nan, res, g, ok

    theta = schedule.theta
    state = optimizer.init(theta)
    history = np.full(steps, np.nan)
    best = (np.inf, theta, None, 0)
    bar = tqdm(range(steps + 1), disable=not progress, desc="optimize_schedule")
    for k in bar:
        v, res, g, ok = evaluate(theta)
        if ok and v < best[0]:
            best = (v, theta, res, k)
        if k == steps:  # the last update's point, evaluated but not stepped from
            break
        history[k] = v
        if ok:  # a non-finite value or gradient is skipped, not fed to the optimiser
            theta, state = update(g, state, theta)
        if progress:
            bar.set_postfix(value=f"{v:.6g}", best=f"{best[0]:.6g}")
    v, th, res, k = best
    if res is None:
        raise ValueError("no finite objective value was reached from the initial schedule; "
                         "start from a smaller eta (the initial schedule probably diverges)")
    return OptimizedSchedule(schedule=_with_theta(schedule, th), value=res.value,
                             initial_value=jnp.asarray(history[0]), history=jnp.asarray(history),
                             best_step=int(k), result=res)


def best_constant_eta(scenario: Scenario, op0: OrderParams, *, objective, eta_range,
                      n_grid: int = 24, xtol: float = 1e-6, **options):
    """The best constant learning rate for `objective`: a log-spaced grid over `eta_range`, then a
    golden-section refinement (in log eta, relative tolerance `xtol`) around the grid's best point.

    Returns `(eta, value, grid_eta, grid_value)` (NumPy). A minimum at the end of the range is
    returned as such (widen `eta_range` if it is not a true bound).

    Example:
        >>> sc = jaxdyn.Scenario(K=1, M=1, g="erf")
        >>> op0 = jaxdyn.OrderParams(Q=[[0.2]], R=[[0.0]])
        >>> eta, v, _, _ = jaxdyn.best_constant_eta(sc, op0, objective=jaxdyn.FinalError(alpha_F=10.0),
        ...                                          eta_range=(0.1, 3.0), n_grid=6, xtol=1e-3)
    """
    _check_objective(objective)
    check_order_params(scenario, op0)
    lo, hi = (float(x) for x in eta_range)
    if not (0 < lo < hi and np.isfinite(hi)):
        raise ValueError(f"eta_range must be (lo, hi) with 0 < lo < hi finite, got {eta_range}")
    opts = _solver_kw(options)
    dtype = jnp.result_type(float)
    op0 = OrderParams(Q=jnp.asarray(op0.Q, dtype), R=jnp.asarray(op0.R, dtype))
    const = Constant(1.0)

    def f(le):
        s = _with_theta(const, jnp.asarray(le, dtype))
        v = float(_solve(scenario, op0, s, objective, adjoint=diffrax.RecursiveCheckpointAdjoint(),
                         **opts).value)
        return v if np.isfinite(v) else np.inf

    le = np.linspace(np.log(lo), np.log(hi), int(n_grid))
    vals = np.array([f(x) for x in le])
    i = int(np.argmin(vals))
    a, b = le[max(i - 1, 0)], le[min(i + 1, len(le) - 1)]
    gr = (np.sqrt(5) - 1) / 2
    c, d = b - gr * (b - a), a + gr * (b - a)
    fc, fd = f(c), f(d)
    while b - a > xtol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - gr * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + gr * (b - a)
            fd = f(d)
    cand = [(fc, c), (fd, d), (vals[i], le[i])]
    v, x = min(cand)
    return float(np.exp(x)), float(v), np.exp(le), vals


# ----------------------------------------------------------------------------- Pontryagin


class PontryaginCheck(eqx.Module):
    """Costate analysis of a schedule for `FinalError(alpha_F, log=True)`:
    `alpha` (n,), `eta` (n,) the schedule, `eta_star` (n,) the minimiser of the Hamiltonian
    `H(eta) = eta a + eta^2 b` (a = p . f_1, b = p . f_2 with `f = eta f_1 + eta^2 f_2` the field)
    over `[0, eta_max]`, `switching` (n,) `dH/deta = a + 2 eta b` at the schedule's eta,
    `hamiltonian` (n,) `H` at the schedule's eta (constant along an optimum of an autonomous
    problem), `grad` (theta's shape) the gradient of the objective with respect to `theta` from
    the costate equations, `value` the objective."""

    alpha: jax.Array
    eta: jax.Array
    eta_star: jax.Array
    switching: jax.Array
    hamiltonian: jax.Array
    grad: jax.Array
    value: jax.Array


def pontryagin(scenario: Scenario, op0: OrderParams, schedule, *, alpha_F, alphas=None,
               eta_max=None, rtol=1e-10, atol=1e-12, eta2=True, i4="exact", order=10,
               max_steps=100_000) -> PontryaginCheck:
    """Pontryagin's costate for the objective `ln eps_g(alpha_F)` along the schedule's trajectory.

    Forward: the ODE with dense output. Backward from `alpha_F`: the costate
    `dp/dalpha = -(df/dy)^T p`, `p(alpha_F) = grad_y ln eps_g(y(alpha_F))`, and
    `dG/dalpha = -(df/dtheta)^T p`, so that `G(0)` is the gradient with respect to `theta`
    (an optimise-then-discretise gradient, independent of differentiating the solver).
    On `alphas` (default 201 points) it records the Hamiltonian's minimiser over eta in
    `[0, eta_max]` (`eta_max` default: the schedule's own bound, else unbounded).

    Example:
        >>> sc = jaxdyn.Scenario(K=1, M=1, g="erf")
        >>> op0 = jaxdyn.OrderParams(Q=[[0.2]], R=[[0.0]])
        >>> pc = jaxdyn.pontryagin(sc, op0, jaxdyn.Constant(1.0), alpha_F=10.0, alphas=jnp.linspace(0, 10, 5))
        >>> pc.grad   # d ln eps_g(10) / d ln eta
    """
    check_order_params(scenario, op0)
    schedule = _as_schedule(schedule)
    check_schedule(schedule, 0.0, alpha_F)
    if eta_max is None:
        eta_max = getattr(schedule, "eta_max", None)
    eta_max = np.inf if eta_max is None else float(eta_max)
    alphas = jnp.linspace(0.0, alpha_F, 201) if alphas is None else jnp.asarray(alphas, float)
    dtype = jnp.result_type(float)
    op0 = OrderParams(Q=jnp.asarray(op0.Q, dtype), R=jnp.asarray(op0.R, dtype))
    return _pontryagin(scenario, op0, schedule, float(alpha_F), alphas, eta_max, rtol, atol,
                       eta2, i4, order, max_steps)


@eqx.filter_jit
def _pontryagin(scenario, op0, schedule, alpha_F, alphas, eta_max, rtol, atol, eta2, i4, order,
                max_steps):
    ode = OrderParamODE(scenario, eta2=eta2, i4=i4, order=order)
    ode1 = OrderParamODE(scenario, eta2=False, i4=i4, order=order)
    y0flat, unravel = ravel_pytree(op0)

    def f(y, eta):
        return ravel_pytree(ode.field(unravel(y), eta))[0]

    controller = declare_jumps(diffrax.PIDController(rtol=rtol, atol=atol), schedule)
    fwd = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, s: f(y, s(t))), diffrax.Tsit5(), t0=0.0, t1=alpha_F, dt0=None,
        y0=y0flat, args=schedule, saveat=diffrax.SaveAt(t1=True, dense=True),
        stepsize_controller=controller, max_steps=max_steps,
    )
    yT = fwd.ys[-1]
    value = jnp.log(eps_g(scenario, unravel(yT)))
    pT = jax.grad(lambda y: jnp.log(eps_g(scenario, unravel(y))))(yT)
    theta0 = schedule.theta

    def back(t, state, args):
        p, _ = state
        y = fwd.evaluate(t)

        def h(y, theta):
            return jnp.dot(p, f(y, _with_theta(schedule, theta)(t)))

        dy, dth = jax.grad(h, argnums=(0, 1))(y, theta0)
        return -dy, -dth

    bwd = diffrax.diffeqsolve(
        diffrax.ODETerm(back), diffrax.Tsit5(), t0=alpha_F, t1=0.0, dt0=None,
        y0=(pT, jnp.zeros_like(theta0)), saveat=diffrax.SaveAt(ts=alphas[::-1], t1=True),
        stepsize_controller=controller, max_steps=max_steps,
    )
    P = bwd.ys[0][:-1][::-1]  # costate on alphas
    grad = bwd.ys[1][-1]
    Y = jax.vmap(fwd.evaluate)(alphas)
    eta = schedule(alphas)
    a = jax.vmap(lambda p, y: jnp.dot(p, ravel_pytree(ode1.field(unravel(y), 1.0))[0]))(P, Y)
    a2 = jax.vmap(lambda p, y: jnp.dot(p, f(y, 1.0)))(P, Y)
    b = a2 - a  # f(eta) = eta f_1 + eta^2 f_2 exactly (the field is quadratic in eta)
    H = eta * a + eta**2 * b
    interior = jnp.where(b > 0, jnp.clip(-a / (2 * b), 0.0, eta_max), jnp.inf)
    ends = jnp.where(eta_max * a + eta_max**2 * b < 0, eta_max, 0.0)
    e_star = jnp.where(b > 0, interior, ends)
    return PontryaginCheck(alpha=alphas, eta=eta, eta_star=e_star, switching=a + 2 * eta * b,
                           hamiltonian=H, grad=grad, value=value)


# ----------------------------------------------------------------------------- SGD check


class SGDObjective(eqx.Module):
    """An objective measured on finite-N online SGD (`simulate_objective`), one value per seed.

    Fields: `value` (S,) the objective of each seed's learning curve (`ln eps_g(alpha_F)` /
    `eps_g(alpha_F)` for `FinalError`; the first alpha with `eps_g <= eps_target`, linearly
    interpolated in `ln eps_g` between records, for `TimeToTarget`; the trapezoid integral for
    `IntegratedError`), `reached` (S,) (for `TimeToTarget`: the seed crossed the target within the
    simulated range; its value is then its crossing time, else the last simulated alpha), `alpha`
    (n,) the record times, `eps_g` (S, n) the recorded learning curves, `N`, `method`.
    `mean()` and `sem()` (standard error of the mean over seeds) summarise `value`.
    """

    value: jax.Array
    reached: jax.Array
    alpha: jax.Array
    eps_g: jax.Array
    N: int = eqx.field(static=True)
    method: str = eqx.field(static=True)

    def mean(self):
        return float(np.mean(np.asarray(self.value)))

    def sem(self):
        v = np.asarray(self.value)
        return float(np.std(v, ddof=1) / np.sqrt(v.size)) if v.size > 1 else np.nan


def _first_step_at(a, N):
    # the first step t with t / N >= a (the simulators evaluate eta(t / N) before step t), robust
    # to the rounding of a * N
    t = int(np.ceil(a * N))
    while t > 0 and (t - 1) / N >= a:
        t -= 1
    while t / N < a:
        t += 1
    return t


def _pieces(schedule, t_end, N):
    """[(step0, step1, eta)] of a Constant / PiecewiseConstant schedule up to step t_end."""
    if isinstance(schedule, Constant):
        return [(0, t_end, float(schedule.eta))]
    if not isinstance(schedule, PiecewiseConstant):
        raise ValueError(
            "method='overlaps' simulates a piecewise-constant schedule piece by piece (the overlap "
            f"chain takes a constant eta); got {type(schedule).__name__}: use method='weights', "
            "or jaxdyn.PiecewiseConstant")
    bounds = [0] + [_first_step_at(float(j), N) for j in np.asarray(schedule.jump_ts)] + [None]
    eta = np.asarray(schedule.eta)
    out = []
    for k in range(len(eta)):
        s0, s1 = bounds[k], t_end if bounds[k + 1] is None else min(bounds[k + 1], t_end)
        if s1 > s0:
            out.append((s0, s1, float(eta[k])))
        if s1 >= t_end:
            break
    return out


def _sgd_value(objective, alpha, E, N):
    if isinstance(objective, FinalError):
        e = E[:, -1]
        return (np.log(e) if objective.log else e), np.isfinite(e)
    if isinstance(objective, IntegratedError):
        return np.trapezoid(E, alpha, axis=1), np.all(np.isfinite(E), axis=1)
    lt = np.log(float(objective.eps_target))
    below = np.log(E) <= lt
    reached = below.any(axis=1)
    k = np.argmax(below, axis=1)
    km = np.maximum(k - 1, 0)
    rows = np.arange(E.shape[0])
    l0, l1 = np.log(E[rows, km]), np.log(E[rows, k])
    a0, a1 = alpha[km], alpha[k]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(l1 < l0, (l0 - lt) / (l0 - l1), 1.0)
    t = np.where(k > 0, a0 + np.clip(frac, 0.0, 1.0) * (a1 - a0), alpha[0])
    return np.where(reached, t, alpha[-1]), reached


def simulate_objective(scenario: Scenario, op0: OrderParams, schedule, *, objective, N: int,
                       seeds=1000, method: str = "overlaps", dtype=None, alpha_stop=None,
                       records_per_piece: int = 16, max_piece: float | None = None,
                       seed_offset: int = 0) -> SGDObjective:
    """The objective measured on online SGD at finite `N` under `schedule`, one value per seed.

    `method="overlaps"` (default): the exact Markov chain of the overlaps
    (`jaxdyn.simulate(..., method="overlaps")`, cost independent of N, vmapped over seeds). The
    chain takes a constant eta, so a `PiecewiseConstant` schedule is run piece by piece: piece j
    covers the steps t with `jump_{j-1} <= t / N < jump_j` (as `jaxdyn.simulate` evaluates
    eta(t / N) before step t), starts from each seed's overlaps at the end of piece j - 1 and draws
    fresh examples (seeds `seed_offset + S (j + 1) + s`: independent streams), which is the same
    law as one weight-space run. Pieces longer than `max_piece` (default: 1/50 of the horizon) are
    split so that records stay dense and a `TimeToTarget` run stops as soon as every seed has
    crossed. `method="weights"`: `jaxdyn.simulate` in weight space, any schedule (N-dimensional
    weights: use few seeds).

    Horizon: `alpha_stop` (default the objective's `alpha_F` / `alpha_max`). Records:
    `records_per_piece` per (split) piece. `dtype` default float64 (`jaxdyn.enable_x64()`), else
    float32. Returns an `SGDObjective` (`.mean()`, `.sem()`).

    Example:
        >>> sc = jaxdyn.Scenario(K=1, M=1, g="erf")
        >>> op0 = jaxdyn.OrderParams(Q=[[0.2]], R=[[0.0]])
        >>> s = jaxdyn.PiecewiseConstant(jnp.array([1.0, 0.5]), jnp.array([2.0]))
        >>> r = jaxdyn.simulate_objective(sc, op0, s, objective=jaxdyn.FinalError(alpha_F=4.0),
        ...                               N=100, seeds=64, records_per_piece=2)
        >>> r.mean(), r.sem()
    """
    from ._simulate import simulate

    _check_objective(objective)
    check_order_params(scenario, op0)
    schedule = _as_schedule(schedule)
    if method not in ("overlaps", "weights"):
        raise ValueError(f"method must be 'overlaps' or 'weights', got {method!r}")
    if not (isinstance(N, (int, np.integer)) and N >= 1):
        raise ValueError(f"N must be a positive integer, got {N!r}")
    if not (isinstance(records_per_piece, (int, np.integer)) and records_per_piece >= 1):
        raise ValueError(f"records_per_piece must be a positive integer, got {records_per_piece!r}")
    a_end = float(objective.t1 if alpha_stop is None else alpha_stop)
    if not (np.isfinite(a_end) and 0 < a_end <= float(objective.t1)):
        raise ValueError(f"alpha_stop must lie in (0, {float(objective.t1):g}], got {alpha_stop!r}")
    check_schedule(schedule, 0.0, a_end, jumps_inside=False)
    if dtype is None:
        dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    seed_list = np.arange(int(seeds)) if np.ndim(seeds) == 0 else np.asarray(seeds, np.int64)
    S = len(seed_list)
    t_end = int(round(a_end * N))
    max_piece = a_end / 50 if max_piece is None else float(max_piece)
    ttt = isinstance(objective, TimeToTarget)

    if method == "weights":
        steps = np.unique(np.rint(np.linspace(0, t_end, 50 * records_per_piece + 1)).astype(int))
        sim = simulate(scenario, op0, eta=schedule, N=int(N), alphas=steps / N,
                       seeds=seed_offset + seed_list, dtype=dtype)
        alpha, E = steps / N, np.asarray(sim.eps_g, float)
    else:
        segs = []
        for s0, s1, e in _pieces(schedule, t_end, N):
            n = max(1, int(np.ceil((s1 - s0) / (max_piece * N))))
            cuts = np.rint(np.linspace(s0, s1, n + 1)).astype(int)
            segs += [(a, b, e) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
        dt = jnp.result_type(float)
        op = OrderParams(Q=jnp.broadcast_to(jnp.asarray(op0.Q, dt), (S,) + np.shape(op0.Q)),
                         R=jnp.broadcast_to(jnp.asarray(op0.R, dt), (S,) + np.shape(op0.R)))
        alphas, curves = [np.zeros(1)], [np.asarray(jax.vmap(lambda o: eps_g(scenario, o))(op))[:, None]]
        for j, (s0, s1, e) in enumerate(segs):
            rel = np.rint(np.linspace(0, s1 - s0, records_per_piece + 1)).astype(int)
            sim = simulate(scenario, op, eta=e, N=int(N), alphas=rel / N,
                           seeds=seed_offset + S * (j + 1) + seed_list, dtype=dtype,
                           method="overlaps")
            op = OrderParams(Q=jnp.asarray(sim.Q[:, -1], dt), R=jnp.asarray(sim.R[:, -1], dt))
            alphas.append((s0 + rel[1:]) / N)
            curves.append(np.asarray(sim.eps_g, float)[:, 1:])
            if ttt and np.all(np.min(curves[-1], axis=1) <= float(objective.eps_target)) \
                    or not np.all(np.isfinite(curves[-1][:, -1])):
                break
        alpha, E = np.concatenate(alphas), np.concatenate(curves, axis=1)
    value, reached = _sgd_value(objective, alpha, E, N)
    return SGDObjective(value=jnp.asarray(value), reached=jnp.asarray(reached),
                        alpha=jnp.asarray(alpha), eps_g=jnp.asarray(E), N=int(N), method=method)
