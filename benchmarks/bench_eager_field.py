"""Eager calls of the public vector field: one compiled program against its operations one by one.

`jaxdyn.vector_field`, `readout_field`, `eps_g` and the flat-coordinate field of the fixed-point
code (and so an eager `jax.jacfwd` of it) go through one `jit`. Before (the baseline measured
here, in the same run), an eager call ran `OrderParamODE.field` operation by operation: every
operation is dispatched on its own and, the first time it meets a shape, compiled on its own. For
each scenario this prints, after `jax.clear_caches()`, the first call (compilation included) and
the median of later calls with new values of the order parameters and eta, for the baseline and
for the public function, and the largest difference of their results.

    python benchmarks/bench_eager_field.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxdyn as jd  # noqa: E402
from jaxdyn._fixed_points import flat_field, flatten_op  # noqa: E402


def _state(K, M, s):
    Q = (0.5 + 0.01 * s) * jnp.eye(K) + 0.1
    R = (0.3 + 0.01 * s) * jnp.eye(K, M) + 0.05
    return jd.OrderParams(Q=Q, R=R)


def _time(fn, K, M, repeat):
    jax.clear_caches()
    t0 = time.perf_counter()
    first = jax.block_until_ready(fn(_state(K, M, 0), 0.5))
    t_first = time.perf_counter() - t0
    ts = []
    for s in range(1, repeat + 1):
        t = time.perf_counter()
        jax.block_until_ready(fn(_state(K, M, s), 0.5 + 0.001 * s))
        ts.append(time.perf_counter() - t)
    return t_first, float(np.median(ts)), first


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    # the Hermite case is timed at states outside its trusted region; accuracy is not the point here
    warnings.filterwarnings("ignore", category=jd.HermiteConvergenceWarning)
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"jax {jax.__version__}; float64\n")
    cases = [
        ("ReLU K=M=2, exact I4", jd.Scenario(K=2, M=2), "exact"),
        ("erf K=M=3, closed forms", jd.Scenario(K=3, M=3, g=jd.Erf()), "exact"),
        ("ReLU K=M=2, Hermite I4 order 6", jd.Scenario(K=2, M=2), "hermite"),
    ]
    print("| scenario | call | op by op: first s | one program: first s | op by op: later ms "
          "| one program: later ms | max abs difference |")
    print("|---|---|---|---|---|---|---|")
    for label, sc, i4 in cases:
        ode = jd.OrderParamODE(sc, i4=jd.HermiteI4(6) if i4 == "hermite" else jd.ExactI4())
        K, M = sc.K, sc.M
        calls = {
            "vector_field": (lambda op, e: ode.field(op, jnp.asarray(e)),
                             lambda op, e: jd.vector_field(sc, op, e, i4=i4, order=6)),
            "jacfwd(flat_field)": (
                lambda op, e: jax.jacfwd(lambda x: flatten_op(
                    ode.field(jd.unflatten_op(x, K, M), jnp.asarray(e))))(flatten_op(op)),
                lambda op, e: jax.jacfwd(lambda x: flat_field(ode, x, e))(flatten_op(op))),
        }
        for name, (base, new) in calls.items():
            b1, bl, rb = _time(base, K, M, args.repeat)
            n1, nl, rn = _time(new, K, M, args.repeat)
            diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                       zip(jax.tree.leaves(rb), jax.tree.leaves(rn)))
            print(f"| {label} | {name} | {b1:.2f} | {n1:.2f} | {1e3 * bl:.1f} | {1e3 * nl:.2f} "
                  f"| {diff:.1e} |")


if __name__ == "__main__":
    main()
