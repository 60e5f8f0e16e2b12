"""Integration of the order-parameter ODEs with diffrax, with divergence as a result."""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax.numpy as jnp

from ._checks import check_alphas, check_eta
from ._model import OrderParams, Scenario, check_order_params
from ._ode import OrderParamODE, as_i4
from ._solution import RESULTS as RESULTS, Trajectory as Trajectory, solve, throw_if_failed
from ._schedules import AbstractSchedule, check_schedule, declare_jumps, is_schedule
from . import _trace_cache as trace_cache
from ._typing import Scalar, Times


ETA_HINT = ("for several learning rates use jaxdyn.sweep(..., eta=etas), or "
            "jax.vmap(lambda e: jaxdyn.integrate(..., eta=e, ...))(etas)")


@eqx.filter_jit
def _solve(ode, op0, alphas, t0, *, solver, controller, dt0, max_steps, blowup, adjoint):
    return solve(ode, op0, alphas, t0, solver=solver, stepsize_controller=controller, dt0=dt0,
                 max_steps=max_steps, blowup=blowup, adjoint=adjoint)


def _solve_positional(ode, op0, alphas, t0, solver, controller, **opts):
    return _solve(ode, op0, alphas, t0, solver=solver, controller=controller, **opts)


def integrate(
    scenario: Scenario,
    op0: OrderParams,
    *,
    eta: Scalar | AbstractSchedule,
    alphas: Times,
    eta2: bool = True,
    i4: str = "exact",
    order: int = 10,
    alpha0=0.0,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    solver=None,
    stepsize_controller=None,
    dt0=None,
    max_steps: int = 100_000,
    blowup: float = 1e4,
    adjoint=None,
    throw: bool = True,
) -> Trajectory:
    """Integrate the order-parameter ODEs from `op0` and return the `Trajectory` at `alphas`.

    **Main arguments:**
    - `scenario`: a `jaxdyn.Scenario`; `op0`: initial `jaxdyn.OrderParams` (C must be PSD). If
      the scenario learns its readout (`eta_v=...`), `op0.v` is the initial readout `v0`
      (default `scenario.v`) and the trajectory records `v`.
    - `eta`: learning rate (> 0). Pass a JAX array to sweep without recompiling, or a schedule
      (`jaxdyn.PiecewiseConstant`, `jaxdyn.Chebyshev`, `jaxdyn.FunctionSchedule`, ...) for a
      time-dependent eta(alpha); its jumps are declared to the step-size controller.
    - `alphas`: increasing array of times (alpha = examples / N) at which to record.
    - `eta2`: keep the `eta^2` term (default True; False gives the small-eta dynamics).
    - `i4`: `"exact"` or `"hermite"` (series of order `order`) for the `eta^2` averages, or
      `jaxdyn.ExactI4()` / `jaxdyn.HermiteI4(order)`.

    **Other arguments:**
    - `rtol`, `atol`: tolerances of the default adaptive controller (`diffrax.PIDController`).
    - `solver` (default `diffrax.Tsit5()`), `stepsize_controller`, `dt0`: any diffrax solver and
      controller; e.g. `solver=diffrax.Euler(), stepsize_controller=diffrax.ConstantStepSize(),
      dt0=0.01` reproduces fixed-step Euler codes step for step.
    - `blowup`: divergence is declared when a `Q_ii` exceeds `blowup * max(1, max|T|)` or a value
      becomes non-finite (a diffrax event: the solve stops, no NaN, no exception); the status is
      `RESULTS.diverged` and `alpha_end` is where it was detected.
    - `adjoint`: diffrax adjoint (e.g. `diffrax.ForwardMode()` for `jax.jacfwd` through the solve).
    - `throw`: raise `RuntimeError` if the solver failed (max steps, step-size collapse), also
      under `jit`/`vmap` (an equinox run-time error). Divergence never raises.

    Example:
        >>> sc = jaxdyn.Scenario(K=2, M=2, T=jnp.diag(jnp.array([1.0, 2.0])))
        >>> op0 = jaxdyn.OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=1e-3 * jnp.eye(2))
        >>> traj = jaxdyn.integrate(sc, op0, eta=1.0, alphas=jnp.linspace(0, 100, 101))
        >>> traj.eps_g[-1], traj.diverged
    """
    check_order_params(scenario, op0)
    if not is_schedule(eta):
        check_eta(eta, scalar=True, hint=ETA_HINT)
    i4 = as_i4(i4, order)
    check_alphas(alphas, alpha0)
    alphas = jnp.asarray(alphas, dtype=float)
    if is_schedule(eta):
        check_schedule(eta, alpha0, alphas[-1], jumps_inside=False)
    solver = diffrax.Tsit5() if solver is None else solver
    if stepsize_controller is None:
        stepsize_controller = diffrax.PIDController(rtol=rtol, atol=atol)
    if isinstance(stepsize_controller, diffrax.ConstantStepSize) and dt0 is None:
        raise ValueError("a constant step size needs dt0")
    dtype = jnp.result_type(float)
    if is_schedule(eta):
        # jumps of a piecewise-constant eta are declared to the step-size controller, so that no
        # step straddles one (and gradients with respect to the pieces are right: diffrax #363)
        stepsize_controller = declare_jumps(stepsize_controller, eta)
    else:
        eta = jnp.asarray(eta, dtype)
    v0 = None
    if scenario.learn_v:  # second-layer learning: v is part of the state, v0 defaults to scenario.v
        v0 = jnp.asarray(scenario.v if op0.v is None else op0.v, dtype)
    op0 = OrderParams(Q=jnp.asarray(op0.Q, dtype), R=jnp.asarray(op0.R, dtype), v=v0)
    ode = OrderParamODE(scenario, eta=eta, eta2=eta2, i4=i4)
    args = (ode, op0, alphas, jnp.asarray(alpha0, dtype), solver, stepsize_controller)
    opts = dict(dt0=dt0, max_steps=max_steps, blowup=blowup, adjoint=adjoint)
    # with the trace cache on (the jaxdyn command), a new process loads the traced solve from disk
    traj = trace_cache.cached_solve(_solve_positional, args, opts) if trace_cache.enabled() else None
    if traj is None:
        traj = _solve_positional(*args, **opts)
    # a run-time check (equinox error): it raises under jit and vmap too, never on divergence
    return throw_if_failed(traj, traj.status) if throw else traj
