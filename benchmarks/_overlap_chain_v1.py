"""Baseline for benchmarks/bench_overlap_chain.py: jaxdyn/_overlap_chain.py as it was before the
issue-14 speed-up (seeds vmapped for the draws then transposed, the state stacked into (K, K, S)
arrays every step, two chi-square candidates per step), kept verbatim except absolute imports.

Original module docstring follows.

Exact finite-N online SGD as a Markov chain of the overlaps, at a cost independent of N.

Why it is exact. Stack teacher and student weights `W = [B; J]` ((M+K) x N) with
`W W^T / N = C = [[T, R^T], [R, Q]]` (teacher first). Take any orthonormal N x (M+K) frame `U`
whose span contains the rows of `W` (it exists for every C, singular or not, once N >= K + M) and
write `W = sqrt(N) L U^T`, so `L L^T = C`. For a fresh input `xi ~ N(0, I_N)` the coordinates
`z = U^T xi ~ N(0, I_{M+K})` and the rest `xi_perp` are independent, the fields are
`(y, x) = W xi / sqrt(N) = L z`, and `|xi|^2 = |z|^2 + |xi_perp|^2` with `|xi_perp|^2 ~ chi^2_{N-K-M}`.
For a minibatch `xi_1..xi_B` the Gram matrix is `xi_b . xi_c = z_b . z_c + Wish_bc` with `Wish` a
Wishart(N - K - M, I_B) matrix independent of the z's. The SGD step (docs/conventions.md,
`J <- d J + (eta / (B sqrt N)) Delta^T Xi`, `d = 1 - eta lambda / N`,
`Delta_bi = v_i g'(x_bi) (tau_b - sigma_b)`) changes the overlaps by

    R' = d R + (eta / (N B)) Delta^T y
    Q' = d^2 Q + d (eta / (N B)) (x^T Delta + Delta^T x) + (eta^2 / (N B^2)) Delta^T G Delta,

with `G = Xi Xi^T / N` (B x B; for B = 1 it is `|xi|^2 / N`), which involves the weights only
through `(x, y, G)`. Their joint law depends on the weights only through C, so `(Q, R)` is an
exact Markov chain (T stays fixed). Using the fixed dimension M + K (rather than rank C) needs no
rank decision: the frame may contain directions orthogonal to `W`, whose z's L ignores.

The factor and the state. `L = [[L_T, 0], [A, L_S]]` with `L_T = chol(T)` (fixed),
`A = R L_T^{-T}` and `L_S` the Cholesky factor of the Schur complement `S = Q - A A^T` (the part of
the students outside the teacher's span). Perfect learning makes `S = 0`, i.e. C singular. The
chain's state is `(S, R)`, not `(Q, R)`: S has its own update without cancellation (see
`_soa_step`), so it keeps its *relative* accuracy as it goes to 0, and `Q = A A^T + S` is formed
only for recording. (Recomputing S from a stored Q would leave it with an absolute error ~eps |Q|,
i.e. a spurious field ~sqrt(eps) ~ 1e-8 in the singular direction, which an unstable or marginal
finite-N dynamics amplifies.) `L_S` is an unrolled positive-semidefinite Cholesky that clamps
negative pivots (rounding) to 0 and zeros a column whose pivot vanishes: never NaN. The initial S
is projected onto the PSD cone with eigenvalues below 32 eps |C| set to 0 (`schur_complement`), so
an exactly singular start stays exactly singular. Each step symmetrises S. Measured accuracy over
10^8 steps: see `docs/finite_size.md`.

Random numbers (`rng="hash"`, default): a counter-based generator (murmur3 finaliser of (seed words,
step, index)), normals by Box-Muller from 53-bit (float64) or 24-bit (float32) uniforms, and the
chi-square / Bartlett-Wishart diagonals as exact Marsaglia-Tsang gamma variates (two candidates
per step, and a loop in the rare case that both are rejected). `rng="jax"` uses
`jax.random.normal` and `jax.random.gamma` instead. A seed's run does not depend on the chunking,
the recording times or how many seeds are vmapped together.

When to use which simulator (`jaxdyn.simulate(..., method=...)`):
- `"overlaps"` (this module): i.i.d. isotropic Gaussian inputs, fixed second-layer weights,
  any N >= K + M; same law as the weight-space run, at a cost independent of N.
- `"weights"` (default, the reference): also for anything that breaks the rotation invariance
  (non-Gaussian or structured inputs, a fixed finite data set, access to the weights themselves).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from jaxdyn._checks import sim_schedule
from jaxdyn._model import OrderParams, Scenario, check_eta, check_order_params
from jaxdyn._solution import SimResult


__all__ = ["simulate_overlaps", "overlap_update", "overlap_factor"]

_UNROLL = 1  # steps per loop iteration of the scan (unrolling measured no faster on CPU)


# ----------------------------------------------------------------------------- the exact update


def overlap_update(scenario: Scenario, Q, R, x, y, G, tau_noise, *, eta, N):
    """One SGD step of the overlaps given the minibatch's fields and Gram matrix (no randomness).

    `x` (B, K) student fields, `y` (B, M) teacher fields, `G` (B, B) = `Xi Xi^T / N`,
    `tau_noise` (B,) the noise added to the teacher's outputs (zeros if none). Returns `(Q', R')`
    exactly as the weight-space step `J <- (1 - eta lambda / N) J + eta / (B sqrt N) Delta^T Xi`
    would change `J J^T / N` and `J B^T / N` (see the module docstring).

    Example:
        >>> sc = jaxdyn.Scenario(K=1, M=1)
        >>> from jaxdyn._overlap_chain import overlap_update
        >>> Q, R = overlap_update(sc, jnp.eye(1), jnp.zeros((1, 1)), jnp.ones((1, 1)),
        ...                       jnp.ones((1, 1)), jnp.ones((1, 1)), jnp.zeros(1), eta=1.0, N=10)
    """
    dtype = Q.dtype
    B = x.shape[0]
    v = scenario.v.astype(dtype)
    w = scenario.w.astype(dtype)
    tau = scenario.g_teacher(y) @ w + tau_noise
    sigma = scenario.g(x) @ v
    delta = v * scenario.g.deriv(x) * (tau - sigma)[:, None]  # (B, K)
    c = jnp.asarray(eta, dtype) / (N * B)
    d = 1.0 - jnp.asarray(eta, dtype) * scenario.weight_decay.astype(dtype) / N
    xd = x.T @ delta
    Qn = d * d * Q + d * c * (xd + xd.T) + (c * c * N) * (delta.T @ G @ delta)
    Rn = d * R + c * (delta.T @ y)
    return 0.5 * (Qn + Qn.T), Rn


def _psd_cholesky_lists(S, K):
    """Lower-triangular factor (nested lists of arrays) of a PSD S given as nested lists, unrolled.

    Negative pivots (rounding) are clamped to 0; a column whose pivot is 0 is set to 0: never NaN."""
    L = [[None] * K for _ in range(K)]
    for j in range(K):
        dj = S[j][j]
        for k in range(j):
            dj = dj - L[j][k] * L[j][k]
        ljj = jnp.sqrt(jnp.maximum(dj, 0.0))
        inv = jnp.where(ljj > 0, 1.0 / jnp.where(ljj > 0, ljj, 1.0), 0.0)
        L[j][j] = ljj
        for i in range(j + 1, K):
            e = S[i][j]
            for k in range(j):
                e = e - L[i][k] * L[j][k]
            L[i][j] = e * inv
        for i in range(j):
            L[i][j] = jnp.zeros_like(ljj)
    return L


def _psd_cholesky(S):
    """`_psd_cholesky_lists` for an array `(..., K, K)`."""
    K = S.shape[-1]
    L = _psd_cholesky_lists([[S[..., i, j] for j in range(K)] for i in range(K)], K)
    return jnp.stack([jnp.stack(row, axis=-1) for row in L], axis=-2)


def overlap_factor(Q, R, LT, LTinv):
    """`(A, L_S, Q_proj)`: the student rows `[A, L_S]` of the teacher-first factor of C, and the
    PSD re-projection `Q_proj = A A^T + L_S L_S^T` of Q (equal to Q up to rounding inside the cone).

    `LT = chol(T)`, `LTinv = LT^{-1}` (precomputed once)."""
    A = R @ LTinv.T
    S = Q - A @ A.T
    S = 0.5 * (S + S.T)
    LS = _psd_cholesky(S)
    return A, LS, A @ A.T + LS @ LS.T


# ----------------------------------------------------------------------------- random numbers


def _fmix(h):
    """murmur3 32-bit finaliser (a bijection of uint32 with full avalanche)."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _hash_words(words, t, n, stream):
    """uint32 words `(len(t), n)`, a pure function of (seed words, step t, index, stream)."""
    t = jnp.asarray(t).astype(jnp.uint32)
    a = _fmix(_fmix(t ^ words[0]) + words[1] + jnp.uint32(stream * 0x632BE5AB & 0xFFFFFFFF))
    b = _fmix(_fmix(t ^ words[2]) + words[3] + jnp.uint32(0x9E3779B9))
    idx = jnp.arange(n, dtype=jnp.uint32)
    return _fmix(_fmix(idx[None, :] + a[:, None]) ^ b[:, None])


def _uniforms(words, t, n, stream, dtype):
    """Uniforms in (0, 1) (24-bit, never 0 or 1), float32 cast to `dtype`."""
    h = _hash_words(words, t, n, stream)
    return (((h >> 8).astype(jnp.float32) + np.float32(0.5)) * np.float32(2.0**-24)).astype(dtype)


def _normals(words, t, n, stream, dtype):
    """Standard normals `(len(t), n)`: `sqrt(2) erfinv(2u - 1)` of 24-bit uniforms in float32
    (as the weight-space simulator's default generator: |z| < 5.3), cast to `dtype`."""
    h = _hash_words(words, t, n, stream)
    u = ((h >> 8).astype(jnp.float32) - np.float32(8388607.5)) * np.float32(2.0**-23)
    return (np.float32(math.sqrt(2.0)) * jax.scipy.special.erfinv(u)).astype(dtype)


def _gamma_mt(a, draw):
    """Gamma(a) variates, a >= 1 (array, static), by Marsaglia-Tsang's exact rejection method.

    `draw(k) -> (x, u)` gives the k-th candidate's normal and uniform (shape of the output).
    With `s = c x`, `c = 1 / sqrt(9 d)`, `d = a - 1/3`, the candidate `d (1 + s)^3` is accepted iff
    `ln u < 3 d (log1p(s) - s + s^2/2 - s^3/3)`; for small |s| (large a) the bracket is summed as
    its series (no float64 logarithm, which is slow on CPU), to float64 accuracy. `ln u` is taken
    in float32 (u is a 24-bit uniform). Two candidates are drawn up front; a loop handles the rare
    steps where both are rejected."""
    if isinstance(a, jax.Array):  # traced shape parameter: a >= A_TRACED_MIN is guaranteed
        dd = a - 1.0 / 3.0
        cc = 1.0 / jnp.sqrt(9.0 * dd)
        smax = 5.5 / math.sqrt(9.0 * (A_TRACED_MIN - 1.0 / 3.0))
    else:
        a = np.asarray(a, dtype=float)
        dd = a - 1.0 / 3.0
        cc = 1.0 / np.sqrt(9.0 * dd)
        smax = 5.5 * float(np.max(cc))  # |x| < 5.3 for the hash normals (the only caller)
    nser = None
    if smax < 0.3:
        # terms s^k / k, k = 4..nser, until smax^k / k < 1e-17 * smax^4 / 4
        nser = next(k for k in range(5, 60) if smax ** (k - 4) * 4.0 / k < 1e-17)

    def cand(k):
        x, u = draw(k)
        d = jnp.asarray(dd, x.dtype)
        s = jnp.asarray(cc, x.dtype) * x
        if nser is None:
            br = jnp.log1p(jnp.where(s > -1, s, 0.0)) - s + 0.5 * s * s - s * s * s / 3.0
        else:
            br = jnp.zeros_like(s)
            for j in range(nser, 3, -1):  # Horner in s of sum_k (-1)^(k+1) s^k / k, k >= 4
                br = br * s + ((-1.0) ** (j + 1)) / j
            br = br * s**4  # |s| < smax always: the hash normals are bounded by 5.3
        lu = jnp.log(u.astype(jnp.float32)).astype(x.dtype)
        ok = (s > -1) & (lu < 3.0 * d * br)
        return d * (1.0 + s) ** 3, ok

    g0, ok0 = cand(0)
    g1, ok1 = cand(1)
    g = jnp.where(ok0, g0, g1)
    ok = ok0 | ok1

    def body(st):
        g, ok, k = st
        gk, okk = cand(k)
        return jnp.where(ok, g, gk), ok | okk, k + 1

    g, ok, _ = jax.lax.while_loop(lambda st: ~jnp.all(st[1]), body, (g, ok, 2))
    return g


A_TRACED_MIN = 50.0  # gamma shapes >= this may be traced (N a run-time number): series length fixed


def _chi2_hash(n, words, t, shape, stream, dtype):
    """chi^2 variates with dof `n` (array of ints broadcast to `shape`) per step t: static ints,
    or a traced array whose entries are all >= 2 A_TRACED_MIN."""
    if isinstance(n, jax.Array):
        def draw(k):
            kk = jnp.asarray(k, jnp.uint32)
            w2 = words ^ (kk * jnp.uint32(0x7FEB352D) + jnp.uint32(0x1B873593))
            size = int(np.prod(shape))
            x = _normals(w2, t, size, stream, dtype).reshape((len(t),) + shape)
            u = _uniforms(w2, t, size, stream + 1, dtype).reshape((len(t),) + shape)
            return x, u

        return 2.0 * _gamma_mt(jnp.broadcast_to(n.astype(dtype) / 2.0, shape), draw)
    n = np.broadcast_to(np.asarray(n, dtype=int), shape)
    size = int(np.prod(shape))
    out = jnp.zeros((len(t),) + shape, dtype)
    flat = n.reshape(-1)
    res = [None] * size
    big = [i for i in range(size) if flat[i] >= 3]
    for i in range(size):
        if flat[i] == 0:
            res[i] = jnp.zeros(len(t), dtype)
        elif flat[i] == 1:
            res[i] = _normals(words, t, 1, stream + 1000 + i, dtype)[:, 0] ** 2
        elif flat[i] == 2:
            res[i] = -2.0 * jnp.log(_uniforms(words, t, 1, stream + 1000 + i, dtype)[:, 0])
    if big:
        a = flat[big] / 2.0

        def draw(k):
            # candidate k: its own counter stream (k is traced inside the loop)
            kk = jnp.asarray(k, jnp.uint32)
            w2 = words ^ (kk * jnp.uint32(0x7FEB352D) + jnp.uint32(0x1B873593))
            x = _normals(w2, t, len(big), stream, dtype)
            u = _uniforms(w2, t, len(big), stream + 1, dtype)
            return x, u

        g = 2.0 * _gamma_mt(a, draw)
        for j, i in enumerate(big):
            res[i] = g[:, j]
    del out
    return jnp.stack(res, axis=-1).reshape((len(t),) + shape)


# ----------------------------------------------------------------------------- the chain


def _draws(spec, words, key, ts, dtype, Nv):
    """Per step: z (B, M+K), the orthogonal Gram part W (B, B), teacher noise normals (B,).

    `spec["N"]` is N when it is small (static), else None and `Nv` (traced) holds N."""
    K, M, N, Bsz = spec["K"], spec["M"], spec["N"], spec["batch"]
    if N is None:
        n = Nv - (K + M)
        direct = False
        dofs = n - jnp.arange(Bsz, dtype=Nv.dtype)
    else:
        n = N - K - M
        direct = n < Bsz  # the orthogonal part has rank n < B: draw it directly (n small)
        dofs = n - np.arange(Bsz)
    L = K + M
    nt = len(ts)
    if spec["rng"] == "hash":
        z = _normals(words, ts, Bsz * L, 0, dtype).reshape(nt, Bsz, L)
        zeta = _normals(words, ts, Bsz, 4, dtype) if spec["noise_on"] else None
        if direct:
            X = _normals(words, ts, Bsz * n, 8, dtype).reshape(nt, Bsz, n) if n else None
        else:
            diag = _chi2_hash(dofs, words, ts, (Bsz,), 12, dtype)
            off = _normals(words, ts, Bsz * Bsz, 16, dtype).reshape(nt, Bsz, Bsz) if Bsz > 1 else None
    else:
        def one(tt):
            k = jr.fold_in(key, tt)
            k1, k2, k3, k4 = jr.split(k, 4)
            z = jr.normal(k1, (Bsz, L), dtype)
            zeta = jr.normal(k2, (Bsz,), dtype)
            if direct:
                X = jr.normal(k3, (Bsz, max(n, 1)), dtype)[:, :n]
                return z, zeta, X, X
            diag = 2.0 * jr.gamma(k3, jnp.asarray(dofs, dtype) / 2.0, (Bsz,), dtype)
            off = jr.normal(k4, (Bsz, Bsz), dtype)
            return z, zeta, diag, off

        z, zeta, p, q = jax.vmap(one)(ts)
        zeta = zeta if spec["noise_on"] else None
        if direct:
            X = p if n else None
        else:
            diag, off = p, q
    if direct:
        Wo = jnp.zeros((nt, Bsz, Bsz), dtype) if X is None else jnp.einsum("tbk,tck->tbc", X, X)
    elif Bsz == 1:
        Wo = diag[:, :, None]
    else:
        # Bartlett: Wish = A A^T, A lower triangular, A_ii^2 ~ chi^2_{n-i}, A_ij ~ N(0, 1) (i > j)
        tri = jnp.asarray(np.tril(np.ones((Bsz, Bsz)), -1), dtype)
        A = off * tri + jnp.sqrt(diag)[:, :, None] * jnp.eye(Bsz, dtype=dtype)
        Wo = jnp.einsum("tbk,tck->tbc", A, A)
    return z, Wo, zeta


def _soa_step(scenario, spec, S, R, LT, LTinv, z, wo, zt, eta, Nv):
    """One step for all seeds at once, seeds on the last axis ("structure of arrays": every
    overlap entry is a vector over seeds, so XLA fuses the step into a few vector loops).

    The state is `(S, R)` with `S = Q - R T^{-1} R^T` the Schur complement (the students' part
    outside the teacher span), updated directly (no cancellation, so it keeps its *relative*
    accuracy as it goes to 0 at perfect learning): with `x_perp = L_S z_s` and `A = R L_T^{-T}`,

        S' = d^2 S + d c (x_perp^T Delta + Delta^T x_perp) + c^2 Delta^T (Z_s Z_s^T + Wo) Delta,

    which is `Q' - R' T^{-1} R'^T` of the Q update (`N G = Z_t Z_t^T + Z_s Z_s^T + Wo`, and
    `y T^{-1} R^T = z_t A^T`).

    `S` (K, K, S), `R` (K, M, S), `z` (B, M+K, S), `wo` (B, B, S), `zt` (B, S) or None."""
    K, M, Bsz = spec["K"], spec["M"], spec["batch"]
    N = Nv if spec["N"] is None else spec["N"]
    dtype = S.dtype
    v = scenario.v.astype(dtype)
    w = scenario.w.astype(dtype)
    # A = R L_T^{-T} (L_T^{-1} is lower triangular)
    A = [[sum(R[i, n] * LTinv[m, n] for n in range(m + 1)) for m in range(M)] for i in range(K)]
    Ssym = [[0.5 * (S[i, k] + S[k, i]) for k in range(K)] for i in range(K)]
    LS = _psd_cholesky_lists(Ssym, K)
    # the PSD projection of S that the step uses
    Sp = [[sum(LS[i][j] * LS[k][j] for j in range(min(i, k) + 1)) for k in range(K)] for i in range(K)]
    zl = [z[:, l] for l in range(M + K)]  # each (B, S)
    y = [sum(LT[m, n] * zl[n] for n in range(m + 1)) for m in range(M)]
    xp = [sum(LS[i][j] * zl[M + j] for j in range(i + 1)) for i in range(K)]
    x = [sum(A[i][m] * zl[m] for m in range(M)) + xp[i] for i in range(K)]
    tau = sum(w[m] * scenario.g_teacher(y[m]) for m in range(M))
    if zt is not None:
        tau = tau + scenario.noise.astype(dtype) * zt
    err = tau - sum(v[i] * scenario.g(x[i]) for i in range(K))
    delta = [v[i] * scenario.g.deriv(x[i]) * err for i in range(K)]  # (B, S)
    c = eta / (N * Bsz)
    d = 1.0 - eta * scenario.weight_decay.astype(dtype) / N
    # Delta^T (Z_s Z_s^T + Wo) Delta: the Z_s part through p_il = sum_b delta_ib z_b,M+l
    p = [[jnp.sum(delta[i] * zl[M + l], axis=0) for l in range(K)] for i in range(K)]
    if Bsz == 1:
        wd = [[wo[0, 0] * delta[i][0] * delta[k][0] for k in range(K)] for i in range(K)]
    else:
        wdel = [jnp.einsum("bcs,cs->bs", wo, delta[k]) for k in range(K)]
        wd = [[jnp.sum(delta[i] * wdel[k], axis=0) for k in range(K)] for i in range(K)]
    Sn = [[None] * K for _ in range(K)]
    for i in range(K):
        for k in range(i, K):
            xd = jnp.sum(xp[i] * delta[k] + delta[i] * xp[k], axis=0)
            dGd = sum(p[i][l] * p[k][l] for l in range(K)) + wd[i][k]
            Sn[i][k] = Sn[k][i] = d * d * Sp[i][k] + d * c * xd + (c * c) * dGd
    Rn = [[d * R[i, n] + c * jnp.sum(delta[i] * y[n], axis=0) for n in range(M)] for i in range(K)]
    return (jnp.stack([jnp.stack(r) for r in Sn]), jnp.stack([jnp.stack(r) for r in Rn]))


def _q_from_schur(S, R, LTinv):
    """Q = S + A A^T, A = R L_T^{-T}; seeds on the last axis."""
    A = jnp.einsum("ins,mn->ims", R, LTinv)
    return S + jnp.einsum("ims,kms->iks", A, A)


def schur_complement(Q, R, T):
    """`S = Q - R T^{-1} R^T` (NumPy, float64, leading batch axes allowed), projected onto the PSD
    cone with eigenvalues below rounding (32 eps |C|) set to 0, so that an exactly singular start
    (perfect learning) is exactly singular in the chain."""
    Q, R, T = np.asarray(Q, float), np.asarray(R, float), np.asarray(T, float)
    S = Q - R @ np.linalg.solve(T, np.swapaxes(R, -1, -2))
    S = 0.5 * (S + np.swapaxes(S, -1, -2))
    lam, V = np.linalg.eigh(S)
    scale = max(1.0, float(np.max(np.abs(Q))), float(np.max(np.abs(T))))
    lam = np.where(lam > 32 * np.finfo(float).eps * scale, lam, 0.0)
    return (V * lam[..., None, :]) @ np.swapaxes(V, -1, -2)


def _chunk(scenario, spec, Q, R, LT, LTinv, words, keys, t0, eta, Nv, n, mask_from=None):
    """`n` (static) steps of all seeds (seeds last) from global step t0; steps >= mask_from no-op."""
    dtype = Q.dtype
    ts = t0 + jnp.arange(n, dtype=jnp.int32)
    z, wo, zeta = jax.vmap(lambda w, k: _draws(spec, w, k, ts, dtype, Nv))(words, keys)
    # (S, n, ...) -> (n, ..., S)
    z = jnp.moveaxis(z, 0, -1)
    wo = jnp.moveaxis(wo, 0, -1)
    zeta = None if zeta is None else jnp.moveaxis(zeta, 0, -1)
    active = None if mask_from is None else (jnp.arange(n) < mask_from)

    def body(c, inp):
        Q, R = c
        zb, wb, zt, act = inp
        Qn, Rn = _soa_step(scenario, spec, Q, R, LT, LTinv, zb, wb, zt, eta, Nv)
        if act is not None:
            Qn = jnp.where(act, Qn, Q)
            Rn = jnp.where(act, Rn, R)
        return (Qn, Rn), None

    (Q, R), _ = jax.lax.scan(body, (Q, R), (z, wo, zeta, active), unroll=_UNROLL)
    return Q, R


def _test_error(scenario, spec, Q, R, LT, LTinv, words, key, rec, n_test, dtype):
    K, M = spec["K"], spec["M"]
    A, LS, _ = overlap_factor(Q, R, LT, LTinv)
    if spec["rng"] == "hash":
        z = _normals(words ^ jnp.uint32(0x27D4EB2F), rec[None], n_test * (K + M), 20, dtype)
        z = z.reshape(n_test, K + M)
    else:
        z = jr.normal(jr.fold_in(jr.fold_in(key, 0x7FFFFFFF), rec), (n_test, K + M), dtype)
    y = z[:, :M] @ LT.T
    x = z[:, :M] @ A.T + z[:, M:] @ LS.T
    sig = scenario.g(x) @ scenario.v.astype(dtype)
    tau = scenario.g_teacher(y) @ scenario.w.astype(dtype)
    return 0.5 * jnp.mean((sig - tau) ** 2)


def _structure_key(scenario):
    return (scenario.K, scenario.M, type(scenario.g), type(scenario.g_teacher),
            repr(scenario.g), repr(scenario.g_teacher))


@functools.lru_cache(maxsize=32)
def _compiled(structure, spec_items, dtype, chunk, n_test, eta_batched):
    spec = dict(spec_items)

    def run_all(scenario, Q0, R0, LT, LTinv, words, keys, eta, Nv, nsteps):
        S = words.shape[0]
        if Q0.ndim == 3:  # one start per seed
            Q, R = jnp.moveaxis(Q0, 0, -1), jnp.moveaxis(R0, 0, -1)
        else:
            Q = jnp.broadcast_to(Q0[:, :, None], Q0.shape + (S,))
            R = jnp.broadcast_to(R0[:, :, None], R0.shape + (S,))

        def record(carry, inp):
            Q, R, t = carry
            n_i, rec = inp

            def one_chunk(j, c):
                # every chunk masked (steps past n_i are no-ops): one copy of the step code
                Q, R, t = c
                m = jnp.minimum(n_i - j * chunk, chunk)
                Q, R = _chunk(scenario, spec, Q, R, LT, LTinv, words, keys, t, eta, Nv, chunk,
                              mask_from=m)
                return Q, R, t + m

            Q, R, t = jax.lax.fori_loop(0, (n_i + chunk - 1) // chunk, one_chunk, (Q, R, t))
            Qs, Rs = jnp.moveaxis(_q_from_schur(Q, R, LTinv), -1, 0), jnp.moveaxis(R, -1, 0)
            out = (Qs, Rs)
            if n_test:
                out = out + (jax.vmap(lambda q, r, w, k: _test_error(
                    scenario, spec, q, r, LT, LTinv, w, k, rec, n_test, dtype))(Qs, Rs, words, keys),)
            return (Q, R, t), out

        recs = jnp.arange(nsteps.shape[0], dtype=jnp.int32)
        _, out = jax.lax.scan(record, (Q, R, jnp.zeros((), jnp.int32)), (nsteps, recs))
        # (n_rec, S, ...) -> (S, n_rec, ...)
        return tuple(jnp.moveaxis(o, 0, 1) for o in out)

    def fn(scenario, Q, R, LT, LTinv, words, keys, eta, Nv, nsteps):
        if eta_batched:
            return jax.vmap(run_all, in_axes=(None,) * 7 + (0, None, None))(
                scenario, Q, R, LT, LTinv, words, keys, eta, Nv, nsteps)
        return run_all(scenario, Q, R, LT, LTinv, words, keys, eta, Nv, nsteps)

    return jax.jit(fn)


def simulate_overlaps(
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
):
    """Online SGD at finite N simulated exactly as a Markov chain of the overlaps (cost O(1) in N).

    Same arguments and the same `SimResult` as `jaxdyn.simulate` (which calls this with
    `method="overlaps"`), and `op0` may also hold one start per seed (`Q` (S, K, K), `R` (S, K, M)); the law of the recorded `Q`, `R`, `eps_g` is that of the weight-space
    simulation for i.i.d. `N(0, I_N)` inputs (see the module docstring for the derivation and
    for when each simulator applies). The random streams differ from the weight-space simulator's,
    so the same seed gives a different (equally distributed) run. Use `dtype=jnp.float64` at large
    N: a step changes the overlaps by ~eta / N, which float32 resolves only to ~1e-7 relative.

    Example:
        >>> sc = jaxdyn.Scenario(K=2, M=2)
        >>> op0 = jaxdyn.OrderParams(Q=jnp.diag(jnp.array([0.2, 0.3])), R=1e-3 * jnp.eye(2))
        >>> sim = jaxdyn.simulate(sc, op0, eta=1.0, N=10**6, alphas=jnp.array([0.0, 0.01]),
        ...                       seeds=4, method="overlaps", dtype=jnp.float64)
        >>> sim.Q.shape
        (4, 2, 2, 2)
    """
    from jaxdyn import eps_g as _eps_g

    if not isinstance(scenario, Scenario):
        raise ValueError(f"expected a jaxdyn.Scenario, got {type(scenario).__name__}")
    K, M = scenario.K, scenario.M
    if not (isinstance(N, (int, np.integer)) and N >= 1):
        raise ValueError(f"N must be a positive integer, got {N!r}")
    if N < K + M:
        raise ValueError(f"N = {N} must be at least K + M = {K + M}")
    if rng not in ("hash", "jax"):
        raise ValueError(f"rng must be 'hash' or 'jax', got {rng!r}")
    bs = np.asarray(scenario.batch_size)
    if bs.ndim != 0 or float(bs) != int(bs):
        raise ValueError("simulate needs a scalar integer batch_size in the Scenario")
    check_order_params(scenario, op0)
    check_eta(eta)
    dtype, steps, nsteps, seed_list = sim_schedule(
        dtype=dtype, alphas=alphas, record_every=record_every, alpha_max=alpha_max, N=N,
        seeds=seeds)
    if np.ndim(op0.Q) not in (2, 3) or (np.ndim(op0.Q) == 3 and np.shape(op0.Q)[0] != len(seed_list)):
        raise ValueError("op0 must be one OrderParams (Q (K, K), R (K, M)) or one per seed "
                         f"(Q (S, K, K), R (S, K, M) with S = {len(seed_list)} seeds)")
    eta_arr = np.asarray(eta, dtype=float)
    if eta_arr.ndim > 1:
        raise ValueError("eta must be a scalar or a 1-D array")
    if chunk is None:
        chunk = 64
    # N is a run-time number (one compilation for all N) once every chi^2 dof of the orthogonal
    # Gram part is >= 2 A_TRACED_MIN; below that it is static (exact small-dof samplers)
    big_n = int(N) - K - M - (int(bs) - 1) >= 2 * A_TRACED_MIN
    spec = dict(K=K, M=M, N=None if big_n else int(N), batch=int(bs), rng=rng,
                noise_on=bool(np.any(np.asarray(scenario.noise) != 0)))

    T = np.asarray(scenario.T, dtype=float)
    LT = np.linalg.cholesky(T)
    LTinv = np.linalg.inv(LT)
    keys = jax.vmap(lambda s: jr.key(s))(jnp.asarray(seed_list))
    # a stream of its own (not the weight-space simulator's): fold in a constant
    kstream = jax.vmap(lambda k: jr.fold_in(k, 0x0C4A1))(keys)
    words = jax.vmap(lambda k: jr.bits(k, (4,), jnp.uint32))(kstream)
    fn = _compiled(_structure_key(scenario), tuple(sorted(spec.items())), dtype, int(chunk),
                   int(n_test), eta_arr.ndim == 1)
    # the chain's state is (S, R), S the Schur complement (see _soa_step)
    S0 = schur_complement(op0.Q, op0.R, T)
    out = fn(scenario, jnp.asarray(S0, dtype), jnp.asarray(op0.R, dtype),
             jnp.asarray(LT, dtype), jnp.asarray(LTinv, dtype), words, kstream,
             jnp.asarray(eta_arr, dtype), jnp.asarray(float(N), dtype), jnp.asarray(nsteps))
    Q, R = out[0], out[1]
    eps_test = out[2] if n_test else None
    ftype = jnp.result_type(float)
    eg = _eps_g(scenario, OrderParams(Q=Q.astype(ftype), R=R.astype(ftype)))
    return SimResult(alpha=jnp.asarray(steps / N, ftype), steps=jnp.asarray(steps),
                     Q=Q, R=R, eps_g=eg, eps_test=eps_test, seeds=jnp.asarray(seed_list),
                     eta=jnp.asarray(eta_arr, ftype), N=int(N))
