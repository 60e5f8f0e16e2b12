"""Exact finite-N online SGD as a Markov chain of the overlaps, at a cost independent of N.

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
an exactly singular start stays exactly singular. S is carried by its upper triangle (symmetric
by construction). Measured accuracy over 10^8 steps: see `docs/finite_size.md`.

Random numbers (`rng="hash"`, default): a counter-based generator (murmur3 finaliser of (seed words,
step, index)), normals `sqrt(2) erfinv(2u - 1)` of 24-bit uniforms (as the weight-space
simulator's default), and the chi-square / Bartlett-Wishart diagonals as exact Marsaglia-Tsang
gamma variates (one candidate per variate; the rare rejected ones are redrawn by a compacted
fix-up loop). `rng="jax"` uses `jax.random.normal` and `jax.random.gamma` instead. A seed's run
does not depend on the chunking, the recording times or how many seeds are vmapped together.

Layout (for speed): all seeds advance together with the seeds on the last (minor) axis; the
draws of a chunk of steps are made at once in that layout, and the state is carried as one
vector over seeds per entry of S and R, so a step is a few fused vector loops over seeds.

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

from ._checks import sim_schedule
from ._model import OrderParams, Scenario, check_eta, check_order_params
from ._ode import eps_g
from ._solution import SimResult


__all__ = ["simulate_overlaps", "overlap_update", "overlap_factor"]

_UNROLL = 1  # steps per scan iteration (unrolling 2 or 4 measured 1.7x, 2.5x slower vmapped on CPU)


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
#
# All draws are made for every seed at once with the seeds on the last (minor) axis, so that the
# hashing and the transforms are vector loops over seeds, and the chain step reads them in place.


def _fmix(h):
    """murmur3 32-bit finaliser (a bijection of uint32 with full avalanche)."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _hash_at(words, t, idx, stream):
    """uint32 word, a pure function of (seed words, step t, index, stream), all broadcast together.

    `words`: 4 uint32 arrays (the seed's words); `t`, `idx`: integer arrays."""
    t = jnp.asarray(t).astype(jnp.uint32)
    a = _fmix(_fmix(t ^ words[0]) + words[1] + jnp.uint32(stream * 0x632BE5AB & 0xFFFFFFFF))
    b = _fmix(_fmix(t ^ words[2]) + words[3] + jnp.uint32(0x9E3779B9))
    return _fmix(_fmix(jnp.asarray(idx).astype(jnp.uint32) + a) ^ b)


def _hash_seeds(words, t, n, stream):
    """Words `(len(t), n, S)` for all seeds, `words` (4, S): seeds last."""
    w = [words[j][None, None, :] for j in range(4)]
    return _hash_at(w, jnp.asarray(t)[:, None, None], jnp.arange(n, dtype=jnp.uint32)[None, :, None],
                    stream)


def _to_uniform(h, dtype):
    """Uniforms in (0, 1) (24-bit, never 0 or 1), float32 cast to `dtype`."""
    return (((h >> 8).astype(jnp.float32) + np.float32(0.5)) * np.float32(2.0**-24)).astype(dtype)


def _to_normal(h, dtype):
    """Standard normals `sqrt(2) erfinv(2u - 1)` of 24-bit uniforms in float32 (as the
    weight-space simulator's default generator: |z| < 5.3), cast to `dtype`."""
    u = ((h >> 8).astype(jnp.float32) - np.float32(8388607.5)) * np.float32(2.0**-23)
    return (np.float32(math.sqrt(2.0)) * jax.scipy.special.erfinv(u)).astype(dtype)


def _normals(words, t, n, stream, dtype):
    """Normals `(len(t), n)` of one seed (`words` (4,))."""
    return _to_normal(_hash_at(words, jnp.asarray(t)[:, None], jnp.arange(n, dtype=jnp.uint32)[None, :],
                               stream), dtype)


A_TRACED_MIN = 50.0  # gamma shapes >= this may be traced (N a run-time number): series length fixed
_FIX = 8  # the fix-up loop redraws up to (number of variates) / _FIX rejected candidates per pass


def _mt_consts(a):
    """Marsaglia-Tsang constants `(d, c, nser)` for gamma shapes `a >= 1` (static NumPy array, or
    traced with every entry >= A_TRACED_MIN); `nser`: terms of the series form of the acceptance
    bracket, or None (logarithm form)."""
    if isinstance(a, jax.Array):
        dd = a - 1.0 / 3.0
        cc = 1.0 / jnp.sqrt(9.0 * dd)
        smax = 5.5 / math.sqrt(9.0 * (A_TRACED_MIN - 1.0 / 3.0))
    else:
        a = np.asarray(a, dtype=float)
        dd = a - 1.0 / 3.0
        cc = 1.0 / np.sqrt(9.0 * dd)
        smax = 5.5 * float(np.max(cc))  # |x| < 5.3 for the hash normals
    nser = None
    if smax < 0.3:
        # terms s^k / k, k = 4..nser, until smax^k / k < 1e-17 * smax^4 / 4
        nser = next(k for k in range(5, 60) if smax ** (k - 4) * 4.0 / k < 1e-17)
    return dd, cc, nser


def _mt_candidate(x, u, d, c, nser):
    """Marsaglia-Tsang: candidate `d (1 + s)^3`, `s = c x`, accepted iff
    `ln u < 3 d (log1p(s) - s + s^2/2 - s^3/3)`. For small |s| (large shape) the bracket is summed
    as its series (no float64 logarithm, which is slow on CPU), to float64 accuracy; `ln u` is
    taken in float32 (u is a 24-bit uniform)."""
    s = c * x
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


def _gamma_seeds(a, words, ts, stream, dtype):
    """Gamma(a_j) variates `(len(ts), len(a), S)`, seeds last, exact (Marsaglia-Tsang rejection).

    Candidate k of (step t, entry j, seed) is drawn from the seed's words xor f(k) at index j of
    streams `stream` (its normal) and `stream + 1` (its uniform); the variate is the first
    accepted candidate. Candidate 0 is drawn for all; the rejected ones (probability ~1/(36 a))
    are redrawn by a loop over at most 1/_FIX of the entries at a time (a compacted list, so
    the rare rejections at large shape cost little), which runs only when needed."""
    dd, cc, nser = _mt_consts(a)
    dd, cc = jnp.asarray(dd, dtype), jnp.asarray(cc, dtype)
    nb = dd.shape[0]

    def cand(k, w, t, j, d, c):
        kk = jnp.asarray(k).astype(jnp.uint32) * jnp.uint32(0x7FEB352D) + jnp.uint32(0x1B873593)
        wk = [wi ^ kk for wi in w]
        x = _to_normal(_hash_at(wk, t, j, stream), dtype)
        u = _to_uniform(_hash_at(wk, t, j, stream + 1), dtype)
        return _mt_candidate(x, u, d, c, nser)

    jj = jnp.arange(nb, dtype=jnp.uint32)
    g, ok = cand(0, [words[i][None, None, :] for i in range(4)], ts[:, None, None],
                 jj[None, :, None], dd[None, :, None], cc[None, :, None])
    shape, total = g.shape, g.size
    nfix = max(16, total // _FIX)

    def fix(st):
        g, ok = st

        def body(st):
            g, ok, att = st
            fi = jnp.nonzero(~ok.reshape(-1), size=nfix, fill_value=total)[0]
            valid = fi < total
            it, ib, isd = jnp.unravel_index(jnp.minimum(fi, total - 1), shape)
            gk, okk = cand(att.reshape(-1)[jnp.minimum(fi, total - 1)], [w[isd] for w in words],
                           ts[it], jj[ib], dd[ib], cc[ib])
            put = jnp.where(valid & okk, fi, total)  # out of range: dropped
            g = g.reshape(-1).at[put].set(gk, mode="drop").reshape(shape)
            ok = ok.reshape(-1).at[put].set(True, mode="drop").reshape(shape)
            att = att.reshape(-1).at[fi].add(1, mode="drop").reshape(shape)
            return g, ok, att

        att = jnp.ones(shape, jnp.uint32)  # next candidate of each rejected entry: 1
        g, ok, _ = jax.lax.while_loop(lambda st: ~jnp.all(st[1]), body, (g, ok, att))
        return g, ok

    g, _ = jax.lax.cond(jnp.all(ok), lambda st: st, fix, (g, ok))
    return g


def chi2_seeds(dofs, words, ts, stream, dtype):
    """chi^2 variates `(len(ts), B, S)` with dof `dofs[b]`: static ints (0, 1, 2 drawn directly),
    or a traced array whose entries are all >= 2 A_TRACED_MIN."""
    if isinstance(dofs, jax.Array):
        return 2.0 * _gamma_seeds(dofs.astype(dtype) / 2.0, words, ts, stream, dtype)
    flat = np.asarray(dofs, dtype=int).reshape(-1)
    res = [None] * len(flat)
    for i, f in enumerate(flat):
        if f == 0:
            res[i] = jnp.zeros((len(ts), words.shape[1]), dtype)
        elif f == 1:
            res[i] = _to_normal(_hash_seeds(words, ts, 1, stream + 1000 + i)[:, 0], dtype) ** 2
        elif f == 2:
            res[i] = -2.0 * jnp.log(_to_uniform(_hash_seeds(words, ts, 1, stream + 1000 + i)[:, 0],
                                                dtype))
    big = [i for i in range(len(flat)) if flat[i] >= 3]
    if big:
        g = 2.0 * _gamma_seeds(flat[big] / 2.0, words, ts, stream, dtype)
        for j, i in enumerate(big):
            res[i] = g[:, j]
    return jnp.stack(res, axis=1)


# ----------------------------------------------------------------------------- the chain


def _draws_jax(spec, words, key, ts, dtype, Nv):
    """`rng="jax"`: the draws of one seed (`jax.random`), seeds first (vmapped by the caller)."""
    K, M, N, Bsz = spec["K"], spec["M"], spec["N"], spec["batch"]
    n, direct, dofs = _orth_dofs(spec, Nv)
    L = K + M

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

    return jax.vmap(one)(ts)


def _orth_dofs(spec, Nv):
    """(n = N - K - M, draw the orthogonal Gram part directly?, Bartlett chi^2 dofs n - b)."""
    K, M, N, Bsz = spec["K"], spec["M"], spec["N"], spec["batch"]
    if N is None:  # N traced (large)
        n = Nv - (K + M)
        return n, False, n - jnp.arange(Bsz, dtype=Nv.dtype)
    n = N - K - M
    return n, n < Bsz, n - np.arange(Bsz)  # direct: the orthogonal part has rank n < B


def _draws(spec, words, keys, ts, dtype, Nv):
    """Per step, seeds last: z (n, B, M+K, S), the orthogonal Gram part Wo (n, B, B, S), teacher
    noise normals (n, B, S) (None without noise). `words` (4, S)."""
    K, M, Bsz = spec["K"], spec["M"], spec["batch"]
    L = K + M
    nt, S = len(ts), words.shape[1]
    n, direct, dofs = _orth_dofs(spec, Nv)
    if spec["rng"] == "hash":
        z = _to_normal(_hash_seeds(words, ts, Bsz * L, 0), dtype).reshape(nt, Bsz, L, S)
        zeta = _to_normal(_hash_seeds(words, ts, Bsz, 4), dtype) if spec["noise_on"] else None
        if direct:
            X = (_to_normal(_hash_seeds(words, ts, Bsz * n, 8), dtype).reshape(nt, Bsz, n, S)
                 if n else None)
        else:
            diag = chi2_seeds(dofs, words, ts, 12, dtype)
            off = (_to_normal(_hash_seeds(words, ts, Bsz * Bsz, 16), dtype).reshape(nt, Bsz, Bsz, S)
                   if Bsz > 1 else None)
    else:
        z, zeta, p, q = jax.vmap(lambda w, k: _draws_jax(spec, w, k, ts, dtype, Nv))(words.T, keys)
        z, zeta = jnp.moveaxis(z, 0, -1), jnp.moveaxis(zeta, 0, -1)
        zeta = zeta if spec["noise_on"] else None
        if direct:
            X = jnp.moveaxis(p, 0, -1) if n else None
        else:
            diag, off = jnp.moveaxis(p, 0, -1), jnp.moveaxis(q, 0, -1)
    if direct:
        Wo = jnp.zeros((nt, Bsz, Bsz, S), dtype) if X is None else jnp.einsum("tbks,tcks->tbcs", X, X)
    elif Bsz == 1:
        Wo = diag[:, :, None, :]
    else:
        # Bartlett: Wish = A A^T, A lower triangular, A_ii^2 ~ chi^2_{n-i}, A_ij ~ N(0, 1) (i > j)
        tri = jnp.asarray(np.tril(np.ones((Bsz, Bsz)), -1), dtype)[:, :, None]
        eye = jnp.eye(Bsz, dtype=dtype)[:, :, None]
        A = off * tri + jnp.sqrt(diag)[:, :, None, :] * eye
        Wo = jnp.einsum("tbks,tcks->tbcs", A, A)
    return z, Wo, zeta


def _flat_step(scenario, spec, Sf, Rf, LT, LTinv, zl, wo, zt, eta, Nv):
    """One step of every seed: each overlap entry is a vector over seeds ("structure of arrays",
    each entry its own array, so that XLA fuses the step into a few vector loops without
    re-stacking the state).

    The state is `(S, R)` with `S = Q - R T^{-1} R^T` the Schur complement (the students' part
    outside the teacher span), updated directly (no cancellation, so it keeps its *relative*
    accuracy as it goes to 0 at perfect learning): with `x_perp = L_S z_s` and `A = R L_T^{-T}`,

        S' = d^2 S + d c (x_perp^T Delta + Delta^T x_perp) + c^2 Delta^T (Z_s Z_s^T + Wo) Delta,

    which is `Q' - R' T^{-1} R'^T` of the Q update (`N G = Z_t Z_t^T + Z_s Z_s^T + Wo`, and
    `y T^{-1} R^T = z_t A^T`).

    `Sf`: the K(K+1)/2 entries `S_ik`, i <= k, row by row; `Rf`: the K M entries `R_in`; `zl`: M+K
    arrays (B, S) (teacher coordinates first); `wo` (B, B, S); `zt` (B, S) or None. For B = 1 the
    batch axis is dropped: `zl` (S,), `wo` (S,), `zt` (S,)."""
    K, M, Bsz = spec["K"], spec["M"], spec["batch"]
    N = Nv if spec["N"] is None else spec["N"]
    dtype = Sf[0].dtype
    v = scenario.v.astype(dtype)
    w = scenario.w.astype(dtype)
    bsum = (lambda a: a) if Bsz == 1 else (lambda a: jnp.sum(a, axis=0))
    Sm = [[None] * K for _ in range(K)]
    it = iter(Sf)
    for i in range(K):
        for k in range(i, K):
            Sm[i][k] = Sm[k][i] = next(it)
    R = [[Rf[i * M + n] for n in range(M)] for i in range(K)]
    # A = R L_T^{-T} (L_T^{-1} is lower triangular)
    A = [[sum(R[i][n] * LTinv[m, n] for n in range(m + 1)) for m in range(M)] for i in range(K)]
    LS = _psd_cholesky_lists(Sm, K)
    # the PSD projection of S that the step uses
    Sp = [[sum(LS[i][j] * LS[k][j] for j in range(min(i, k) + 1)) for k in range(K)] for i in range(K)]
    y = [sum(LT[m, n] * zl[n] for n in range(m + 1)) for m in range(M)]
    xp = [sum(LS[i][j] * zl[M + j] for j in range(i + 1)) for i in range(K)]
    x = [sum(A[i][m] * zl[m] for m in range(M)) + xp[i] for i in range(K)]
    tau = sum(w[m] * scenario.g_teacher(y[m]) for m in range(M))
    if zt is not None:
        tau = tau + scenario.noise.astype(dtype) * zt
    err = tau - sum(v[i] * scenario.g(x[i]) for i in range(K))
    delta = [v[i] * scenario.g.deriv(x[i]) * err for i in range(K)]
    c = eta / (N * Bsz)
    d = 1.0 - eta * scenario.weight_decay.astype(dtype) / N
    # Delta^T (Z_s Z_s^T + Wo) Delta: the Z_s part through p_il = sum_b delta_ib z_b,M+l
    p = [[bsum(delta[i] * zl[M + l]) for l in range(K)] for i in range(K)]
    if Bsz == 1:
        wd = [[wo * delta[i] * delta[k] for k in range(K)] for i in range(K)]
    else:
        wdel = [jnp.einsum("bcs,cs->bs", wo, delta[k]) for k in range(K)]
        wd = [[jnp.sum(delta[i] * wdel[k], axis=0) for k in range(K)] for i in range(K)]
    Sn = []
    for i in range(K):
        for k in range(i, K):
            xd = bsum(xp[i] * delta[k] + delta[i] * xp[k])
            dGd = sum(p[i][l] * p[k][l] for l in range(K)) + wd[i][k]
            Sn.append(d * d * Sp[i][k] + d * c * xd + (c * c) * dGd)
    Rn = [d * R[i][n] + c * bsum(delta[i] * y[n]) for i in range(K) for n in range(M)]
    return tuple(Sn), tuple(Rn)


def _flatten(S, R):
    """(K, K, S), (K, M, S) arrays -> the flat state of `_flat_step`."""
    K, M = R.shape[0], R.shape[1]
    return (tuple(S[i, k] for i in range(K) for k in range(i, K)),
            tuple(R[i, n] for i in range(K) for n in range(M)))


def _unflatten(Sf, Rf, K, M):
    Sm = [[None] * K for _ in range(K)]
    it = iter(Sf)
    for i in range(K):
        for k in range(i, K):
            Sm[i][k] = Sm[k][i] = next(it)
    S = jnp.stack([jnp.stack(row) for row in Sm])
    R = jnp.stack([jnp.stack(Rf[i * M:(i + 1) * M]) for i in range(K)])
    return S, R


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


def _chunk(scenario, spec, state, LT, LTinv, words, keys, t0, eta, Nv, n, mask_from):
    """`n` (static) steps of all seeds from global step t0; steps >= mask_from are no-ops.
    `state` the flat `(S, R)` of `_flat_step`, `words` (4, S)."""
    dtype = state[0][0].dtype
    ts = t0 + jnp.arange(n, dtype=jnp.int32)
    z, wo, zeta = _draws(spec, words, keys, ts, dtype, Nv)
    L = spec["K"] + spec["M"]
    if spec["batch"] == 1:  # drop the batch axis
        zs = tuple(z[:, 0, l] for l in range(L))
        wo = wo[:, 0, 0]
        zeta = None if zeta is None else zeta[:, 0]
    else:
        zs = tuple(z[:, :, l] for l in range(L))
    active = jnp.arange(n, dtype=jnp.int32) < mask_from

    def body(st, inp):
        zb, wb, zt, act = inp
        new = _flat_step(scenario, spec, st[0], st[1], LT, LTinv, zb, wb, zt, eta, Nv)
        return jax.tree_util.tree_map(lambda a, b: jnp.where(act, a, b), new, st), None

    state, _ = jax.lax.scan(body, state, (zs, wo, zeta, active), unroll=_UNROLL)
    return state


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
    K, M = spec["K"], spec["M"]

    def run_all(scenario, S0, R0, LT, LTinv, words, keys, eta, Nv, nsteps):
        nseed = words.shape[0]
        wT = words.T  # (4, S): seeds last
        if S0.ndim == 3:  # one start per seed
            S, R = jnp.moveaxis(S0, 0, -1), jnp.moveaxis(R0, 0, -1)
        else:
            S = jnp.broadcast_to(S0[:, :, None], S0.shape + (nseed,))
            R = jnp.broadcast_to(R0[:, :, None], R0.shape + (nseed,))

        def record(carry, inp):
            state, t = carry
            n_i, rec = inp

            def one_chunk(j, c):
                # every chunk masked (steps past n_i are no-ops): one copy of the step code
                state, t = c
                m = jnp.minimum(n_i - j * chunk, chunk)
                state = _chunk(scenario, spec, state, LT, LTinv, wT, keys, t, eta, Nv, chunk, m)
                return state, t + m

            state, t = jax.lax.fori_loop(0, (n_i + chunk - 1) // chunk, one_chunk, (state, t))
            S, R = _unflatten(*state, K, M)
            Qs, Rs = jnp.moveaxis(_q_from_schur(S, R, LTinv), -1, 0), jnp.moveaxis(R, -1, 0)
            out = (Qs, Rs)
            if n_test:
                out = out + (jax.vmap(lambda q, r, w, k: _test_error(
                    scenario, spec, q, r, LT, LTinv, w, k, rec, n_test, dtype))(Qs, Rs, words, keys),)
            return (state, t), out

        recs = jnp.arange(nsteps.shape[0], dtype=jnp.int32)
        _, out = jax.lax.scan(record, (_flatten(S, R), jnp.zeros((), jnp.int32)), (nsteps, recs))
        # (n_rec, S, ...) -> (S, n_rec, ...)
        return tuple(jnp.moveaxis(o, 0, 1) for o in out)

    def fn(scenario, S0, R0, LT, LTinv, words, keys, eta, Nv, nsteps):
        if eta_batched:
            return jax.vmap(run_all, in_axes=(None,) * 7 + (0, None, None))(
                scenario, S0, R0, LT, LTinv, words, keys, eta, Nv, nsteps)
        return run_all(scenario, S0, R0, LT, LTinv, words, keys, eta, Nv, nsteps)

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
    if chunk is not None and not (isinstance(chunk, (int, np.integer)) and chunk >= 1):
        raise ValueError(f"chunk must be a positive integer (steps per batch of draws), got {chunk!r}")
    if not (isinstance(n_test, (int, np.integer)) and n_test >= 0):
        raise ValueError(f"n_test must be an integer >= 0 (test inputs per recorded eps_test), "
                         f"got {n_test!r}")
    if chunk is None:
        # steps whose draws are made at once: 64, fewer for many seeds so that a chunk's draws
        # stay in cache (measured: 4096 seeds 1.3x faster at 8 than at 64)
        chunk = int(np.clip(16384 // len(seed_list), 8, 64))
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
    # the chain's state is (S, R), S the Schur complement (see _flat_step)
    S0 = schur_complement(op0.Q, op0.R, T)
    out = fn(scenario, jnp.asarray(S0, dtype), jnp.asarray(op0.R, dtype),
             jnp.asarray(LT, dtype), jnp.asarray(LTinv, dtype), words, kstream,
             jnp.asarray(eta_arr, dtype), jnp.asarray(float(N), dtype), jnp.asarray(nsteps))
    Q, R = out[0], out[1]
    eps_test = out[2] if n_test else None
    ftype = jnp.result_type(float)
    eg = eps_g(scenario, OrderParams(Q=Q.astype(ftype), R=R.astype(ftype)))
    return SimResult(alpha=jnp.asarray(steps / N, ftype), steps=jnp.asarray(steps),
                     Q=Q, R=R, eps_g=eg, eps_test=eps_test, seeds=jnp.asarray(seed_list),
                     eta=jnp.asarray(eta_arr, ftype), N=int(N))
