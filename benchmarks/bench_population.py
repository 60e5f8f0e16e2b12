"""Paper 003 engine timings: the analytic population gradient at K = M = 100, d = 1000, and a
vmapped batch of 10^4 gradient-flow runs (K = M = 2, d = 10), each against a NumPy/SciPy
implementation of the same formulas measured in the same run.

    EQX_ON_ERROR=nan python benchmarks/bench_population.py [--runs 10000]
"""

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import diffrax
import numpy as np
from scipy.integrate import solve_ivp

import jaxdyn as jd


def np_gradient(W, Wt, v, u):
    """Theorem 1 with NumPy (cosines from matrix products, like angles="gram")."""
    def sums(W_hat, V, c):
        Vn = np.linalg.norm(V, axis=1)
        cos = np.clip(W_hat @ (V / Vn[:, None]).T, -1, 1)
        th = np.arccos(cos)
        return ((np.pi - th) @ (c[:, None] * V) + (np.sin(th) @ (c * Vn))[:, None] * W_hat) / (2 * np.pi)

    Wn = np.linalg.norm(W, axis=1)
    W_hat = W / Wn[:, None]
    return v[:, None] * (sums(W_hat, W, v) - sums(W_hat, Wt, u))


def best(f, n=100):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        jax.block_until_ready(f())
        ts.append(time.perf_counter() - t)
    return min(ts), float(np.median(ts))


def bench_gradient():
    rng = np.random.default_rng(0)
    K = M = 100
    d = 1000
    W = rng.normal(size=(K, d)) / np.sqrt(d)
    Wt = rng.normal(size=(M, d)) / np.sqrt(d)
    v, u = np.ones(K), np.ones(M)
    Wj, Wtj = jnp.asarray(W), jnp.asarray(Wt)
    out = {}
    for angles in ("auto", "gram", "stable"):
        f = jax.jit(lambda W, Wt, a=angles: jd.population_gradient(W, Wt, angles=a))
        t0 = time.perf_counter()
        g = jax.block_until_ready(f(Wj, Wtj))
        comp = time.perf_counter() - t0
        out[angles] = (best(lambda: f(Wj, Wtj)), comp, g)
    tnp = best(lambda: np_gradient(W, Wt, v, u))
    gref = np_gradient(W, Wt, v, u)
    print(f"population gradient K=M={K}, d={d}")
    for a, ((tb, tm), comp, g) in out.items():
        print(f"  jaxdyn angles={a:6s}: best {tb * 1e3:7.2f} ms, median {tm * 1e3:7.2f} ms "
              f"(compile+first {comp:.2f} s); max |diff| to NumPy {np.max(np.abs(np.asarray(g) - gref)):.1e}")
    print(f"  NumPy baseline      : best {tnp[0] * 1e3:7.2f} ms, median {tnp[1] * 1e3:7.2f} ms; "
          f"ratio (auto) {tnp[0] / out['auto'][0][0]:.1f}x")


def bench_flows(runs):
    K = M = 2
    d = 10
    t_end = 100.0
    Wt = jnp.eye(M, d)
    W0 = jax.random.normal(jax.random.PRNGKey(0), (runs, K, d)) * 0.1
    times = jnp.array([0.0, t_end])
    def one(W):
        return jd.gradient_flow(W, Wt, times=times, rtol=1e-8, atol=1e-10, solver=diffrax.Tsit5())

    # vmapped in batches of 1000 (lax.map): 2.7x faster here than one vmap over all 10^4 runs
    # (every vmapped adaptive step costs as much as the batch's slowest member, and the working set
    # of one batch stays in cache)
    f = jax.jit(lambda W0: jax.lax.map(one, W0, batch_size=min(1000, runs)))
    t0 = time.perf_counter()
    tr = jax.block_until_ready(f(W0))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    tr = jax.block_until_ready(f(W0))
    wall = time.perf_counter() - t0
    ok = float(jnp.mean(tr.ok))
    conv = float(jnp.mean(tr.loss[:, -1] < 1e-8))
    print(f"{runs} gradient flows (vmapped in batches of 1000) K=M=2, d={d}, t = 0..{t_end:g} (Tsit5, rtol 1e-8, atol 1e-10): "
          f"{wall:.2f} s (compile+first {first:.2f} s); max steps {int(jnp.max(tr.num_steps))}, "
          f"ok {ok:.3f}, converged (L < 1e-8) {conv:.4f}")
    # SciPy baseline: RK45 (Dormand-Prince 5(4), like Tsit5) on the NumPy gradient, sequential,
    # same tolerances, a subset
    n_b = 20
    Wtn = np.asarray(Wt)
    one, two = np.ones(K), np.ones(M)
    t0 = time.perf_counter()
    for i in range(n_b):
        sol = solve_ivp(lambda t, y: -np_gradient(y.reshape(K, d), Wtn, one, two).ravel(), (0, t_end),
                        np.asarray(W0[i]).ravel(), method="RK45", rtol=1e-8, atol=1e-10)
    per = (time.perf_counter() - t0) / n_b
    err = np.max(np.abs(sol.y[:, -1].reshape(K, d) - np.asarray(tr.W[n_b - 1, -1])))
    print(f"  SciPy RK45 sequential: {per * 1e3:.1f} ms per run -> {per * runs:.1f} s for {runs} "
          f"(extrapolated from {n_b}); ratio {per * runs / wall:.1f}x; last-run |diff| {err:.1e}")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=10_000)
    a = p.parse_args()
    print(jax.__version__, jax.devices())
    bench_gradient()
    bench_flows(a.runs)
