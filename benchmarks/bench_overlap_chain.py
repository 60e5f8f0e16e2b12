"""Exact finite-N SGD: the overlap chain (`simulate(method="overlaps")`) against two baselines
measured in the same run, float64: the weight-space simulator (`method="weights"`) and the
chain as it was before its speed-up (`benchmarks/_overlap_chain_v1.py`, the same draws).

K = M = 2 ReLU, eta = 1, paper 000's start. Reports SGD steps per second per seed (wall and
process CPU time: on a shared machine the CPU time is the honest per-core cost), for one seed and
for vmapped seeds (seed-steps/s), the chain's steps/s at N = 10^2, 10^4, 10^6 (independent of N),
and `rng="jax"` (threefry `jax.random`) against the default counter-hash generator.
Pinned to ONE core (sched_setaffinity + single-threaded XLA) unless --all-cores.

    python benchmarks/bench_overlap_chain.py [--all-cores] [--accuracy]

`--accuracy`: 10^8 steps at N = 10^6 (2 seeds) from just outside perfect learning (the chain
converges onto the singular C of perfect learning): smallest eigenvalue of C, |Q - T|, |R - T|,
eps_g along the way and its ratio to the ODE's (eta^2 term included), and the decay rate of
ln eps_g against the ODE's (a few minutes).
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _overlap_chain_v1 as v1  # noqa: E402

jd.enable_x64()

SC = jd.Scenario(K=2, M=2)
OP0 = jd.OrderParams(Q=jnp.diag(jnp.array([0.2, 0.3])), R=1e-3 * jnp.eye(2))


def rate(method, N, seeds, steps, **extra):
    """(steps/s per seed wall, per seed CPU, seed-steps/s wall, seed-steps/s CPU) of a warm run.
    method "weights", "overlaps" or "v1" (the chain before the speed-up)."""
    kw = dict(eta=1.0, N=N, seeds=seeds, dtype=jnp.float64, **extra)
    if method == "v1":
        f = v1.simulate_overlaps
    else:
        f, kw["method"] = jd.simulate, method
    al = jnp.array([0.0, steps / N])
    f(SC, OP0, **kw, alphas=al).Q.block_until_ready()  # compile
    w0, c0 = time.perf_counter(), time.process_time()
    f(SC, OP0, **kw, alphas=al).Q.block_until_ready()
    w, c = time.perf_counter() - w0, time.process_time() - c0
    return steps / w, steps / c, steps * seeds / w, steps * seeds / c


def main():
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, float64, "
          f"{'all cores' if ALL else 'one core'}")
    print("\nchain, one seed, steps/s (wall | CPU):")
    for N in (10**2, 10**4, 10**6):
        r = rate("overlaps", N, 1, 10**6)
        print(f"  N = {N:>8}: {r[0]:10.3g} | {r[1]:10.3g}")
    print("\nN = 10^4, steps/s per seed (wall | CPU):")
    rw1 = rate("weights", 10**4, 1, 4000)
    rc1 = rate("overlaps", 10**4, 1, 10**6)
    print(f"  1 seed : weights {rw1[0]:9.3g} | {rw1[1]:9.3g};  overlaps {rc1[0]:9.3g} | {rc1[1]:9.3g}"
          f";  ratio {rc1[0] / rw1[0]:.0f}x | {rc1[1] / rw1[1]:.0f}x")
    rw64 = rate("weights", 10**4, 64, 500)
    rc64 = rate("overlaps", 10**4, 64, 20_000)
    print(f"  64 seeds: weights {rw64[0]:9.3g} | {rw64[1]:9.3g};  overlaps {rc64[0]:9.3g} | {rc64[1]:9.3g}"
          f";  ratio {rc64[0] / rw64[0]:.0f}x | {rc64[1] / rw64[1]:.0f}x")
    print("\nchain, one seed, N = 10^4, before the speed-up (v1), steps/s (wall | CPU):")
    r1 = rate("v1", 10**4, 1, 10**6)
    print(f"  v1 {r1[0]:10.3g} | {r1[1]:10.3g};  ratio now / v1 {rc1[0] / r1[0]:.2f}x | {rc1[1] / r1[1]:.2f}x")
    print("\nchain, vmapped seeds, N = 10^4, seed-steps/s (wall | CPU); v1 = before the speed-up:")
    for S in (256, 1024, 4096):
        steps = 2 * 10**7 // S
        r, r1 = rate("overlaps", 10**4, S, steps), rate("v1", 10**4, S, steps)
        print(f"  {S:>5} seeds: now {r[2]:10.3g} | {r[3]:10.3g};  v1 {r1[2]:10.3g} | {r1[3]:10.3g}"
              f";  ratio {r[2] / r1[2]:.2f}x | {r[3] / r1[3]:.2f}x")
    # the speed-up keeps the draws: same seeds, same runs as v1 (to rounding)
    for N, sc in ((40, SC), (10**4, SC), (30, jd.Scenario(K=2, M=2, noise=0.4, weight_decay=0.3,
                                                           batch_size=3))):
        kw = dict(eta=0.8, N=N, alphas=[0.0, 0.7, 3.0], seeds=16, dtype=jnp.float64)
        a, b = jd.simulate_overlaps(sc, OP0, **kw), v1.simulate_overlaps(sc, OP0, **kw)
        d = max(float(jnp.max(jnp.abs(a.Q - b.Q))), float(jnp.max(jnp.abs(a.R - b.R))))
        print(f"   same seeds, N = {N}, batch {int(sc.batch_size)}: max |now - v1| over Q, R = {d:.1e}")
    r = rate("overlaps", 10**4, 1024, 10**4, rng="jax")
    print(f"   1024 seeds, rng='jax' (threefry): {r[2]:10.3g} | {r[3]:10.3g}")
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
    # the ODE at tight tolerances (at the defaults, rtol 1e-8 / atol 1e-10, its eps_g is wrong
    # below ~1e-9: it integrates (Q, R), whose S = Q - R T^-1 R^T is a cancellation)
    ode = jd.integrate(sc, op0, eta=1.0, alphas=al, rtol=1e-12, atol=1e-17)
    eg_ode = np.asarray(ode.eps_g)
    Qo, Ro = np.asarray(ode.Q), np.asarray(ode.R)
    S_ode = np.linalg.eigvalsh(Qo - Ro @ np.linalg.solve(np.asarray(T), np.swapaxes(Ro, -1, -2)))
    eg = np.asarray(sim.eps_g)
    C = np.asarray(jd.covariance(sc, jd.OrderParams(Q=Q, R=R)))
    ev = np.linalg.eigvalsh(C)
    dR = np.abs(R - np.asarray(T)).max(axis=(-2, -1))  # (seeds, alphas)
    for i, a in enumerate(np.asarray(sim.alpha)):
        print(f"  alpha {a:6.1f}: min eig C {ev[:, i, 0].min():+.2e}, |Q-T| {np.abs(Q[:, i] - T).max():.2e}, "
              f"|R-T| {dR[:, i].max():.2e}, eps_g {eg[0, i]:.3e} {eg[1, i]:.3e} "
              f"(ODE {eg_ode[i]:.3e}, its min eig S {S_ode[i, 0]:+.1e}; "
              f"ratio {eg[0, i] / eg_ode[i]:.4f} {eg[1, i] / eg_ode[i]:.4f})")
    # local decay rates -d ln(.) / d alpha over each interval of 10
    r = lambda y: -np.diff(np.log(y), axis=-1) / 10.0  # noqa: E731
    print("  -d ln eps_g / d alpha per interval of 10, chain seed 0 | seed 1 | ODE:")
    print("   ", " ".join(f"{x:.4f}" for x in r(eg[0])))
    print("   ", " ".join(f"{x:.4f}" for x in r(eg[1])))
    print("   ", " ".join(f"{x:.4f}" for x in r(np.abs(eg_ode))))
    print("  -d ln |R - T| / d alpha, chain seed 0:", " ".join(f"{x:.4f}" for x in r(dR[0])))


if __name__ == "__main__":
    main()
