"""The one solve core of the order-parameter ODEs and its result model.

`solve` is what `jaxdyn.integrate` (one trajectory) and `jaxdyn.sweep` (per grid point, under vmap
and shard_map) both run: a diffrax solve of an `OrderParamODE` with the blow-up event (divergence
is a result, not a failure), an optional steady-state stop, and the status mapping to `RESULTS`.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._model import OrderParams
from ._ode import OrderParamODE, eps_g


class RESULTS(eqx.Enumeration):
    """Outcomes of a solve. `Trajectory.status` holds the integer code (the position here:
    0 successful, 1 diverged, 2 max_steps_reached, 3 failed), `Trajectory.result` the item.

    Example:
        >>> jaxdyn.RESULTS[jaxdyn.RESULTS.diverged]
    """

    successful = "finished"
    diverged = "diverged: the order parameters blew up (learning rate above critical)"
    max_steps_reached = "the maximum number of solver steps was reached; increase `max_steps`"
    failed = "the ODE solver failed (step size collapse or non-finite values)"


# integer codes of the RESULTS items (the order of declaration above), for arrays and datasets
STATUS_NAMES = ("successful", "diverged", "max_steps_reached", "failed")
SUCCESSFUL, DIVERGED, MAX_STEPS_REACHED, FAILED = range(4)


def result_of(status) -> RESULTS:
    """The `RESULTS` item of an integer status array (works on traced and batched arrays)."""

    def one(s):
        out = RESULTS.successful
        for code, name in enumerate(STATUS_NAMES[1:], start=1):
            out = RESULTS.where(s == code, getattr(RESULTS, name), out)
        return out

    status = jnp.asarray(status)
    fn = one
    for _ in range(status.ndim):  # RESULTS.where takes a scalar predicate
        fn = jax.vmap(fn)
    return fn(status)


def throw_if_failed(token, status):
    """Raise (at run time, also under jit and vmap) if a solve failed: max steps or a solver
    failure. Divergence never raises. Returns `token`."""
    if not isinstance(status, jax.core.Tracer):  # eager: a plain check, no error machinery
        s = np.asarray(status)
        for code, item in ((MAX_STEPS_REACHED, RESULTS.max_steps_reached), (FAILED, RESULTS.failed)):
            if np.any(s == code):
                raise RuntimeError(f"jaxdyn: {RESULTS[item]} (pass throw=False to inspect .status)")
        return token
    token = RESULTS.max_steps_reached.error_if(token, jnp.any(status == MAX_STEPS_REACHED))
    return RESULTS.failed.error_if(token, jnp.any(status == FAILED))


class Trajectory(eqx.Module):
    """A solution of the order-parameter ODEs at the requested times.

    Fields: `alpha` (n,), `Q` (n, K, K), `R` (n, K, M), `eps_g` (n,), `status` (int code of
    `jaxdyn.RESULTS`; `.result` is the item), `alpha_end` (the last time reached: `alphas[-1]`, or
    where the solve stopped), `num_steps`, `alpha_left_series` (with the Hermite I4: the first
    recorded alpha at which an I4 argument lay outside the series' convergence region; nan
    otherwise), `Q_end`, `R_end` (the state where the solve ended), `alpha_stop` (alpha of a
    steady-state stop, nan if none), `v` (n, K) for a learned readout (`Scenario(eta_v=...)`, else
    None). Entries after a divergence are `inf`. Under vmap every field gains a leading axis.
    Properties: `result`, `diverged`, `alpha_diverged` (nan if not diverged), `ok`.
    """

    alpha: jax.Array
    Q: jax.Array
    R: jax.Array
    eps_g: jax.Array
    status: jax.Array
    alpha_end: jax.Array
    num_steps: jax.Array
    alpha_left_series: jax.Array
    Q_end: jax.Array
    R_end: jax.Array
    alpha_stop: jax.Array
    v: jax.Array | None = None

    @property
    def result(self) -> RESULTS:
        return result_of(self.status)

    @property
    def diverged(self):
        return self.status == DIVERGED

    @property
    def alpha_diverged(self):
        return jnp.where(self.diverged, self.alpha_end, jnp.nan)

    @property
    def ok(self):
        return (self.status == SUCCESSFUL) | (self.status == DIVERGED)

    @property
    def order_params(self) -> OrderParams:
        return OrderParams(Q=self.Q, R=self.R, v=self.v)

    def message(self) -> str:
        s = np.asarray(self.status)
        msgs = [getattr(RESULTS, n) for n in STATUS_NAMES]
        if s.ndim:
            return "; ".join(f"{k}: {RESULTS[msgs[k]]}" for k in np.unique(s))
        msg = RESULTS[msgs[int(s)]]
        if int(s) == DIVERGED:
            msg += f" at alpha = {float(self.alpha_end):.6g}"
        return msg


def blowup_cond(scale):
    """Event condition: a `Q_ii` above `scale` or a non-finite value."""

    def cond(t, y, args, **kwargs):
        q = jnp.diagonal(y.Q, axis1=-2, axis2=-1)
        bad = ~jnp.all(jnp.isfinite(y.Q)) | ~jnp.all(jnp.isfinite(y.R))
        if y.v is not None:
            bad = bad | ~jnp.all(jnp.isfinite(y.v))
        return bad | (jnp.max(jnp.abs(q)) > scale)

    return cond


def steady_cond(ode: OrderParamODE, stop_tol: float):
    """Event condition: `max |d(Q, R)/d alpha| < stop_tol * eta`."""

    def cond(t, y, args, **kwargs):
        f = ode.vf(t, y, args)
        fmax = jnp.maximum(jnp.max(jnp.abs(f.Q)), jnp.max(jnp.abs(f.R)))
        return fmax < stop_tol * ode.rate(t)

    return cond


def solve(ode: OrderParamODE, op0: OrderParams, alphas, alpha0, *, solver, stepsize_controller,
          dt0, max_steps: int, blowup: float, adjoint=None, stop_tol: float | None = None
          ) -> Trajectory:
    """Solve `ode` from `op0` at `alpha0`, record at `alphas` (traceable; no validation here).

    Divergence (`Q_ii > blowup * max(1, max|T|)` or a non-finite value) is a diffrax event: the
    solve stops with status `diverged`. With `stop_tol`, the solve also stops once
    `max|d(Q,R)/d alpha| < stop_tol * eta` (status successful) and the recorded times beyond get the
    final state.
    """
    scenario = ode.scenario
    scale = blowup * jnp.maximum(1.0, jnp.max(jnp.abs(scenario.T)))
    conds = [blowup_cond(scale)]
    if stop_tol:
        conds.append(steady_cond(ode, stop_tol))
    sol = diffrax.diffeqsolve(
        ode,
        solver,
        t0=alpha0,
        t1=alphas[-1],
        dt0=dt0,
        y0=op0,
        saveat=diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=alphas), diffrax.SubSaveAt(t1=True)]),
        stepsize_controller=stepsize_controller,
        max_steps=max_steps,
        event=diffrax.Event(conds if stop_tol else conds[0]),
        adjoint=diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint,
        throw=False,
    )
    ys, yend = sol.ys
    yend = jax.tree.map(lambda x: x[-1], yend)
    alpha_end = sol.ts[1][-1]
    res = sol.result
    event = res == diffrax.RESULTS.event_occurred
    if stop_tol:
        blew, steady = sol.event_mask
        diverged = event & blew
        stopped = event & steady & ~blew
    else:
        diverged = event
        stopped = jnp.asarray(False)
    status = jnp.where(
        (res == diffrax.RESULTS.successful) | stopped,
        SUCCESSFUL,
        jnp.where(
            diverged,
            DIVERGED,
            jnp.where(res == diffrax.RESULTS.max_steps_reached, MAX_STEPS_REACHED, FAILED),
        ),
    )
    if stop_tol:  # after a steady-state stop, the recorded times beyond it get the final state
        fill = stopped & (alphas > alpha_end)
        Q = jnp.where(fill[:, None, None], yend.Q, ys.Q)
        R = jnp.where(fill[:, None, None], yend.R, ys.R)
        v = None if ys.v is None else jnp.where(fill[:, None], yend.v, ys.v)
    else:
        Q, R, v = ys.Q, ys.R, ys.v
    reached = jnp.all(jnp.isfinite(Q), axis=(-1, -2)) & jnp.all(jnp.isfinite(R), axis=(-1, -2))
    if v is not None:  # learned readout
        reached = reached & jnp.all(jnp.isfinite(v), axis=-1)
    safe = OrderParams(
        Q=jnp.where(reached[:, None, None], Q, jnp.eye(scenario.K)),
        R=jnp.where(reached[:, None, None], R, 0.0),
        v=None if v is None else jnp.where(reached[:, None], v, 0.0),
    )
    eg = jnp.where(reached, eps_g(scenario, safe), jnp.inf)
    if ode.i4.method == "hermite" and ode.eta2:
        inside = ode.in_series_region(safe) | ~reached
        left = jnp.where(jnp.all(inside), jnp.nan, alphas[jnp.argmin(inside)])
    else:
        left = jnp.asarray(jnp.nan, alphas.dtype)
    return Trajectory(
        alpha=alphas, Q=Q, R=R, eps_g=eg, status=status, alpha_end=alpha_end,
        num_steps=sol.stats["num_steps"], alpha_left_series=left, Q_end=yend.Q, R_end=yend.R,
        alpha_stop=jnp.where(stopped, alpha_end, jnp.nan), v=v,
    )


class SimResult(eqx.Module):
    """Recorded order parameters of SGD simulations.

    Fields: `alpha` (n,) the recording times (`steps / N`, the requested alphas rounded to whole
    steps), `steps` (n,) int, `Q` (S, n, K, K), `R` (S, n, K, M), `eps_g` (S, n) (analytic
    `jaxdyn.eps_g` of the measured overlaps, noise-free, float64 if enabled), `eps_test` (S, n) or
    None (mean of (sigma - tau)^2 / 2 over `n_test` fresh noise-free inputs at each record),
    `seeds` (S,), `eta`, `N`, and `v` (S, n, K), the readout, when it learns (else None). With a 1-D `eta` every array field gains a leading eta axis:
    `Q` is (n_eta, S, n, K, K).
    Helpers: `order_params`, `mean(field)`, `std(field)` (over seeds).
    """

    alpha: jax.Array
    steps: jax.Array
    Q: jax.Array
    R: jax.Array
    eps_g: jax.Array
    eps_test: jax.Array | None
    seeds: jax.Array
    eta: jax.Array
    N: int = eqx.field(static=True)
    v: jax.Array | None = None

    @property
    def order_params(self) -> OrderParams:
        return OrderParams(Q=self.Q, R=self.R, v=self.v)

    def _seed_axis(self):
        return 1 if np.ndim(self.eta) == 1 else 0

    def mean(self, field: str = "eps_g"):
        return jnp.mean(getattr(self, field), axis=self._seed_axis())

    def std(self, field: str = "eps_g"):
        x = getattr(self, field)
        ax = self._seed_axis()
        return jnp.std(x, axis=ax, ddof=1 if x.shape[ax] > 1 else 0)
