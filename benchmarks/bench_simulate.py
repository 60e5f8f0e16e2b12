"""SGD simulation throughput: jaxdyn.simulate vs a plain NumPy loop, measured in the same run.

K = M = 2, erf units (as the C++ reference nn2pp), eta = 0.5, one fresh example per step.
Reports SGD steps per second per seed and weight updates per second (steps/s x seeds x K x N),
for N = 1000 and 10^4, one seed and 64 vmapped seeds, float32 and float64. Pinned to ONE core
(sched_setaffinity + single-threaded XLA/BLAS) unless --all-cores.

    python benchmarks/bench_simulate.py [--all-cores] [--quick]
"""

import os
import sys

ALL = "--all-cores" in sys.argv
QUICK = "--quick" in sys.argv
if not ALL:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = "1"
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass

import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import erf

import jaxdyn as jd

jd.enable_x64()

NN2PP = {1000: 24.2e3, 10_000: 2.49e3}  # C++ reference, steps/s, one core, erf, K=M=2


def numpy_loop(N, steps, seed=0, dtype=np.float64):
    """The straightforward per-step loop (what a NumPy user writes)."""
    rng = np.random.default_rng(seed)
    K = M = 2
    B = rng.standard_normal((M, N)).astype(dtype)
    J = (0.3 * rng.standard_normal((K, N))).astype(dtype)
    eta, sq = 0.5, 1.0 / np.sqrt(N)
    c = np.sqrt(2.0 / np.pi)
    t0 = time.perf_counter()
    for _ in range(steps):
        xi = rng.standard_normal(N).astype(dtype, copy=False)
        x = J @ xi * sq
        y = B @ xi * sq
        err = erf(y / np.sqrt(2)).sum() - erf(x / np.sqrt(2)).sum()
        delta = c * np.exp(-0.5 * x * x) * err
        J += (eta * sq) * np.outer(delta, xi)
    return steps / (time.perf_counter() - t0)


def jaxdyn_rate(N, seeds, dtype, steps):
    sc = jd.Scenario(K=2, M=2, g=jd.Erf())
    op0 = jd.OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=1e-3 * jnp.eye(2))
    kw = dict(eta=0.5, N=N, seeds=seeds, dtype=dtype)
    t0 = time.perf_counter()
    jax.block_until_ready(jd.simulate(sc, op0, alphas=[0.0, 64 / N], **kw).Q)  # compile
    tc = time.perf_counter() - t0
    best = np.inf
    for _ in range(2):
        t0 = time.perf_counter()
        r = jd.simulate(sc, op0, alphas=np.array([0.0, steps / 2, steps]) / N, **kw)
        jax.block_until_ready(r.Q)
        best = min(best, time.perf_counter() - t0)
    return steps / best, tc


def main():
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((l.split(":", 1)[1].strip() for l in cpu.splitlines() if l.startswith("Model name")), "?")
    print(f"machine: {model}, {os.cpu_count()} cpus; pinned to one core: {not ALL}; "
          f"jax {jax.__version__} on {jax.devices()[0].platform}")
    print(f"load average: {os.getloadavg()}")
    rows = []
    for N in (1000, 10_000):
        np_steps = (20_000 if N == 1000 else 5_000) // (4 if QUICK else 1)
        npr = numpy_loop(N, np_steps)
        print(f"N={N}: NumPy loop (float64) {npr:,.0f} steps/s; nn2pp (C++, quoted) {NN2PP[N]:,.0f}")
        for seeds in (1, 64):
            for dtype in (jnp.float32, jnp.float64):
                steps = (400_000 if N == 1000 else 60_000) // (seeds if seeds > 1 else 1)
                steps = max(steps // (4 if QUICK else 1), 200)
                rate, tc = jaxdyn_rate(N, seeds, dtype, steps)
                wu = rate * seeds * 2 * N
                rows.append((N, seeds, jnp.dtype(dtype).name, rate, wu, rate * seeds / npr,
                             rate / NN2PP[N], tc))
                print(f"  jaxdyn seeds={seeds:3d} {jnp.dtype(dtype).name}: {rate:,.0f} steps/s per "
                      f"seed, {rate * seeds:,.0f} seed-steps/s, {wu:.3g} weight updates/s, "
                      f"{rate * seeds / npr:.1f}x NumPy, {rate / NN2PP[N]:.2f}x nn2pp per seed, "
                      f"{rate * seeds / NN2PP[N]:.1f}x nn2pp total (compile {tc:.1f} s)", flush=True)
    print("\n| N | seeds | dtype | steps/s per seed | seed-steps/s | weight updates/s | vs NumPy loop | vs nn2pp (per seed) |")
    print("|---|---|---|---|---|---|---|---|")
    for N, s, d, r, wu, xn, xc, _ in rows:
        print(f"| {N} | {s} | {d} | {r:,.0f} | {r * s:,.0f} | {wu:.3g} | {xn:.1f}x | {xc:.2f}x |")


if __name__ == "__main__":
    main()
