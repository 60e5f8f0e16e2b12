"""Second-layer learning: the student's readout `v` as part of the state (issue 15).

With `Scenario(eta_v=...)` the state is `(Q, R, v)` and online SGD also moves the readout,
`v_i <- (1 - eta_v lambda_v / N) v_i + (eta_v / N) s g(x_i) (tau - sigma)`, with `s = 1` (output
`sigma = sum_i v_i g(x_i)`) or `s = 1/K` (`mean_field=True`, `sigma = (1/K) sum_i v_i g(x_i)`).
Write `u = s v` for the effective readout. In the limit N -> infinity (alpha = steps / N):

    dv_i/dalpha = eta_v s (sum_n w_n I2(x_i, y_n) - sum_k u_k I2(x_i, x_k)) - eta_v lambda_v v_i
    dR, dQ      = the fixed-readout equations (`jaxdyn.vector_field`) evaluated with v -> u(alpha)

with `I2(a, b) = E[g(a) g(b)]` (`g*` for the teacher) over the covariance C. The readout's step is
`eta_v / N`: its per-step noise is O(1/N), so there is no `eta_v^2` term, no output-noise term and
no minibatch term in `dv` (they stay in `dQ` as before: `eta^2 / B`, `eta^2 noise^2 u_i u_k J2`).
The error signal of the first layer is `delta_i = u_i g'(x_i) (tau - sigma)`.

**The reference C++ code** (`scmpp_ode.cpp --both` of Goldt, Advani, Saxe, Krzakala & Zdeborova,
NeurIPS 2019, repository sgoldt/nn2pp) uses the same model and time (`steps / N`): its `--lr` is
`eta` (first-layer step `lr / sqrt N`), its `--lr2` is `eta_v` (step `lr2 / N`), its `--sigma` is
`noise`, its teacher weights `A` are `w`. Its weight decay `wd` enters without a learning rate
(`dR -= wd R`, `dQ -= 2 wd Q`, `dv -= wd v`), jaxdyn's with one (`eta lambda`, `eta_v lambda_v`):
`weight_decay = wd / lr`, `weight_decay_v = wd / lr2`. It integrates by explicit Euler
(all increments from the state at the start of the step), which `jaxdyn.integrate(...,
solver=diffrax.Euler(), stepsize_controller=diffrax.ConstantStepSize(), dt0=dt)` repeats step for
step (tests/test_readout.py, to its 6 printed digits).

**Fixed points** (`jaxdyn.fixed_point`) use the flat coordinates of `jaxdyn.flatten_op` followed by
`v_1 .. v_K`. Learning the readout brings continuous families of fixed points: at perfect learning
every network computing the teacher's function is a fixed point, so for ReLU (positive homogeneous)
each unit can trade its norm against its readout, `(R_i, Q_ii, v_i) -> (c R_i, c^2 Q_ii, v_i / c)`
(K zero eigenvalues for K = M), and with K > M a silenced unit (`v_k = 0`) is free in its
`(R_k, Q_k.)`. Such directions appear as zero eigenvalues (`n_marginal`); `continuation` refuses to
start on such a family (it has no unique tangent) and says so.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._averages import I2
from ._model import OrderParams, Scenario, covariance, gather, readout


def readout_scale(scenario: Scenario) -> float:
    """`s` in `sigma = s sum_i v_i g(x_i)`: `1/K` under `mean_field`, else 1."""
    return 1.0 / scenario.K if scenario.mean_field else 1.0


def readout_terms(scenario: Scenario, op: OrderParams, eta, fixed_field) -> OrderParams:
    """`(dQ/dalpha, dR/dalpha, dv/dalpha)` for a scenario that learns its readout (module doc);
    `fixed_field(scenario, op, eta)` is the fixed-readout field (`jaxdyn.OrderParamODE` passes its
    own), evaluated with the current effective readout. Public entry: `jaxdyn.readout_field`."""
    if not scenario.learn_v:
        raise ValueError("readout_field needs a scenario that learns v (pass eta_v= to Scenario)")
    if op.v is None:
        raise ValueError(
            "this scenario learns its readout: the state must carry it, OrderParams(Q=, R=, v=)"
        )
    batch = op.Q.shape[:-2]
    if op.v.shape != batch + (scenario.K,):
        raise ValueError(f"v must have shape {batch + (scenario.K,)}, got {op.v.shape}")
    kw = dict(fixed_field=fixed_field)
    if not batch:
        return _field_one(scenario, op, jnp.asarray(eta), **kw)
    n = math.prod(batch)
    K, M = scenario.K, scenario.M
    flat = OrderParams(Q=op.Q.reshape((n, K, K)), R=op.R.reshape((n, K, M)), v=op.v.reshape((n, K)))
    eta = jnp.asarray(eta)
    if eta.ndim:
        e = jnp.broadcast_to(eta, batch).reshape(n)
        d = jax.vmap(lambda o, ee: _field_one(scenario, o, ee, **kw))(flat, e)
    else:
        d = jax.vmap(lambda o: _field_one(scenario, o, eta, **kw))(flat)
    return OrderParams(Q=d.Q.reshape(batch + (K, K)), R=d.R.reshape(batch + (K, M)),
                       v=d.v.reshape(batch + (K,)))


def _field_one(scenario, op, eta, *, fixed_field):
    u = readout(scenario, op)
    # the first layer sees the current effective readout u = s v
    sc_u = eqx.tree_at(lambda s: s.v, scenario, u)
    d = fixed_field(sc_u, OrderParams(Q=op.Q, R=op.R), eta)
    C = covariance(scenario, op)
    Gqq, Gqr = pair_averages(scenario, C)
    s = readout_scale(scenario)
    dv = scenario.eta_v * (s * (Gqr @ scenario.w - Gqq @ u) - scenario.weight_decay_v * op.v)
    return OrderParams(Q=d.Q, R=d.R, v=dv)


def pair_averages(scenario: Scenario, C):
    """`G_QQ[i, k] = E[g(x_i) g(x_k)]` (K x K) and `G_QR[i, n] = E[g(x_i) g*(y_n)]` (K x M)."""
    K, M = scenario.K, scenario.M
    g, gs = scenario.g, scenario.g_teacher
    ij = np.stack(np.meshgrid(np.arange(K), np.arange(K), indexing="ij"), -1)
    inn = np.stack(np.meshgrid(np.arange(K), K + np.arange(M), indexing="ij"), -1)
    return I2(gather(C, ij), g), I2(gather(C, inn), (g, gs))
