"""Order-parameter ODEs of online SGD (docs/conventions.md), for general K, M, T, activations and
second-layer weights, with the `eta^2` term.

Write all K + M units as one list (students 0..K-1, teachers K..K+M-1) with output weights
`u = (-v, w)`, so that `tau - sigma = sum_a u_a g_a(z_a)`. Then

    <delta_i z_b>       = v_i sum_a u_a I3(i, b, a)                      (I3 = E[g'(z_i) z_b g_a(z_a)])
    <delta_i delta_k>   = v_i v_k sum_{a,b} u_a u_b I4(i, k, a, b)
                          + noise^2 v_i v_k J2(i, k)                     (J2 = E[g'(z_i) g'(z_k)])
    dR_in/dalpha = eta <delta_i y_n> - eta lambda R_in
    dQ_ik/dalpha = eta <delta_i x_k + delta_k x_i> + (eta^2 / B) <delta_i delta_k> - 2 eta lambda Q_ik

with lambda the weight decay and B the batch size. `eta2=False` drops the eta^2 term (the
"small learning rate" dynamics of papers 000 and 003). The index sets of all terms are built once
per (K, M) with NumPy; each average is one batched call over gathered sub-covariances.
For ReLU the I4 terms are grouped by which of their four units coincide (i == k, a == i, ...), and
each group is evaluated as a moment of the distinct units only (exact, no singular 4x4 matrix).
"""

from __future__ import annotations

import functools
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._activations import Erf, ReLU
from ._averages import (
    erf_i3_entries,
    gauss_i2,
    gauss_i3,
    gauss_i4,
    gauss_j2,
    hermite_in_region,
    relu_i4_terms,
    relu_moment_small,
    relu_theta_moment,
)
from ._checks import check_order
from ._model import OrderParams, Scenario, check_order_params, covariance, gather as gather, readout
from ._readout import readout_terms
from ._schedules import is_schedule


@functools.lru_cache(maxsize=None)
def _i3_index(K: int, M: int):
    # (i, b, a) for every student i and every unit b, a
    L = K + M
    i, b, a = np.meshgrid(np.arange(K), np.arange(L), np.arange(L), indexing="ij")
    return np.stack([i, b, a], axis=-1)  # (K, L, L, 3)


@functools.lru_cache(maxsize=None)
def i4_index(K: int, M: int):
    """Terms (i, k, a, b) with i <= k, a <= b, their pair slot and multiplicity."""
    L = K + M
    ik = [(i, k) for i in range(K) for k in range(i, K)]
    ab = [(a, b) for a in range(L) for b in range(a, L)]
    idx = np.array([[i, k, a, b] for (i, k) in ik for (a, b) in ab], dtype=np.int64)
    slot = np.repeat(np.arange(len(ik)), len(ab))
    mult = np.array([1.0 if a == b else 2.0 for _ in ik for (a, b) in ab])
    return np.array(ik), idx, slot, mult


# public within the package (other modules import these names, never the underscored ones)


@functools.lru_cache(maxsize=None)
def _relu_groups(idx4_bytes: bytes, shape: tuple):
    """Group I4 index quadruples by their coincidence pattern (static).

    Returns a list of (term positions, distinct-unit index array (n_terms, n), p, q) such that
    I4(i, k, a, b) = E[z_a z_b theta over the distinct units] with a, b at positions p, q.
    """
    idx4 = np.frombuffer(idx4_bytes, dtype=np.int64).reshape(shape)
    groups: dict[tuple, list] = {}
    for t, quad in enumerate(idx4):
        distinct = list(dict.fromkeys(quad.tolist()))
        # canonical order of the pattern: positions of each of the 4 slots in `distinct`
        pattern = tuple(distinct.index(x) for x in quad.tolist())
        groups.setdefault(pattern, []).append((t, distinct))
    out = []
    for pattern, items in groups.items():
        pos = np.array([t for t, _ in items])
        units = np.array([d for _, d in items])
        out.append((pos, units, pattern[2], pattern[3]))
    return out


def _i4_values(scenario: Scenario, C, idx4, a_is_teacher, b_is_teacher, *, i4: str, order: int):
    """I4 over all index quadruples, grouped by activations (student/teacher at slots 3, 4)."""
    g, gs = scenario.g, scenario.g_teacher
    n = idx4.shape[0]
    if type(g) is ReLU and type(gs) is ReLU:  # one call: 4-unit sets shared across the groups
        return _relu_i4_grouped(C, idx4, i4=i4, order=order)
    vals = jnp.zeros(C.shape[:-2] + (n,), C.dtype)
    for ta in (False, True):
        for tb in (False, True):
            sel = np.nonzero((a_is_teacher == ta) & (b_is_teacher == tb))[0]
            if sel.size == 0:
                continue
            acts = (g, g, gs if ta else g, gs if tb else g)
            sub = idx4[sel]
            if all(type(x) is ReLU for x in acts):
                v = _relu_i4_grouped(C, sub, i4=i4, order=order)
            else:
                v = gauss_i4(gather(C, sub), acts, method=i4, order=order)
            vals = vals.at[..., sel].set(v)
    return vals


def _relu_i4_grouped(C, idx4, *, i4: str, order: int):
    idx4 = np.ascontiguousarray(idx4, dtype=np.int64)
    if i4 != "hermite":  # each set of distinct units once (shared orthant probabilities)
        return relu_i4_terms(C, idx4)
    out = jnp.zeros(C.shape[:-2] + (idx4.shape[0],), C.dtype)
    for pos, units, p, q in _relu_groups(idx4.tobytes(), idx4.shape):
        cov = gather(C, units)
        if i4 == "hermite" and units.shape[1] == 4:
            v = gauss_i4(cov, ReLU(), method="hermite", order=order)
        elif units.shape[1] <= 2:
            v = relu_moment_small(cov, int(p), int(q))
        else:
            v = relu_theta_moment(cov, int(p), int(q))
        out = out.at[..., pos].set(v)
    return out


def _erf_i3_broadcast(C, K):
    """Erf I3(i, b, a) for all students i and units b, a by broadcasting (no gathers)."""
    d = jnp.diagonal(C, axis1=-2, axis2=-1)
    return erf_i3_entries(d[..., :K, None, None], C[..., :K, :, None], C[..., :K, None, :],
                          C[..., None, :, :], d[..., None, None, :])


def _erf_dd(C, K, uw):
    """sum_{a<=b} mult u_a u_b I4(i, k, a, b) for erf, for every pair i <= k (vectorised).

    The erf I4 (docs/conventions.md, Gaussian averages) needs L1 (depends on i, k, a only) and L2 (i, k, b) once per
    triple; only asin(L0 / sqrt(L1 L2)) is evaluated per quadruple, as an arctan (cheaper on CPU).
    """
    L = C.shape[-1]
    ik, idx4, slot, mult = i4_index(K, L - K)
    ii, kk = ik[:, 0], ik[:, 1]
    ab = np.array([(a, b) for a in range(L) for b in range(a, L)])
    aa, bb = ab[:, 0], ab[:, 1]
    d = jnp.diagonal(C, axis1=-2, axis2=-1)
    c11, c22, c12 = d[..., ii, None], d[..., kk, None], C[..., ii, kk][..., None]  # (..., P, 1)
    Xi, Xk = C[..., ii, :], C[..., kk, :]  # (..., P, L)
    L4 = (1 + c11) * (1 + c22) - c12**2
    # L1 as a function of (pair, unit a); L2 is the same function at unit b
    Lf = L4 * (1 + d[..., None, :]) - Xk**2 * (1 + c11) - Xi**2 * (1 + c22) + 2 * c12 * Xi * Xk
    c13, c14, c23, c24 = Xi[..., aa], Xi[..., bb], Xk[..., aa], Xk[..., bb]
    c34 = C[..., aa, bb][..., None, :]
    L0 = L4 * c34 - c23 * c24 * (1 + c11) - c13 * c14 * (1 + c22) + c12 * (c13 * c24 + c14 * c23)
    L12 = Lf[..., aa] * Lf[..., bb]
    v = (4 / np.pi**2) * jnp.arctan(L0 / jnp.sqrt(L12 - L0**2)) / jnp.sqrt(L4)
    w = jnp.asarray(np.where(aa == bb, 1.0, 2.0)) * uw[aa] * uw[bb]
    return jnp.einsum("...pn,n->...p", v, w)


def _i3_field(scenario: Scenario, C):
    """F[i, b] = sum_a u_a I3(i, b, a), so that <delta_i z_b> = v_i F[i, b]."""
    K, M = scenario.K, scenario.M
    g, gs = scenario.g, scenario.g_teacher
    idx = _i3_index(K, M)
    u = jnp.concatenate([-scenario.v, scenario.w])
    if type(g) is Erf and type(gs) is Erf:
        vals = _erf_i3_broadcast(C, K)
    elif eqx.tree_equal(g, gs) is True:
        vals = gauss_i3(gather(C, idx), g)
    else:
        vs = gauss_i3(gather(C, idx[:, :, :K]), (g, g))
        vt = gauss_i3(gather(C, idx[:, :, K:]), (g, gs))
        vals = jnp.concatenate([vs, vt], axis=-1)
    return jnp.einsum("...iba,a->...ib", vals, u)


class ExactI4(eqx.Module):
    """The `eta^2` averages by closed forms (erf, linear) and the exact ReLU reduction."""

    method = "exact"
    order = 10  # unused; kept so every I4 option has the same two attributes


class HermiteI4(eqx.Module):
    """The `eta^2` averages by paper 001's Hermite series truncated at `order` (>= 1).

    Example:
        >>> jaxdyn.HermiteI4(10).order
    """

    order: int = eqx.field(static=True)
    method = "hermite"

    def __init__(self, order: int = 10):
        self.order = check_order(order)


def as_i4(i4="exact", order: int = 10):
    """An I4 option from the old spellings `i4="exact" | "hermite"` (with `order`), or as given."""
    if isinstance(i4, (ExactI4, HermiteI4)):
        return i4
    if i4 == "exact":
        return ExactI4()
    if i4 == "hermite":
        return HermiteI4(order)
    raise ValueError(f"i4 must be 'exact' or 'hermite' (or jaxdyn.ExactI4() / jaxdyn.HermiteI4(order)), got {i4!r}")


@eqx.filter_jit
def traced_field(ode, y, eta):
    # `ode.field(y, eta)` under one jit. diffrax traces the right-hand side several times per
    # solve (initial step size, the step, the event, dense output) and the fixed-point solvers
    # trace it again; inside this jit every trace after the first is a cache hit, which matters
    # for the large ReLU exact-I4 graph (about 0.5 s per trace at K = M = 2). An eager call
    # (`vector_field`, `flat_field`) runs one compiled program instead of the field's thousands
    # of operations one by one (each compiled on first use).
    return ode.field(y, eta)


class OrderParamODE(diffrax.AbstractTerm):
    """The order-parameter ODE of online SGD as one value: scenario, learning rate and options.

    A diffrax term (`diffrax.diffeqsolve(ode, solver, ...)` with `y` an `OrderParams`), a vector
    field `ode.vf(t, y, args)`, and a root-finding function `ode.root_fn(y, args)` for optimistix.
    This is the only place where the learning rate enters the field: `rate(alpha)` gives eta at
    time alpha (a constant here), `field(y, eta)` is the physics at a given eta.

    **Arguments:**
    - `scenario`: the `jaxdyn.Scenario` (K, M, T, activations, v, w, noise, weight decay, B).
    - `eta`: learning rate (scalar array; may be traced), or a schedule eta(alpha)
      (`jaxdyn.PiecewiseConstant`, `jaxdyn.Chebyshev`, ...). `None`: pass it per call to `field`.
    - `eta2`: include the `eta^2 <delta_i delta_k>` term (False: small-learning-rate dynamics).
    - `i4`: `jaxdyn.ExactI4()` (default) or `jaxdyn.HermiteI4(order)` (paper 001's series);
      the strings `"exact"`/`"hermite"` are accepted (with `order=`).

    Time is alpha = steps / N; see `jaxdyn.Scenario` for the noise, weight-decay and batch terms.

    Example:
        >>> sc = jaxdyn.Scenario(K=1, M=1)
        >>> ode = jaxdyn.OrderParamODE(sc, eta=0.5)
        >>> ode.vf(0.0, jaxdyn.OrderParams(Q=[[1.0]], R=[[1.0]]), None).R   # perfect learning: 0
    """

    scenario: Scenario
    eta: Any
    eta2: bool = eqx.field(static=True)
    i4: ExactI4 | HermiteI4

    def __init__(self, scenario: Scenario, *, eta=None, eta2: bool = True, i4=ExactI4(),
                 order: int = 10):
        self.scenario = scenario
        self.eta = None if eta is None else eta if is_schedule(eta) else jnp.asarray(eta)
        self.eta2 = bool(eta2)
        self.i4 = as_i4(i4, order)

    def rate(self, t):
        """The learning rate at time `t` (alpha): a constant, or a schedule evaluated at `t`."""
        if self.eta is None:
            raise ValueError("this OrderParamODE has no eta: build it with eta=..., or call field(y, eta)")
        if is_schedule(self.eta):
            if t is None:
                raise ValueError("a time-dependent eta (schedule) has no fixed points: pass a constant eta")
            return self.eta(t)
        return self.eta

    def vf(self, t, y, args):
        return traced_field(self, y, self.rate(t))

    def contr(self, t0, t1, **kwargs):
        return t1 - t0

    def prod(self, vf, control):
        return jax.tree.map(lambda v: control * v, vf)

    def root_fn(self, y, args):
        """`f(y)` at the ODE's eta, with the signature of an optimistix root-finding function."""
        return self.field(y, self.rate(None))

    def in_series_region(self, ops: OrderParams):
        """Per state: do all I4 arguments with four distinct units lie inside the Hermite series'
        convergence region? (Coinciding units are reduced exactly, never by the series.)"""
        scenario = self.scenario
        _, idx4, _, _ = i4_index(scenario.K, scenario.M)
        distinct = np.array([len(set(q)) == 4 for q in idx4.tolist()])
        if not distinct.any():
            return jnp.ones(ops.Q.shape[:-2], bool)
        cov4 = gather(covariance(scenario, ops), idx4[distinct])
        return jnp.all(hermite_in_region(cov4), axis=-1)

    def field(self, y: OrderParams, eta) -> OrderParams:
        """Time derivatives `(dQ/dalpha, dR/dalpha)` (and `dv/dalpha` for a learned readout) at
        state `y` and learning rate `eta`."""
        if self.scenario.learn_v:  # second-layer learning: the extended state (Q, R, v)
            fixed = lambda sc, op, e: eqx.tree_at(lambda o: o.scenario, self, sc).fixed_readout_field(op, e)
            return readout_terms(self.scenario, y, eta, fixed)
        return self.fixed_readout_field(y, eta)

    def fixed_readout_field(self, y: OrderParams, eta) -> OrderParams:
        """`(dQ/dalpha, dR/dalpha)` with the readout fixed at `scenario.v`."""
        scenario = self.scenario
        K, M = scenario.K, scenario.M
        eta = jnp.asarray(eta)
        i4, order = self.i4.method, self.i4.order
        C = covariance(scenario, y)
        v = scenario.v

        F = _i3_field(scenario, C)  # (..., K, K+M)
        vF = v[:, None] * F
        dR = eta * vF[..., :, K:] - eta * scenario.weight_decay * y.R
        dQ1 = vF[..., :, :K]
        dQ = eta * (dQ1 + jnp.swapaxes(dQ1, -1, -2)) - 2 * eta * scenario.weight_decay * y.Q

        if self.eta2:
            ik, idx4, slot, mult = i4_index(K, M)
            u = np.concatenate([-np.ones(K), np.ones(M)])  # signs; magnitudes from v, w below
            a_t = idx4[:, 2] >= K
            b_t = idx4[:, 3] >= K
            uw = jnp.concatenate([scenario.v, scenario.w]) * u
            if type(scenario.g) is Erf and type(scenario.g_teacher) is Erf and i4 == "exact":
                dd = _erf_dd(C, K, uw)
            else:
                vals = _i4_values(scenario, C, idx4, a_t, b_t, i4=i4, order=order)
                coef = jnp.asarray(mult) * uw[idx4[:, 2]] * uw[idx4[:, 3]]
                dd = jax.ops.segment_sum(
                    jnp.moveaxis(vals * coef, -1, 0), jnp.asarray(slot), num_segments=len(ik)
                )
                dd = jnp.moveaxis(dd, 0, -1)  # (..., n_pairs)
            ii, kk = ik[:, 0], ik[:, 1]
            pair_v = v[ii] * v[kk]
            # J2(i, i) = E[g'(x_i)^2]; for ReLU it is exactly 1/2 (the generic formula has an infinite
            # derivative at rho = 1, which would turn 0 * inf into nan when noise = 0)
            if type(scenario.g) is ReLU:
                off = np.nonzero(ii != kk)[0]
                j2 = jnp.full(C.shape[:-2] + (len(ik),), 0.5, C.dtype)
                if off.size:
                    j2 = j2.at[..., off].set(gauss_j2(gather(C, ik[off]), scenario.g))
            else:
                j2 = gauss_j2(gather(C, ik), scenario.g)
            noise_term = scenario.noise**2 * j2
            dd = pair_v * (dd + noise_term)
            DD = jnp.zeros(C.shape[:-2] + (K, K), C.dtype)
            DD = DD.at[..., ii, kk].set(dd).at[..., kk, ii].set(dd)
            dQ = dQ + eta**2 / scenario.batch_size * DD
        return OrderParams(Q=dQ, R=dR)


def as_ode(scenario, *, eta2: bool = True, i4="exact", order: int = 10) -> OrderParamODE:
    """The `OrderParamODE` of the old keyword options `(eta2, i4, order)`, built once; an
    `OrderParamODE` passed in place of the scenario is returned as it is (its own options hold, so
    the keywords must then keep their defaults)."""
    if isinstance(scenario, OrderParamODE):
        if not (eta2 is True and isinstance(i4, str) and i4 == "exact" and order == 10):
            raise ValueError("give eta2/i4/order either on the OrderParamODE or as keywords with a "
                             "Scenario, not both")
        return scenario
    return OrderParamODE(scenario, eta2=eta2, i4=as_i4(i4, order))


def vector_field(
    scenario: Scenario,
    op: OrderParams,
    eta,
    *,
    eta2: bool = True,
    i4: str = "exact",
    order: int = 10,
) -> OrderParams:
    """Time derivatives `(dQ/dalpha, dR/dalpha)` of the order parameters, as `OrderParams`
    (and `dv/dalpha` when the scenario learns its readout: see `jaxdyn.readout_field`).

    **Arguments:**
    - `scenario`: the `jaxdyn.Scenario` (K, M, T, activations, v, w, noise, weight decay, B).
    - `op`: the current `OrderParams(Q, R)` (no validation here: this is the hot path).
    - `eta`: learning rate (scalar, may be a traced array).
    - `eta2`: include the `eta^2 <delta_i delta_k>` term (True: exact online SGD at any eta;
      False: the small-learning-rate dynamics).
    - `i4`: `"exact"` (closed forms / exact ReLU reduction) or `"hermite"` (paper 001's series).
    - `order`: truncation order of the Hermite series.

    Time is alpha = steps / N; see `jaxdyn.Scenario` for the noise, weight-decay and batch terms.

    Example:
        >>> sc = jaxdyn.Scenario(K=1, M=1)
        >>> d = jaxdyn.vector_field(sc, jaxdyn.OrderParams(Q=[[1.0]], R=[[1.0]]), 0.5)
        >>> d.Q, d.R   # perfect learning is a fixed point: both zero
    """
    # one compiled program per scenario structure and shape: an eager call would otherwise run
    # (and, on first use, compile) each of the field's thousands of operations one by one
    ode = OrderParamODE(scenario, eta2=eta2, i4=as_i4(i4, order))
    return traced_field(ode, op, jnp.asarray(eta))


def eps_g(scenario: Scenario, op: OrderParams):
    """Generalisation error `eps_g = <(sigma - tau)^2> / 2` from the overlaps (noise-free).

    `eps_g = 1/2 (v^T G_QQ v - 2 v^T G_QR w + w^T G_TT w)` with `G` the matrices of pair averages
    `I2` (paper 002 eq. 28 for ReLU). Batched over leading axes of `op`.

    Example:
        >>> jaxdyn.eps_g(jaxdyn.Scenario(K=1, M=1), jaxdyn.OrderParams(Q=[[1.0]], R=[[0.0]]))
        >>> # = 1/2 - 1/(2 pi)
    """
    check_order_params(scenario, op)  # concrete inputs only: free under jit and inside solves
    return _eps_g(scenario, op)


@eqx.filter_jit  # eager calls: one compiled program instead of dozens of single operations
def _eps_g(scenario: Scenario, op: OrderParams):
    K, M = scenario.K, scenario.M
    g, gs = scenario.g, scenario.g_teacher
    C = covariance(scenario, op)
    ij = np.stack(np.meshgrid(np.arange(K), np.arange(K), indexing="ij"), -1)
    inn = np.stack(np.meshgrid(np.arange(K), K + np.arange(M), indexing="ij"), -1)
    nm = np.stack(np.meshgrid(K + np.arange(M), K + np.arange(M), indexing="ij"), -1)
    Gqq = gauss_i2(gather(C, ij), g)
    Gqr = gauss_i2(gather(C, inn), (g, gs))
    Gtt = gauss_i2(gather(C, nm), gs)
    v, w = scenario.v, scenario.w
    if scenario.learn_v:  # the readout is part of the state (batched like op)
        v = readout(scenario, op)
        return 0.5 * (
            jnp.einsum("...i,...ij,...j->...", v, Gqq, v)
            - 2 * jnp.einsum("...i,...in,n->...", v, Gqr, w)
            + jnp.einsum("n,...nm,m->...", w, Gtt, w)
        )
    return 0.5 * (
        jnp.einsum("i,...ij,j->...", v, Gqq, v)
        - 2 * jnp.einsum("i,...in,n->...", v, Gqr, w)
        + jnp.einsum("n,...nm,m->...", w, Gtt, w)
    )


def readout_field(scenario: Scenario, op: OrderParams, eta, *, eta2: bool = True,
                  i4: str = "exact", order: int = 10) -> OrderParams:
    """`(dQ/dalpha, dR/dalpha, dv/dalpha)` for a scenario that learns its readout (module doc).

    `op` must carry `v` (leading batch axes allowed, the same for Q, R, v). `jaxdyn.vector_field`
    calls this for such a scenario; the options are those of `vector_field`.

    Example:
        >>> sc = jaxdyn.Scenario(K=1, M=1, g=jaxdyn.Erf(), eta_v=0.3)
        >>> op = jaxdyn.OrderParams(Q=[[0.5]], R=[[0.5]], v=[0.8])
        >>> jaxdyn.readout_field(sc, op, 0.5).v  # 0.3 (I2(x, y) - 0.8 I2(x, x)) = 0.0040
    """
    if not scenario.learn_v:
        raise ValueError("readout_field needs a scenario that learns v (pass eta_v= to Scenario)")
    # one compiled program per scenario structure and shape: an eager call would otherwise run
    # (and, on first use, compile) each of the field's thousands of operations one by one
    ode = OrderParamODE(scenario, eta2=eta2, i4=as_i4(i4, order))
    return traced_field(ode, op, jnp.asarray(eta))
