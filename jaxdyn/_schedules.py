"""Learning-rate schedules eta(alpha) as pytrees (equinox Modules), for the ODE and for SGD.

A schedule is called with a time `alpha` (examples / N) and returns eta(alpha) > 0. Every schedule
keeps its trainable parameters in the field `theta` (what `jaxdyn.optimize_schedule` optimises) and
maps them to eta through a constraining transform, so that eta > 0, and eta < eta_max when an
upper bound is given, hold by construction for any theta:

    eta = exp(theta)                      (eta_max=None)
    eta = eta_max * sigmoid(theta)        (eta_max given)

Discontinuous schedules declare their jumps (`schedule.jumps()`); `jaxdyn.integrate` hands them to
the step-size controller (`diffrax.ClipStepSizeController(jump_ts=...)`), so that no solver step
straddles a jump. Without that, an adaptive solver only crawls over the discontinuity and the
derivative with respect to a switching time is silently zero (diffrax issue #363, "Zero gradient
when using jnp.piecewise inside an ODE"); with the jumps declared, the step end points move with
the switching times and their gradient is correct (tests/test_schedules.py shows both).
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def _is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def _to_eta(theta, eta_max):
    if eta_max is None:
        return jnp.exp(theta)
    return eta_max * jax.nn.sigmoid(theta)


def _from_eta(eta, eta_max, what="eta"):
    e = jnp.asarray(eta, dtype=float)
    if not _is_tracer(e):
        a = np.asarray(e)
        if not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise ValueError(f"{what} must be finite and > 0, got {a}")
        if eta_max is not None and np.any(a >= eta_max):
            raise ValueError(f"{what} must be < eta_max = {eta_max}, got max {a.max():.6g}; "
                             "raise eta_max or lower the values")
    if eta_max is None:
        return jnp.log(e)
    x = e / eta_max
    return jnp.log(x) - jnp.log1p(-x)


def _check_eta_max(eta_max):
    if eta_max is None:
        return None
    if _is_tracer(eta_max):
        raise ValueError("eta_max is a structural bound (a Python float), not a traced value")
    m = float(eta_max)
    if not (np.isfinite(m) and m > 0):
        raise ValueError(f"eta_max must be a finite number > 0 (or None), got {eta_max!r}")
    return m


class AbstractSchedule(eqx.Module):
    """Base class of learning-rate schedules: `schedule(alpha) -> eta` (> 0), trainable `theta`."""

    theta: eqx.AbstractVar[jax.Array]

    @abc.abstractmethod
    def __call__(self, alpha):
        """eta at time(s) alpha (broadcasts over an array of times)."""

    def jumps(self):
        """Times at which eta jumps (1-D array, increasing), or None for a continuous schedule."""
        return None


class Constant(AbstractSchedule):
    """A constant learning rate as a schedule (`theta` the log of eta, or its logit under eta_max).

    Example:
        >>> jaxdyn.Constant(0.5)(jnp.array([0.0, 10.0]))
    """

    theta: jax.Array
    eta_max: float | None = eqx.field(static=True)

    def __init__(self, eta, *, eta_max=None):
        self.eta_max = _check_eta_max(eta_max)
        self.theta = _from_eta(eta, self.eta_max)
        if self.theta.ndim != 0:
            raise ValueError("Constant takes a scalar eta (vmap over Constant for several)")

    @property
    def eta(self):
        return _to_eta(self.theta, self.eta_max)

    def __call__(self, alpha):
        return jnp.broadcast_to(self.eta, jnp.shape(alpha))


class PiecewiseConstant(AbstractSchedule):
    """eta(alpha) = eta[j] for jump_ts[j-1] <= alpha < jump_ts[j] (n values, n - 1 jumps).

    **Arguments:**
    - `eta`: the n piece values (> 0, and < `eta_max` if given).
    - `jump_ts`: the n - 1 switching times (strictly increasing). They are declared to the ODE
      solver as jumps, so gradients with respect to the values *and* to the switching times are
      correct (see the module docstring); `optimize_schedule` optimises the values only.
    - `eta_max`: optional upper bound, built into the parametrisation.

    `PiecewiseConstant.on_grid(eta, edges)` takes the n + 1 piece edges instead (the outer two
    only document the intended range). The stored trainable field is `theta` (log or logit of eta);
    `.eta` gives the values.

    Example:
        >>> s = jaxdyn.PiecewiseConstant(jnp.array([2.0, 1.0, 0.5]), jnp.array([10.0, 50.0]))
        >>> s(jnp.array([0.0, 10.0, 60.0]))   # [2, 1, 0.5]
    """

    theta: jax.Array
    jump_ts: jax.Array
    eta_max: float | None = eqx.field(static=True)

    def __init__(self, eta, jump_ts, *, eta_max=None):
        self.eta_max = _check_eta_max(eta_max)
        self.theta = _from_eta(eta, self.eta_max)
        self.jump_ts = jnp.asarray(jump_ts, dtype=float)
        if self.theta.ndim != 1 or self.jump_ts.ndim != 1:
            raise ValueError("eta and jump_ts must be 1-D arrays")
        if self.jump_ts.shape[0] != self.theta.shape[0] - 1:
            raise ValueError(f"{self.theta.shape[0]} pieces need {self.theta.shape[0] - 1} jump_ts, "
                             f"got {self.jump_ts.shape[0]}")
        if not _is_tracer(self.jump_ts):
            j = np.asarray(self.jump_ts)
            if not np.all(np.isfinite(j)) or np.any(np.diff(j) <= 0):
                raise ValueError(f"jump_ts must be finite and strictly increasing, got {j}")

    @classmethod
    def on_grid(cls, eta, edges, *, eta_max=None):
        """Pieces between consecutive `edges` (n + 1 increasing times for n values)."""
        edges = jnp.asarray(edges, dtype=float)
        eta = jnp.broadcast_to(jnp.asarray(eta, dtype=float), (edges.shape[0] - 1,))
        return cls(eta, edges[1:-1], eta_max=eta_max)

    @property
    def eta(self):
        return _to_eta(self.theta, self.eta_max)

    def __call__(self, alpha):
        idx = jnp.searchsorted(self.jump_ts, jnp.asarray(alpha, self.jump_ts.dtype), side="right")
        return self.eta[idx]

    def jumps(self):
        return self.jump_ts


class Chebyshev(AbstractSchedule):
    """A smooth positive schedule: a Chebyshev series in time for log eta (or for the logit of
    eta / eta_max when `eta_max` is given): `eta = exp(f)` or `eta_max sigmoid(f)`, with
    `f(alpha) = sum_k theta_k T_k(x)`, `x` mapping `alpha_range` onto [-1, 1] linearly
    (`scale="linear"`) or in `log(1 + alpha)` (`scale="log"`, resolves early times); outside the
    range the end values continue.

    `Chebyshev.constant(eta, n, alpha_range=...)` starts from a constant schedule with n terms.

    Example:
        >>> s = jaxdyn.Chebyshev.constant(0.5, 6, alpha_range=(0.0, 100.0), eta_max=2.0)
        >>> s(jnp.array([0.0, 100.0]))   # [0.5, 0.5]
    """

    theta: jax.Array
    alpha_range: tuple = eqx.field(static=True)
    eta_max: float | None = eqx.field(static=True)
    scale: str = eqx.field(static=True)

    def __init__(self, theta, *, alpha_range, eta_max=None, scale="linear"):
        self.theta = jnp.asarray(theta, dtype=float)
        if self.theta.ndim != 1 or self.theta.shape[0] < 1:
            raise ValueError("theta (the Chebyshev coefficients) must be a non-empty 1-D array")
        a0, a1 = (float(a) for a in alpha_range)
        if not (np.isfinite(a0) and np.isfinite(a1) and a1 > a0 and a0 >= 0):
            raise ValueError(f"alpha_range must be (a0, a1) with 0 <= a0 < a1, got {alpha_range}")
        if scale not in ("linear", "log"):
            raise ValueError(f"scale must be 'linear' or 'log', got {scale!r}")
        self.alpha_range = (a0, a1)
        self.eta_max = _check_eta_max(eta_max)
        self.scale = scale

    @classmethod
    def constant(cls, eta, n, *, alpha_range, eta_max=None, scale="linear"):
        th0 = _from_eta(eta, _check_eta_max(eta_max))
        return cls(jnp.zeros(int(n)).at[0].set(th0), alpha_range=alpha_range, eta_max=eta_max,
                   scale=scale)

    def _x(self, alpha):
        a0, a1 = self.alpha_range
        alpha = jnp.asarray(alpha, dtype=self.theta.dtype)
        if self.scale == "log":
            u, u0, u1 = jnp.log1p(alpha), np.log1p(a0), np.log1p(a1)
        else:
            u, u0, u1 = alpha, a0, a1
        return jnp.clip(2 * (u - u0) / (u1 - u0) - 1, -1.0, 1.0)

    def __call__(self, alpha):
        x = self._x(alpha)
        # Clenshaw recurrence (stable, differentiable)
        b1 = jnp.zeros_like(x)
        b2 = jnp.zeros_like(x)
        for c in self.theta[:0:-1]:
            b1, b2 = 2 * x * b1 - b2 + c, b1
        f = x * b1 - b2 + self.theta[0]
        return _to_eta(f, self.eta_max)


class FunctionSchedule(AbstractSchedule):
    """A user callable as a schedule: `eta(alpha) = fn(alpha, theta)` (or `fn(alpha)` when `theta`
    is None), with optional declared `jump_ts`. `fn` must return a positive value; this is checked
    on concrete inputs (`jaxdyn.integrate`, `jaxdyn.simulate`), not enforced by a transform.

    Example:
        >>> s = jaxdyn.FunctionSchedule(lambda a, th: th[0] / (1 + a / th[1]), jnp.array([1.0, 10.0]))
        >>> s(10.0)   # 0.5
    """

    fn: Callable = eqx.field(static=True)
    theta: jax.Array | None
    jump_ts: jax.Array | None

    def __init__(self, fn, theta=None, *, jump_ts=None):
        if not callable(fn):
            raise ValueError(f"fn must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.theta = None if theta is None else jnp.asarray(theta, dtype=float)
        self.jump_ts = None if jump_ts is None else jnp.asarray(jump_ts, dtype=float).reshape(-1)

    def __call__(self, alpha):
        alpha = jnp.asarray(alpha, dtype=float)
        out = self.fn(alpha) if self.theta is None else self.fn(alpha, self.theta)
        return jnp.broadcast_to(jnp.asarray(out, dtype=float), alpha.shape)

    def jumps(self):
        return self.jump_ts


def is_schedule(x) -> bool:
    """True for a `jaxdyn` learning-rate schedule (an `AbstractSchedule`)."""
    return isinstance(x, AbstractSchedule)


def check_schedule(schedule, alpha0, alpha1, *, n_grid: int = 1025, jumps_inside: bool = True) -> None:
    """Raise `ValueError` unless `schedule` is finite and > 0 on [alpha0, alpha1] (checked on a grid
    and on both sides of every jump) and its jumps are increasing and, with `jumps_inside` (the
    objectives: a piece outside the horizon would be a dead parameter), lie strictly inside
    (alpha0, alpha1). `integrate`/`simulate` pass `jumps_inside=False`: integrating part of a
    schedule is legitimate. Skipped when the schedule or the times are traced."""
    if not isinstance(schedule, AbstractSchedule):
        raise ValueError(f"expected a jaxdyn schedule (AbstractSchedule), got {type(schedule).__name__}")
    leaves = jax.tree_util.tree_leaves(schedule) + [alpha0, alpha1]
    if any(_is_tracer(x) for x in leaves):
        return
    a0, a1 = float(alpha0), float(alpha1)
    pts = [np.linspace(a0, a1, n_grid)]
    jumps = schedule.jumps()
    if jumps is not None:
        j = np.asarray(jumps, dtype=float).reshape(-1)
        if not np.all(np.isfinite(j)) or np.any(np.diff(j) <= 0):
            raise ValueError(f"the schedule's jump_ts must be finite and strictly increasing, got {j}")
        out = (j <= a0) | (j >= a1)
        if jumps_inside and np.any(out):
            raise ValueError(
                f"the schedule's jump_ts {j[out]} lie outside the integration range ({a0}, {a1}); "
                "build the schedule on the range you integrate over (or extend `alphas`)")
        j = j[~out]
        pts += [np.nextafter(j, -np.inf), np.nextafter(j, np.inf)]
    t = np.concatenate(pts)
    eta = np.asarray(schedule(jnp.asarray(t)))
    bad = ~np.isfinite(eta) | (eta <= 0)
    if np.any(bad):
        k = int(np.argmax(bad))
        raise ValueError(f"the schedule must give a finite eta > 0; at alpha = {t[k]:.6g} it gives "
                         f"{eta[k]!r}")


def declare_jumps(controller, schedule):
    """The step-size controller with the schedule's jumps declared (`ClipStepSizeController`).

    A constant step size cannot honour jumps: a `ValueError` says to use an adaptive controller or
    `diffrax.StepTo` with the jump times among its steps."""
    jumps = None if schedule is None else schedule.jumps()
    if jumps is None:
        return controller
    jumps = jnp.asarray(jumps, dtype=float)
    if isinstance(controller, diffrax.ClipStepSizeController):
        old = controller.jump_ts
        new = jumps if old is None else jnp.sort(jnp.concatenate([jnp.asarray(old, float), jumps]))
        return eqx.tree_at(lambda c: c.jump_ts, controller, new, is_leaf=lambda x: x is None)
    if isinstance(controller, diffrax.AbstractAdaptiveStepSizeController):
        return diffrax.ClipStepSizeController(controller, jump_ts=jumps)
    if isinstance(controller, diffrax.StepTo):
        return controller  # the user chose the steps; jumps should be among them
    raise ValueError(
        f"a schedule with jumps needs an adaptive step-size controller (so no step straddles a "
        f"jump), got {type(controller).__name__}; use diffrax.PIDController or diffrax.StepTo with "
        "the jump times among its steps")
