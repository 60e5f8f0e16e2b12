"""Online SGD of a student soft committee machine learning from a teacher: the finite-N simulation.

Update rule exactly as docs/conventions.md (one convention everywhere): for one example
`xi ~ N(0, I_N)`, `x = J xi / sqrt(N)`, `y = B xi / sqrt(N)`, `sigma = v . g(x)`,
`tau = w . g*(y) + noise * zeta`, `delta_i = v_i g'(x_i) (tau - sigma)`,
`J_i <- (1 - eta lambda / N) J_i + (eta / sqrt N) delta_i xi` (averaged over a minibatch of size B),
`alpha = steps / N`. Weights are stored as `J` (K, N) and `B` (M, N).
With a learned readout (`Scenario(eta_v=...)`, issue 15) the readout moves in the same step,
from the same example and the same (pre-step) error: `sigma = s v . g(x)`, `delta_i = s v_i g'(x_i)
(tau - sigma)`, `v_i <- (1 - eta_v lambda_v / N) v_i + (eta_v / N) s g(x_i) (tau - sigma)` (s = 1,
or 1/K under `mean_field`), and `v` is recorded with Q and R.

Implementation (see the style guide, section 2.8):

- The run is one `jax.jit`-compiled nested `lax.scan`: an outer scan over the requested recording
  times, an inner `fori_loop` over *chunks* of `chunk` steps, and a `lax.scan` over the steps of a
  chunk. Only `Q`, `R` (and optionally a test-set error) are recorded, never the weights.
- Random inputs are drawn per chunk (one vectorised draw of `(chunk, B, N)` numbers). With the default
  `rng="hash"`, `xi_t[b, n]` is a pure function of (seed, step t, b, n): a counter-based generator
  (two rounds of the murmur3 32-bit finaliser over a 64-bit per-step key derived from the seed's JAX
  key, then `sqrt(2) erfinv(2u - 1)` with 24-bit uniforms, i.e. Gaussian truncated at |z| < 5.3 and
  drawn in float32, cast to the working dtype). It costs ~2.5 ns per number on CPU, against ~20 ns
  for `jax.random.normal` (threefry). `rng="jax"` uses `jax.random.normal(fold_in(key, t))` per
  step instead (exact Gaussian, slower). Either way the trajectory does not depend on `chunk`,
  on the recording times, or on how many seeds are vmapped together: the same seed gives the
  same run.
- Seeds (and etas) are `vmap`ped over the whole run; all seeds take the same number of steps.

Initialisation to prescribed overlaps (`init_weights`): the (K+M) x (K+M) matrix
`C = [[Q0, R0], [R0^T, T]]` is factorised `C = L L^T` (Cholesky of the teacher-first ordering, so
the teacher depends on T alone; an eigen-factor if C is singular), an orthonormal N x (K+M) frame
`U` with uniformly random orientation is drawn per seed (QR of a Gaussian matrix, orthonormalised
twice), and `[B; J] = sqrt(N) L U^T`. Then `B B^T / N = T`, `J J^T / N = Q0`, `J B^T / N = R0` to
rounding error of the working dtype (tested).

Finite-size handling (read this before comparing with the ODE): the initial overlaps are exact,
but the first O(N) steps add O(1/sqrt N) random increments to every overlap (e.g. R_12 wanders by
~sqrt(alpha / N)). A prescribed symmetry breaking below that level (paper 000/001: R0 = 1e-3 I at
N = 1000, where 1/sqrt(N) ~ 0.03) does not survive: the fluctuations, not R0, decide when the
student leaves the symmetric plateau and which student unit specialises to which teacher unit.
jaxdyn therefore offers, and its figures show, two comparisons:

1. *nominal*: the ODE from the prescribed `op0` against the simulation mean (honest, and what
   papers usually plot; it agrees outside the plateau-escape window and disagrees in escape time).
2. *matched* (`matched_theory`): for every seed, the ODE started from that seed's measured
   overlaps at a small time `alpha_match` (default 2 / eta, after the O(1/sqrt N) kick of the first
   steps has happened), averaged over seeds like the simulation. This is the finite-size
   correction of the first steps that paper 001 refers to (Biehl, Riegler & Woehler 1996): it
   carries the realised symmetry breaking into the ODE. The remaining deviation is the genuine
   finite-N diffusion after `alpha_match`, which shrinks like 1/sqrt(N).

Student units are exchangeable (equal `v`), so a simulation may specialise student 1 to teacher 2;
`align_units` permutes the student units of each seed (by the final R) to the labelling of a
reference trajectory before averaging. The figures use it; the raw result is never relabelled.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ._checks import sim_schedule
from ._integrate import integrate
from ._model import OrderParams, Scenario, check_eta, check_order_params
from ._ode import eps_g
from ._overlap_chain import simulate_overlaps
from ._readout import readout_scale
from ._solution import SimResult as SimResult
from ._schedules import check_schedule, is_schedule


__all__ = ["SimResult", "SGDState", "SGDInit", "SGDStep", "MatchedTheory", "simulate",
           "init_weights", "make_sgd", "matched_theory",
           "align_units", "permute_units"]


# ----------------------------------------------------------------------------- random numbers


def _fmix(h):
    """murmur3 32-bit finaliser (a bijection of uint32 with full avalanche)."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _row_words(words, t):
    """Two 32-bit words for step t (uint32, any shape) from the seed's four key words."""
    t = jnp.asarray(t).astype(jnp.uint32)
    a = _fmix(_fmix(t ^ words[0]) + words[1])
    b = _fmix(_fmix(t ^ words[2]) + words[3] + jnp.uint32(0x9E3779B9))
    return a, b


def _hash_normals(words, t, shape, offset=0):
    """Standard normals of shape `(len(t),) + shape`, float32, a pure function of (words, t, index)."""
    a, b = _row_words(words, t)
    n = int(np.prod(shape))
    idx = (jnp.arange(n, dtype=jnp.uint32) + jnp.uint32(offset)).reshape(shape)
    ex = (slice(None),) + (None,) * len(shape)
    h = _fmix(_fmix(idx[None] + a[ex]) ^ b[ex])
    # 24-bit m in [0, 2^24): u = (m + 1/2) / 2^23 - 1 in (-1, 1), computed exactly in float32
    # (never +-1, so erfinv stays finite; |z| <= 5.3)
    u = ((h >> 8).astype(jnp.float32) - np.float32(8388607.5)) * np.float32(2.0**-23)
    return np.float32(math.sqrt(2.0)) * jax.scipy.special.erfinv(u)


def _draw(rng, words, key, t, B, N, noise_on, dtype):
    """Inputs `(len(t), B, N)` and teacher-noise normals `(len(t), B)` for the steps `t`."""
    if rng == "hash":
        xi = _hash_normals(words, t, (B, N)).astype(dtype)
        zeta = _hash_normals(words ^ jnp.uint32(0x5BD1E995), t, (B,)).astype(dtype) if noise_on else None
        return xi, zeta

    def one(tt):
        k = jr.fold_in(key, tt)
        k1, k2 = jr.split(k)
        return jr.normal(k1, (B, N), dtype), jr.normal(k2, (B,), dtype)

    xi, zeta = jax.vmap(one)(t)
    return xi, (zeta if noise_on else None)


# ----------------------------------------------------------------------------- initialisation


def _factor(C):
    """L with L L^T = C: Cholesky if C is positive definite, a symmetric eigen-factor otherwise."""
    L = jnp.linalg.cholesky(C)
    lam, V = jnp.linalg.eigh(C)
    Le = V * jnp.sqrt(jnp.maximum(lam, 0.0))[None, :]
    return jnp.where(jnp.all(jnp.isfinite(L)), L, Le)


def init_weights(key, scenario: Scenario, op0: OrderParams, N: int, dtype=jnp.float32):
    """Teacher `B` (M, N) and student `J` (K, N) with exactly `B B^T/N = T`, `J J^T/N = Q0`,
    `J B^T/N = R0`, in a uniformly random orientation (per `key`). For a scenario that learns its
    readout (`eta_v=...`) it returns `(B, J, v0)`, with `v0 = op0.v` (default `scenario.v`).

    Construction: `C = [[T, R0^T], [R0, Q0]]` (teacher first) `= L L^T`; `U` an orthonormal
    N x (K+M) frame from the QR decomposition of a Gaussian matrix (re-orthonormalised once more,
    "twice is enough"); `[B; J] = sqrt(N) L U^T`. Jit/vmap compatible (`N` static).

    Example:
        >>> sc = jaxdyn.Scenario(K=2, M=2, T=jnp.diag(jnp.array([1.0, 2.0])))
        >>> op0 = jaxdyn.OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=1e-3 * jnp.eye(2))
        >>> B, J = jaxdyn.init_weights(jax.random.key(0), sc, op0, N=1000)
        >>> J @ J.T / 1000   # == op0.Q to float precision
    """
    K, M = scenario.K, scenario.M
    if N < K + M:
        raise ValueError(f"N = {N} must be at least K + M = {K + M}")
    Q0 = jnp.asarray(op0.Q, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    R0 = jnp.asarray(op0.R, Q0.dtype)
    T = jnp.asarray(scenario.T, Q0.dtype)
    C = jnp.block([[T, R0.T], [R0, Q0]])
    L = _factor(C)
    # drawn in float32 whatever the dtype, so float32 and float64 runs share their orientation
    G = jr.normal(key, (N, K + M), jnp.float32).astype(dtype)
    U, _ = jnp.linalg.qr(G)
    U, _ = jnp.linalg.qr(U)
    W = (math.sqrt(N) * (U.astype(L.dtype) @ L.T)).T.astype(dtype)
    if scenario.learn_v:
        return W[:M], W[M:], initial_readout(scenario, op0, dtype)
    return W[:M], W[M:]


def initial_readout(scenario: Scenario, op0: OrderParams, dtype=jnp.float32):
    """The initial readout `v0` (K,) of a learned readout: `op0.v`, default `scenario.v`."""
    v0 = scenario.v if op0.v is None else jnp.asarray(op0.v)
    if v0.shape != (scenario.K,):
        raise ValueError(f"v0 (op0.v) must have shape (K,) = ({scenario.K},), got {v0.shape}")
    return v0.astype(dtype)


# ----------------------------------------------------------------------------- the SGD step


class SGDState(eqx.Module):
    """State of one simulation: student `J` (K, N), teacher `B` (M, N), step counter `t`, and the
    random-number words (`words`: 4 x uint32 for `rng="hash"`; `key` for `rng="jax"`)."""

    J: jax.Array
    B: jax.Array
    t: jax.Array
    words: jax.Array
    key: jax.Array
    v: jax.Array | None = None  # the student's readout, when it learns (Scenario(eta_v=...))


@dataclasses.dataclass(frozen=True)
class _Spec:
    K: int
    M: int
    N: int
    batch: int
    rng: str
    noise_on: bool


def _chunk_steps(scenario, spec: _Spec, J, Bt, t0, words, key, eta, n, mask_from=None, v_learn=None):
    """`n` (static) SGD steps from global step t0; steps with index >= mask_from are no-ops.
    With a learned readout pass its current value `v_learn`: returns `(J, v)` then, else `J`."""
    N, dtype = spec.N, J.dtype
    ts = t0 + jnp.arange(n, dtype=jnp.int32)
    xi, zeta = _draw(spec.rng, words, key, ts, spec.batch, N, spec.noise_on, dtype)
    g, gs = scenario.g, scenario.g_teacher
    v = scenario.v.astype(dtype)
    w = scenario.w.astype(dtype)
    sq = jnp.dtype(dtype).type(1.0 / math.sqrt(N))
    # the teacher is fixed: its pre-activations for the whole chunk in one matmul
    y = jnp.einsum("sbn,mn->sbm", xi, Bt) * sq
    tau = gs(y) @ w
    if spec.noise_on:
        tau = tau + scenario.noise.astype(dtype) * zeta
    if is_schedule(eta):  # eta(alpha) at the start of each step, alpha = t / N
        eta = eta(ts.astype(jnp.result_type(float)) / N)
    eta = jnp.broadcast_to(jnp.asarray(eta, dtype), (n,))
    lr = eta * sq / spec.batch
    decay = 1.0 - eta * scenario.weight_decay.astype(dtype) / N
    active = None if mask_from is None else (jnp.arange(n, dtype=jnp.int32) < mask_from)
    if scenario.learn_v:
        return _chunk_steps_readout(scenario, spec, J, v_learn, xi, tau, lr, decay, active)

    def body(J, inp):
        if active is None:
            xb, tb, lr, decay = inp
            act = None
        else:
            xb, tb, lr, decay, act = inp
        x = (xb @ J.T) * sq  # (B, K)
        sigma = g(x) @ v
        delta = v * g.deriv(x) * (tb - sigma)[:, None]  # (B, K)
        Jn = decay * J + lr * (delta.T @ xb)  # decay == 1 exactly without weight decay
        if act is not None:
            Jn = jnp.where(act, Jn, J)
        return Jn, None

    inp = (xi, tau, lr, decay) if active is None else (xi, tau, lr, decay, active)
    J, _ = jax.lax.scan(body, J, inp)
    return J


def _chunk_steps_readout(scenario, spec: _Spec, J, v, xi, tau, lr, decay, active):
    """The steps of `_chunk_steps` when the readout learns too (both from the pre-step error)."""
    N, dtype = spec.N, J.dtype
    g = scenario.g
    sq = jnp.dtype(dtype).type(1.0 / math.sqrt(N))
    s = jnp.dtype(dtype).type(readout_scale(scenario))
    eta_v = scenario.eta_v.astype(dtype)
    lr_v = eta_v * s / (N * spec.batch)
    decay_v = 1.0 - eta_v * scenario.weight_decay_v.astype(dtype) / N

    def body(carry, inp):
        J, v = carry
        xb, tb, lr, decay = inp[:4]  # per-step learning rate (a schedule may vary it)
        x = (xb @ J.T) * sq  # (B, K)
        gx = g(x)
        u = s * v
        err = tb - gx @ u
        delta = u * g.deriv(x) * err[:, None]
        Jn = decay * J + lr * (delta.T @ xb)
        vn = decay_v * v + lr_v * (err @ gx)
        if active is not None:
            Jn = jnp.where(inp[4], Jn, J)
            vn = jnp.where(inp[4], vn, v)
        return (Jn, vn), None

    inp = (xi, tau, lr, decay) if active is None else (xi, tau, lr, decay, active)
    (J, v), _ = jax.lax.scan(body, (J, v), inp)
    return J, v


def _measure(J, Bt, N):
    return J @ J.T / N, J @ Bt.T / N


class SGDInit(eqx.Module):
    """`init(seed_or_key, op0) -> SGDState`: teacher and student weights at the prescribed overlaps
    (the first half of `jaxdyn.make_sgd`'s pair).

    Example:
        >>> init, step = jaxdyn.make_sgd(jaxdyn.Scenario(K=1, M=1), eta=1.0, N=100)
        >>> init(0, jaxdyn.OrderParams(Q=[[0.5]], R=[[0.1]])).J.shape
    """

    scenario: Scenario
    N: int = eqx.field(static=True)
    dtype: Any = eqx.field(static=True)

    def __call__(self, seed, op0) -> SGDState:
        scenario = self.scenario
        check_order_params(scenario, op0)
        key = _as_key(seed)
        kinit, kstream = jr.split(key)
        W = init_weights(kinit, scenario, op0, self.N, self.dtype)
        B, J = W[0], W[1]
        return SGDState(J=J, B=B, t=jnp.zeros((), jnp.int32),
                        words=jr.bits(kstream, (4,), jnp.uint32), key=kstream,
                        v=W[2] if scenario.learn_v else None)


@eqx.filter_jit
def _sgd_steps(scenario, spec, eta, state, n):
    out = _chunk_steps(scenario, spec, state.J, state.B, state.t, state.words, state.key, eta, n,
                       v_learn=state.v)
    J, v = out if scenario.learn_v else (out, None)
    return SGDState(J=J, B=state.B, t=state.t + n, words=state.words, key=state.key, v=v)


class SGDStep(eqx.Module):
    """`step(state, n=1) -> SGDState`: n online SGD steps (n static; jit-compiled), the second
    half of `jaxdyn.make_sgd`'s pair; `step.order_params(state)` measures Q, R (also
    `jaxdyn.sim_order_params`).

    Example:
        >>> sc = jaxdyn.Scenario(K=1, M=1)
        >>> init, step = jaxdyn.make_sgd(sc, eta=1.0, N=100)
        >>> s = step(init(0, jaxdyn.OrderParams(Q=[[0.5]], R=[[0.1]])), 100)   # alpha = 1
        >>> step.order_params(s).R
    """

    scenario: Scenario
    eta: Any
    spec: Any = eqx.field(static=True)

    def __call__(self, state: SGDState, n: int = 1) -> SGDState:
        return _sgd_steps(self.scenario, self.spec, self.eta, state, int(n))

    def order_params(self, state: SGDState) -> OrderParams:
        """Measured overlaps of `state` (`jaxdyn.sim_order_params`)."""
        return sim_order_params(state)


def make_sgd(scenario: Scenario, *, eta, N: int, dtype=jnp.float32,
             rng: str = "hash") -> tuple[SGDInit, SGDStep]:
    """An `(init, step)` pair for driving the simulation yourself (same update and same random
    numbers as `simulate`, so `step` applied n times reproduces `simulate`'s run of the same seed).

    - `init(seed_or_key, op0) -> SGDState` (teacher and student at the prescribed overlaps), a
      `jaxdyn.SGDInit`
    - `step(state, n=1) -> SGDState` (n SGD steps, n static; jit-compiled), a `jaxdyn.SGDStep`
    - `step.order_params(state) -> OrderParams` (measured Q, R; also `jaxdyn.sim_order_params`)

    Example:
        >>> sc = jaxdyn.Scenario(K=2, M=2, T=jnp.diag(jnp.array([1.0, 2.0])))
        >>> op0 = jaxdyn.OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=1e-3 * jnp.eye(2))
        >>> init, step = jaxdyn.make_sgd(sc, eta=1.0, N=1000)
        >>> s = init(0, op0)
        >>> s = step(s, 1000)                        # alpha = 1
        >>> step.order_params(s).R
    """
    spec = _spec(scenario, N, rng)
    if not is_schedule(eta):
        check_eta(eta)
    return (SGDInit(scenario, int(N), jnp.dtype(dtype)),
            SGDStep(scenario, eta if is_schedule(eta) else jnp.asarray(eta), spec))


def sim_order_params(state: SGDState) -> OrderParams:
    """Measured overlaps `Q = J J^T / N`, `R = J B^T / N` (and the readout `v`) of an `SGDState`."""
    N = state.J.shape[-1]
    Q, R = _measure(state.J, state.B, N)
    return OrderParams(Q=Q, R=R, v=state.v)


def _as_key(seed):
    if isinstance(seed, jax.Array) and jnp.issubdtype(seed.dtype, jax.dtypes.prng_key):
        return seed
    return jr.key(int(seed))


def _spec(scenario, N, rng):
    if not isinstance(scenario, Scenario):
        raise ValueError(f"expected a jaxdyn.Scenario, got {type(scenario).__name__}")
    if not (isinstance(N, (int, np.integer)) and N >= 1):
        raise ValueError(f"N must be a positive integer, got {N!r}")
    if rng not in ("hash", "jax"):
        raise ValueError(f"rng must be 'hash' or 'jax', got {rng!r}")
    bs = np.asarray(scenario.batch_size)
    if bs.ndim != 0 or float(bs) != int(bs):
        raise ValueError("simulate needs a scalar integer batch_size in the Scenario")
    noise = np.asarray(scenario.noise)
    return _Spec(K=scenario.K, M=scenario.M, N=int(N), batch=int(bs), rng=rng,
                 noise_on=bool(np.any(noise != 0)))


# ----------------------------------------------------------------------------- simulate


# eps_g of measured overlaps: traced, so without `eps_g`'s input check (a float32 run's Gram
# matrices are PSD only to ~1e-7, below the check's tolerance)
_measured_eps_g = eqx.filter_jit(eps_g)


def _default_chunk(N, batch, n_seeds):
    # one chunk of random numbers: ~2^16 floats per seed (fits the L2 cache), at least 1 step
    per = max(1, (1 << 16) // max(1, N * batch))
    return int(min(256, per))


def _build_runner(scenario, spec: _Spec, dtype, chunk: int, n_test: int):
    N = spec.N
    g, gs = scenario.g, scenario.g_teacher

    def test_error(J, Bt, words, key, rec, v=None):
        # fresh noise-free test inputs (a stream disjoint from the training one)
        w2 = words ^ jnp.uint32(0x27D4EB2F)
        if spec.rng == "hash":
            X = _hash_normals(w2, rec[None], (n_test, N))[0].astype(dtype)
        else:
            X = jr.normal(jr.fold_in(jr.fold_in(key, 0x7FFFFFFF), rec), (n_test, N), dtype)
        sq = 1.0 / math.sqrt(N)
        if v is None:
            sig = g(X @ J.T * sq) @ scenario.v.astype(dtype)
        else:  # learned readout (its effective output weights s v)
            sig = g(X @ J.T * sq) @ (readout_scale(scenario) * v)
        tau = gs(X @ Bt.T * sq) @ scenario.w.astype(dtype)
        return 0.5 * jnp.mean((sig - tau) ** 2)

    if scenario.learn_v:
        return _build_runner_readout(scenario, spec, dtype, chunk, n_test, test_error)

    def run_one(J, Bt, words, key, eta, nsteps):
        def record(carry, inp):
            J, t = carry
            n_i, rec = inp
            nfull = n_i // chunk
            rem = n_i - nfull * chunk

            def full(j, c):
                J, t = c
                return _chunk_steps(scenario, spec, J, Bt, t, words, key, eta, chunk), t + chunk

            J, t = jax.lax.fori_loop(0, nfull, full, (J, t))
            J = jax.lax.cond(
                rem > 0,
                lambda J: _chunk_steps(scenario, spec, J, Bt, t, words, key, eta, chunk, mask_from=rem),
                lambda J: J,
                J,
            )
            t = t + rem
            Q, R = _measure(J, Bt, N)
            out = (Q, R)
            if n_test:
                out = out + (test_error(J, Bt, words, key, rec),)
            return (J, t), out

        recs = jnp.arange(nsteps.shape[0], dtype=jnp.int32)
        _, out = jax.lax.scan(record, (J, jnp.zeros((), jnp.int32)), (nsteps, recs))
        return out

    return run_one


def _build_runner_readout(scenario, spec: _Spec, dtype, chunk: int, n_test: int, test_error):
    """`run_one` of `_build_runner` for a learned readout: the carry and the records hold `v`."""
    N = spec.N

    def run_one(J, v, Bt, words, key, eta, nsteps):
        def record(carry, inp):
            J, v, t = carry
            n_i, rec = inp
            nfull = n_i // chunk
            rem = n_i - nfull * chunk

            def full(j, c):
                J, v, t = c
                J, v = _chunk_steps(scenario, spec, J, Bt, t, words, key, eta, chunk, v_learn=v)
                return J, v, t + chunk

            J, v, t = jax.lax.fori_loop(0, nfull, full, (J, v, t))
            J, v = jax.lax.cond(
                rem > 0,
                lambda Jv: _chunk_steps(scenario, spec, Jv[0], Bt, t, words, key, eta, chunk,
                                        mask_from=rem, v_learn=Jv[1]),
                lambda Jv: Jv,
                (J, v),
            )
            t = t + rem
            Q, R = _measure(J, Bt, N)
            out = (Q, R, v)
            if n_test:
                out = out + (test_error(J, Bt, words, key, rec, v),)
            return (J, v, t), out

        recs = jnp.arange(nsteps.shape[0], dtype=jnp.int32)
        _, out = jax.lax.scan(record, (J, v, jnp.zeros((), jnp.int32)), (nsteps, recs))
        return out

    return run_one


@functools.lru_cache(maxsize=32)
def _compiled(scenario_static, spec, dtype, chunk, n_test, eta_batched):
    # scenario arrays travel as arguments; only its static structure keys the cache
    def fn(scenario, J, Bt, words, keys, eta, nsteps, v=None):
        run = _build_runner(scenario, spec, dtype, chunk, n_test)
        if v is not None:  # learned readout: v (S, K) is carried per seed
            per_seed = jax.vmap(run, in_axes=(0, 0, 0, 0, 0, None, None))
            if eta_batched:
                return jax.vmap(per_seed, in_axes=(None, None, None, None, None, 0, None))(
                    J, v, Bt, words, keys, eta, nsteps)
            return per_seed(J, v, Bt, words, keys, eta, nsteps)
        per_seed = jax.vmap(run, in_axes=(0, 0, 0, 0, None, None))
        if eta_batched:
            return jax.vmap(per_seed, in_axes=(None, None, None, None, 0, None))(J, Bt, words, keys, eta, nsteps)
        return per_seed(J, Bt, words, keys, eta, nsteps)

    return jax.jit(fn)


def simulate(
    scenario: Scenario,
    op0: OrderParams,
    *,
    eta,
    N: int,
    alphas=None,
    seeds=1,
    dtype=jnp.float32,
    record_every: int | None = None,
    alpha_max: float | None = None,
    n_test: int = 0,
    rng: str = "hash",
    chunk: int | None = None,
    method: str = "weights",
) -> SimResult:
    """Simulate online SGD of the student on fresh Gaussian examples and record the overlaps.

    **Arguments:**
    - `scenario`: `jaxdyn.Scenario` (K, M, T, activations g and g*, v, w, output `noise`,
      `weight_decay`, `batch_size`; `eta_v` to train the readout too); `op0`: prescribed initial
      `OrderParams` (exact at step 0, see the module docstring on finite-size fluctuations); with a
      learned readout `op0.v` is its initial value `v0` (default `scenario.v`).
    - `eta`: learning rate, a scalar or a 1-D array (vmapped: results gain a leading eta axis), or
      a schedule (`jaxdyn.PiecewiseConstant`, ...) evaluated at alpha = t / N before each step t.
    - `N`: input dimension. `alpha = steps / N`.
    - `alphas`: recording times (non-decreasing, >= 0), rounded to whole steps; or instead
      `record_every` (steps) together with `alpha_max`.
    - `seeds`: an int S (seeds 0..S-1) or a sequence of int seeds; each seed fixes the teacher's and
      student's random orientation and the example stream. Vmapped.
    - `dtype`: `jnp.float32` (default, fast) or `jnp.float64` (weights and arithmetic).
    - `n_test`: if > 0, also record a test-set estimate `eps_test` on `n_test` fresh inputs.
    - `rng`: `"hash"` (default, fast counter-based) or `"jax"` (`jax.random.normal`).
    - `chunk`: steps per random-number draw (default: ~2^16 numbers per seed). Does not change the
      result, only speed and memory.
    - `method`: `"weights"` (default, the reference: moves the N-dimensional weights) or
      `"overlaps"`: the same law simulated exactly as a Markov chain of (Q, R), at a cost
      independent of N (i.i.d. Gaussian inputs only; see `jaxdyn.simulate_overlaps`).

    Returns a `SimResult` with `Q` (S, n, K, K), `R` (S, n, K, M), `eps_g` (S, n), ...

    Example:
        >>> sc = jaxdyn.Scenario(K=2, M=2, T=jnp.diag(jnp.array([1.0, 2.0])))
        >>> op0 = jaxdyn.OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=1e-3 * jnp.eye(2))
        >>> sim = jaxdyn.simulate(sc, op0, eta=1.0, N=1000, alphas=jnp.linspace(0, 50, 101), seeds=10)
        >>> sim.mean("eps_g"), sim.std("eps_g")
    """
    if method == "overlaps":
        return simulate_overlaps(scenario, op0, eta=eta, N=N, alphas=alphas, seeds=seeds,
                                 dtype=dtype, record_every=record_every, alpha_max=alpha_max,
                                 n_test=n_test, rng=rng, chunk=chunk)
    if method != "weights":
        raise ValueError(f"method must be 'weights' or 'overlaps', got {method!r}")
    spec = _spec(scenario, N, rng)
    check_order_params(scenario, op0)
    schedule = eta if is_schedule(eta) else None
    if schedule is None:
        check_eta(eta)
    dtype, steps, nsteps, seed_list = sim_schedule(
        dtype=dtype, alphas=alphas, record_every=record_every, alpha_max=alpha_max, N=N,
        seeds=seeds)
    if schedule is not None:
        check_schedule(schedule, 0.0, max(float(steps[-1]) / N, 1.0 / N),
                       jumps_inside=False)
    # jnp, not np: eta may be traced (simulate under jax.jit / jax.grad-free transforms)
    eta_arr = jnp.asarray(jnp.nan if schedule is not None else eta, dtype=jnp.result_type(float))
    if eta_arr.ndim > 1:
        raise ValueError("eta must be a scalar or a 1-D array")
    if chunk is None:
        chunk = _default_chunk(N, spec.batch, len(seed_list))

    keys = jax.vmap(lambda s: jr.key(s))(jnp.asarray(seed_list))
    ks = jax.vmap(jr.split)(keys)
    kinit, kstream = ks[:, 0], ks[:, 1]
    W = jax.vmap(lambda k: init_weights(k, scenario, op0, spec.N, dtype))(kinit)
    Bt, J = W[0], W[1]
    v0 = W[2] if scenario.learn_v else None
    words = jax.vmap(lambda k: jr.bits(k, (4,), jnp.uint32))(kstream)

    fn = _compiled(_static_key(scenario), spec, dtype, int(chunk), int(n_test), eta_arr.ndim == 1)
    eta_in = schedule if schedule is not None else jnp.asarray(eta_arr, dtype)
    out = fn(scenario, J, Bt, words, kstream, eta_in, jnp.asarray(nsteps), v0)
    Q, R = out[0], out[1]
    vs = out[2] if scenario.learn_v else None
    out = out[1:] if scenario.learn_v else out  # the optional test error comes last
    eps_test = out[2] if n_test else None
    ftype = jnp.result_type(float)
    eg = _measured_eps_g(scenario, OrderParams(Q=Q.astype(ftype), R=R.astype(ftype),
                                               v=None if vs is None else vs.astype(ftype)))
    return SimResult(alpha=jnp.asarray(steps / N, ftype), steps=jnp.asarray(steps),
                     Q=Q, R=R, eps_g=eg, eps_test=eps_test, seeds=jnp.asarray(seed_list),
                     eta=schedule if schedule is not None else jnp.asarray(eta_arr, ftype),
                     N=spec.N, v=vs)


def _static_key(scenario):
    # hashable identity of the scenario's static structure (activations are static modules)
    return (scenario.K, scenario.M, type(scenario.g), type(scenario.g_teacher),
            repr(scenario.g), repr(scenario.g_teacher), scenario.learn_v, scenario.mean_field)


# ----------------------------------------------------------------------------- theory comparison


class MatchedTheory(eqx.Module):
    """The result of `jaxdyn.matched_theory`: `alpha` (n',), `Q` (S, n', K, K), `R` (S, n', K, M),
    `eps_g` (S, n') (seed axis first). Unpacks as the 4-tuple `(alpha, Q, R, eps_g)`.

    Example:
        >>> a = jnp.arange(2.0)
        >>> alpha, Q, R, e = jaxdyn.MatchedTheory(a, a[None, :, None, None], a[None, :, None, None], a[None])
    """

    alpha: jax.Array
    Q: jax.Array
    R: jax.Array
    eps_g: jax.Array

    def __iter__(self):
        return iter((self.alpha, self.Q, self.R, self.eps_g))

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return (self.alpha, self.Q, self.R, self.eps_g)[i]


def matched_theory(scenario: Scenario, sim: SimResult, *, eta=None, alpha_match=None,
                   **integrate_kw) -> MatchedTheory:
    """The ODE started, for every seed, from that seed's measured overlaps at `alpha_match`.

    Returns a `MatchedTheory` `(alpha, Q, R, eps_g)` (it unpacks as that 4-tuple) with the seed
    axis first: `Q` (S, n', K, K) on the recorded
    times from the one nearest `alpha_match` on (`alpha` (n',)). Default `alpha_match = 2 / eta`
    (eta alpha is the natural time of the dynamics: late enough for the fluctuations of the first
    steps to have happened, early enough to be before any plateau escape; in paper 001's setting
    the matched ODE reproduces the escape that the nominal ODE misses by a factor of ~1.5 in alpha). This is the finite-size correction of the first
    steps: the random O(1/sqrt N) symmetry breaking that the simulation realised during its first
    steps is handed to the ODE, instead of the nominal (often much smaller) one of `op0`.
    Only for a scalar eta. `integrate_kw` go to `jaxdyn.integrate` (`eta2`, `i4`, `rtol`, ...).

    (`jaxdyn reproduce 001-fig1` and `notebooks/simulations.py` use it; tests/test_results.py checks
    it against `integrate` from a seed's measured overlaps.)
    """
    if np.ndim(sim.eta) != 0:
        raise ValueError("matched_theory needs a SimResult with a scalar eta")
    eta = float(sim.eta) if eta is None else eta
    if alpha_match is None:
        alpha_match = 2.0 / eta
    a = np.asarray(sim.alpha)
    i0 = int(np.argmin(np.abs(a - alpha_match)))
    alphas = jnp.asarray(a[i0:], dtype=float)
    ftype = jnp.result_type(float)
    Q0 = jnp.asarray(sim.Q[:, i0], ftype)
    R0 = jnp.asarray(sim.R[:, i0], ftype)
    Q0 = 0.5 * (Q0 + jnp.swapaxes(Q0, -1, -2))
    # a learned readout starts from each seed's measured v as well
    v0 = None if sim.v is None else jnp.asarray(sim.v[:, i0], ftype)
    integrate_kw.setdefault("throw", False)

    def one(Q, R, v):
        tr = integrate(scenario, OrderParams(Q=Q, R=R, v=v), eta=eta, alphas=alphas,
                       alpha0=float(a[i0]), **integrate_kw)
        return tr.Q, tr.R, tr.eps_g

    Qs, Rs, Es = jax.vmap(one)(Q0, R0, v0)
    return MatchedTheory(alphas, Qs, Rs, Es)


def align_units(Q, R, R_ref):
    """Permute student units per seed so that the final R best matches `R_ref` (K, M).

    `Q` (S, n, K, K), `R` (S, n, K, M) (NumPy or JAX). Returns `(Q, R, perms)`: permuted NumPy
    copies and the permutation of each seed (apply the same to matched theory curves). Student
    units with equal `v` are exchangeable: this only relabels, it changes no overlap.
    """
    Q = np.array(Q)
    R = np.array(R)
    R_ref = np.asarray(R_ref)
    K = R.shape[-2]
    perms = list(itertools.permutations(range(K)))
    out = []
    for s in range(R.shape[0]):
        fin = R[s, -1]
        ok = np.isfinite(fin).all()
        best = min(perms, key=lambda p: float(np.sum((fin[list(p)] - R_ref) ** 2))) if ok else perms[0]
        p = list(best)
        out.append(p)
        R[s] = R[s][:, p]
        Q[s] = Q[s][:, p][:, :, p]
    return Q, R, np.array(out)


def permute_units(Q, R, perms):
    """Apply per-seed student permutations (from `align_units`) to `Q` (S, n, K, K), `R` (S, n, K, M)."""
    Q = np.array(Q)
    R = np.array(R)
    for s, p in enumerate(np.asarray(perms)):
        p = list(p)
        R[s] = R[s][:, p]
        Q[s] = Q[s][:, p][:, :, p]
    return Q, R
