"""Exact finite-N SGD: the overlap chain (`simulate(method="overlaps")`) against the weight-space
simulator (`method="weights"`, the baseline), measured in the same run, float64.

K = M = 2 ReLU, eta = 1, paper 000's start. Reports SGD steps per second per seed (wall and
process CPU time: on a shared machine the CPU time is the honest per-core cost), for one seed and
for vmapped seeds, and the chain's steps/s at N = 10^2, 10^4, 10^6 (independent of N).
Pinned to ONE core (sched_setaffinity + single-threaded XLA) unless --all-cores.

    python benchmarks/bench_overlap_chain.py [--all-cores] [--accuracy]

`--accuracy`: 10^8 steps at N = 10^6 (2 seeds) from just outside perfect learning (the chain
converges onto the singular C of perfect learning): smallest eigenvalue of C, |Q - T|, |R - T| and
eps_g along the way (several minutes).
"""

import os
import sys

ALL = "--all-cores" in sys.argv
ACC = "--accuracy" in sys.argv
if not ALL:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = "1"
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass

import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxdyn as jd

jd.enable_x64()

SC = jd.Scenario(K=2, M=2)
OP0 = jd.OrderParams(Q=jnp.diag(jnp.array([0.2, 0.3])), R=1e-3 * jnp.eye(2))


def rate(method, N, seeds, steps):
    """(steps/s per seed wall, per seed CPU, seed-steps/s wall, seed-steps/s CPU) of a warm run."""
    kw = dict(eta=1.0, N=N, seeds=seeds, method=method, dtype=jnp.float64)
    al = jnp.array([0.0, steps / N])
    jd.simulate(SC, OP0, **kw, alphas=al).Q.block_until_ready()  # compile
    w0, c0 = time.perf_counter(), time.process_time()
    jd.simulate(SC, OP0, **kw, alphas=al).Q.block_until_ready()
    w, c = time.perf_counter() - w0, time.process_time() - c0
    return steps / w, steps / c, steps * seeds / w, steps * seeds / c


def main():
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, float64, "
          f"{'all cores' if ALL else 'one core'}")
    print("\nchain, one seed, steps/s (wall | CPU):")
    for N in (10**2, 10**4, 10**6):
        r = rate("overlaps", N, 1, 200_000)
        print(f"  N = {N:>8}: {r[0]:10.3g} | {r[1]:10.3g}")
    print("\nN = 10^4, steps/s per seed (wall | CPU):")
    rw1 = rate("weights", 10**4, 1, 4000)
    rc1 = rate("overlaps", 10**4, 1, 200_000)
    print(f"  1 seed : weights {rw1[0]:9.3g} | {rw1[1]:9.3g};  overlaps {rc1[0]:9.3g} | {rc1[1]:9.3g}"
          f";  ratio {rc1[0] / rw1[0]:.0f}x | {rc1[1] / rw1[1]:.0f}x")
    rw64 = rate("weights", 10**4, 64, 500)
    rc64 = rate("overlaps", 10**4, 64, 20_000)
    print(f"  64 seeds: weights {rw64[0]:9.3g} | {rw64[1]:9.3g};  overlaps {rc64[0]:9.3g} | {rc64[1]:9.3g}"
          f";  ratio {rc64[0] / rw64[0]:.0f}x | {rc64[1] / rw64[1]:.0f}x")
    print("\nchain, vmapped seeds, N = 10^4, seed-steps/s (wall | CPU):")
    for S in (256, 4096):
        r = rate("overlaps", 10**4, S, 4000 if S > 1000 else 20_000)
        print(f"  {S:>5} seeds: {r[2]:10.3g} | {r[3]:10.3g}")
    if ACC:
        accuracy()


def accuracy():
    T = jnp.array([[1.0, 0.3], [0.3, 2.0]])
    sc = jd.Scenario(K=2, M=2, T=T)
    op0 = jd.OrderParams(Q=0.999**2 * T + 1e-4 * jnp.eye(2), R=0.999 * T)
    N = 10**6
    al = jnp.linspace(0.0, 100.0, 11)
    w0, c0 = time.perf_counter(), time.process_time()
    sim = jd.simulate(sc, op0, eta=1.0, N=N, alphas=al, seeds=2, method="overlaps",
                      dtype=jnp.float64)
    Q, R = np.asarray(sim.Q), np.asarray(sim.R)
    print(f"\naccuracy: 10^8 steps at N = 10^6, 2 seeds ({time.perf_counter() - w0:.0f} s wall, "
          f"{time.process_time() - c0:.0f} s CPU)")
    C = np.asarray(jd.covariance(sc, jd.OrderParams(Q=Q, R=R)))
    ev = np.linalg.eigvalsh(C)
    for i, a in enumerate(np.asarray(sim.alpha)):
        print(f"  alpha {a:6.1f}: min eig C {ev[:, i, 0].min():+.2e}, |Q-T| {np.abs(Q[:, i] - T).max():.2e}, "
              f"|R-T| {np.abs(R[:, i] - T).max():.2e}, eps_g {np.asarray(sim.eps_g)[:, i].max():.2e}")


if __name__ == "__main__":
    main()
