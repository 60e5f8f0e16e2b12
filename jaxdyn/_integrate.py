"""Integration of the order-parameter ODEs with diffrax, with divergence as a result."""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._model import OrderParams, Scenario, check_eta, check_order_params
from ._ode import eps_g as _eps_g, vector_field


class RESULTS:
    """Status codes of `integrate` (an int array per trajectory, so it works under vmap)."""

    successful = 0
    diverged = 1  # the weights blew up: a result (eta above critical), not a failure
    max_steps_reached = 2
    failed = 3  # the solver failed for another reason (step size collapse, non-finite values)
    left_series_region = 4  # reserved: i4="hermite" left the series' convergence region

    messages = {
        0: "finished",
        1: "diverged: the order parameters blew up (learning rate above critical)",
        2: "the maximum number of solver steps was reached; increase `max_steps`",
        3: "the ODE solver failed",
        4: "finished, but the trajectory left the Hermite series' convergence region",
    }


class Trajectory(eqx.Module):
    """A solution of the order-parameter ODEs at the requested times.

    Fields: `alpha` (n,), `Q` (n, K, K), `R` (n, K, M), `eps_g` (n,), `status` (int, see
    `jaxdyn.RESULTS`), `alpha_end` (the last time reached: `alphas[-1]`, or where the solve stopped),
    `num_steps`, `alpha_left_series` (with `i4="hermite"`: the first recorded alpha at which an I4
    argument lay outside the series' convergence region; nan otherwise). Entries after a divergence
    are `inf`. Under vmap every field gains a leading axis.
    Properties: `diverged`, `alpha_diverged` (nan if not diverged), `ok`.
    """

    alpha: jax.Array
    Q: jax.Array
    R: jax.Array
    eps_g: jax.Array
    status: jax.Array
    alpha_end: jax.Array
    num_steps: jax.Array
    alpha_left_series: jax.Array

    @property
    def diverged(self):
        return self.status == RESULTS.diverged

    @property
    def alpha_diverged(self):
        return jnp.where(self.diverged, self.alpha_end, jnp.nan)

    @property
    def ok(self):
        return (self.status == RESULTS.successful) | (self.status == RESULTS.diverged)

    @property
    def order_params(self) -> OrderParams:
        return OrderParams(Q=self.Q, R=self.R)

    def message(self) -> str:
        s = np.asarray(self.status)
        if s.ndim:
            return "; ".join(f"{k}: {RESULTS.messages[k]}" for k in np.unique(s))
        msg = RESULTS.messages[int(s)]
        if int(s) == RESULTS.diverged:
            msg += f" at alpha = {float(self.alpha_end):.6g}"
        return msg


def _blowup_cond(scale):
    def cond(t, y, args, **kwargs):
        q = jnp.diagonal(y.Q, axis1=-2, axis2=-1)
        bad = ~jnp.all(jnp.isfinite(y.Q)) | ~jnp.all(jnp.isfinite(y.R))
        return bad | (jnp.max(jnp.abs(q)) > scale)

    return cond


# diffrax traces the right-hand side several times (initial step, the step, dense output); an
# inner jit makes every trace after the first a cache hit (the ReLU field's graph is large).
_field = jax.jit(vector_field, static_argnames=("eta2", "i4", "order"))


@eqx.filter_jit
def _solve(scenario, op0, eta, alphas, t0, *, eta2, i4, order, solver, controller, dt0, max_steps,
           blowup, adjoint):
    def rhs(t, y, args):
        return _field(scenario, y, args, eta2=eta2, i4=i4, order=order)

    term = diffrax.ODETerm(rhs)
    saveat = diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=alphas), diffrax.SubSaveAt(t1=True)])
    scale = blowup * jnp.maximum(1.0, jnp.max(jnp.abs(scenario.T)))
    sol = diffrax.diffeqsolve(
        term,
        solver,
        t0=t0,
        t1=alphas[-1],
        dt0=dt0,
        y0=op0,
        args=eta,
        saveat=saveat,
        stepsize_controller=controller,
        max_steps=max_steps,
        event=diffrax.Event(_blowup_cond(scale)),
        adjoint=adjoint,
        throw=False,
    )
    ys, yend = sol.ys
    res = sol.result
    status = jnp.where(
        res == diffrax.RESULTS.successful,
        RESULTS.successful,
        jnp.where(
            res == diffrax.RESULTS.event_occurred,
            RESULTS.diverged,
            jnp.where(res == diffrax.RESULTS.max_steps_reached, RESULTS.max_steps_reached,
                      RESULTS.failed),
        ),
    )
    reached = jnp.all(jnp.isfinite(ys.Q), axis=(-1, -2)) & jnp.all(jnp.isfinite(ys.R), axis=(-1, -2))
    safe = OrderParams(
        Q=jnp.where(reached[:, None, None], ys.Q, jnp.eye(scenario.K)),
        R=jnp.where(reached[:, None, None], ys.R, 0.0),
    )
    eg = jnp.where(reached, _eps_g(scenario, safe), jnp.inf)
    if i4 == "hermite" and eta2:
        inside = _series_region(scenario, safe) | ~reached
        first_out = jnp.argmin(inside)
        left = jnp.where(jnp.all(inside), jnp.nan, alphas[first_out])
    else:
        left = jnp.asarray(jnp.nan, alphas.dtype)
    return Trajectory(
        alpha=alphas,
        Q=ys.Q,
        R=ys.R,
        eps_g=eg,
        status=status,
        alpha_end=sol.ts[1][-1],
        num_steps=sol.stats["num_steps"],
        alpha_left_series=left,
    )


def _series_region(scenario, ops):
    """Per recorded state: do all I4 arguments with four distinct units lie inside the Hermite
    series' convergence region? (Coinciding units are reduced exactly, never by the series.)"""
    from ._hermite import hermite_in_region
    from ._model import covariance
    from ._ode import _gather, _i4_index

    _, idx4, _, _ = _i4_index(scenario.K, scenario.M)
    distinct = np.array([len(set(q)) == 4 for q in idx4.tolist()])
    if not distinct.any():
        return jnp.ones(ops.Q.shape[:-2], bool)
    cov4 = _gather(covariance(scenario, ops), idx4[distinct])
    return jnp.all(hermite_in_region(cov4), axis=-1)


def integrate(
    scenario: Scenario,
    op0: OrderParams,
    *,
    eta,
    alphas,
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
    - `scenario`: a `jaxdyn.Scenario`; `op0`: initial `jaxdyn.OrderParams` (C must be PSD).
    - `eta`: learning rate (> 0). Pass a JAX array to sweep without recompiling.
    - `alphas`: increasing array of times (alpha = examples / N) at which to record.
    - `eta2`: keep the `eta^2` term (default True; False gives the small-eta dynamics).
    - `i4`: `"exact"` or `"hermite"` (series of order `order`) for the `eta^2` averages.

    **Other arguments:**
    - `rtol`, `atol`: tolerances of the default adaptive controller (`diffrax.PIDController`).
    - `solver` (default `diffrax.Tsit5()`), `stepsize_controller`, `dt0`: any diffrax solver and
      controller; e.g. `solver=diffrax.Euler(), stepsize_controller=diffrax.ConstantStepSize(),
      dt0=0.01` reproduces fixed-step Euler codes step for step.
    - `blowup`: divergence is declared when a `Q_ii` exceeds `blowup * max(1, max|T|)` or a value
      becomes non-finite (a diffrax event: the solve stops, no NaN, no exception); the status is
      `RESULTS.diverged` and `alpha_end` is where it was detected.
    - `adjoint`: diffrax adjoint (e.g. `diffrax.ForwardMode()` for `jax.jacfwd` through the solve).
    - `throw`: raise `RuntimeError` if the solver failed (max steps, step-size collapse). Divergence
      never raises. Ignored under `vmap`/`jit` (read `.status` instead).

    Example:
        >>> sc = jaxdyn.Scenario(K=2, M=2, T=jnp.diag(jnp.array([1.0, 2.0])))
        >>> op0 = jaxdyn.OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=1e-3 * jnp.eye(2))
        >>> traj = jaxdyn.integrate(sc, op0, eta=1.0, alphas=jnp.linspace(0, 100, 101))
        >>> traj.eps_g[-1], traj.diverged
    """
    check_order_params(scenario, op0)
    check_eta(eta)
    if i4 not in ("exact", "hermite"):
        raise ValueError(f"i4 must be 'exact' or 'hermite', got {i4!r}")
    alphas = jnp.asarray(alphas, dtype=float)
    if alphas.ndim != 1 or alphas.shape[0] < 1:
        raise ValueError("alphas must be a non-empty 1-D array")
    if not isinstance(alphas, jax.core.Tracer):
        a = np.asarray(alphas)
        if np.any(np.diff(a) < 0) or a[0] < alpha0:
            raise ValueError("alphas must be non-decreasing and start at or after alpha0")
    solver = diffrax.Tsit5() if solver is None else solver
    if stepsize_controller is None:
        stepsize_controller = diffrax.PIDController(rtol=rtol, atol=atol)
    if isinstance(stepsize_controller, diffrax.ConstantStepSize) and dt0 is None:
        raise ValueError("a constant step size needs dt0")
    adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
    dtype = jnp.result_type(float)
    op0 = OrderParams(Q=jnp.asarray(op0.Q, dtype), R=jnp.asarray(op0.R, dtype))
    traj = _solve(
        scenario, op0, jnp.asarray(eta, dtype), alphas, jnp.asarray(alpha0, dtype),
        eta2=eta2, i4=i4, order=order, solver=solver, controller=stepsize_controller, dt0=dt0,
        max_steps=max_steps, blowup=blowup, adjoint=adjoint,
    )
    if throw and not isinstance(traj.status, jax.core.Tracer):
        st = np.asarray(traj.status)
        if np.any((st == RESULTS.max_steps_reached) | (st == RESULTS.failed)):
            raise RuntimeError(f"jaxdyn.integrate: {traj.message()} (pass throw=False to inspect)")
    return traj
