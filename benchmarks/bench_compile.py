"""Compile time of the ReLU exact-I4 field, before and after issue 10's layout change.

The unit and pair indices of the n-unit moments were unrolled Python loops (a dict of correlations
per class); they are now leading array axes. This measures, in one run, for the current
`relu_i4_terms` and the previous one (`benchmarks/_relu_moments_v2.py`, jaxdyn at ba248e5,
swapped into `jaxdyn._ode`): the traced size (jaxpr equations), tracing + lowering and XLA
compile time of `jit(jacfwd(field))` for paper 001's K = M = 2 ReLU scenario (the program inside
every fixed-point, continuation and threshold solve), and the run time of the K = M = 10 field.

    python benchmarks/bench_compile.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxdyn as jd  # noqa: E402
import jaxdyn._ode as ode_module  # noqa: E402
from jaxdyn._fixed_points import flat_field, flatten_op  # noqa: E402

HERE = pathlib.Path(__file__).parent


def _load(name):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _n_eqns(jaxpr):
    n = 0
    for e in jaxpr.eqns:
        n += 1
        for p in e.params.values():
            for sub in (p if isinstance(p, (tuple, list)) else [p]):
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    n += _n_eqns(getattr(inner, "jaxpr", inner))
    return n


def jacobian_compile(K):
    sc, op0 = jd.papers.paper001() if K == 2 else (jd.Scenario(K=K, M=K), None)
    if op0 is None:
        op0 = jd.OrderParams(Q=0.5 * jnp.eye(K) + 0.1, R=0.3 * jnp.eye(K) + 0.05)
    ode = jd.OrderParamODE(sc)
    x = flatten_op(op0)
    jac = jax.jacfwd(lambda y, e: flat_field(ode, y, e))
    n = _n_eqns(jax.make_jaxpr(jac)(x, 1.0).jaxpr)
    t0 = time.perf_counter()
    low = jax.jit(jac).lower(x, jnp.asarray(1.0))
    t1 = time.perf_counter()
    comp = low.compile()
    t2 = time.perf_counter()
    J = np.asarray(comp(x, jnp.asarray(1.0)))
    return {"eqns": n, "trace_lower_s": t1 - t0, "compile_s": t2 - t1, "J": J}


def field_runtime(K, repeat=50):
    sc = jd.Scenario(K=K, M=K)
    op = jd.OrderParams(Q=0.5 * jnp.eye(K) + 0.1, R=0.3 * jnp.eye(K) + 0.05)
    f = jax.jit(lambda op, e: jd.vector_field(sc, op, e))
    t0 = time.perf_counter()
    jax.block_until_ready(f(op, 0.3))
    first = time.perf_counter() - t0
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        jax.block_until_ready(f(op, 0.3))
        ts.append(time.perf_counter() - t)
    return {"first_s": first, "ms": 1e3 * float(np.median(ts))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3, help="compile measurements per variant")
    ap.add_argument("--K-field", type=int, default=10)
    args = ap.parse_args()
    v2 = _load("_relu_moments_v2")
    variants = {"now": ode_module.relu_i4_terms, "before (v2)": v2.relu_i4_terms}
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"jax {jax.__version__}")
    res = {}
    saved = ode_module.relu_i4_terms
    try:
        for _ in range(args.repeat):  # interleaved, so that load changes hit both alike
            for name, fn in variants.items():
                ode_module.relu_i4_terms = fn
                jax.clear_caches()
                r = jacobian_compile(2)
                res.setdefault(name, []).append(r)
        fr = {}
        for name, fn in variants.items():
            ode_module.relu_i4_terms = fn
            jax.clear_caches()
            fr[name] = field_runtime(args.K_field)
    finally:
        ode_module.relu_i4_terms = saved
    dJ = np.max(np.abs(res["now"][0]["J"] - res["before (v2)"][0]["J"]))
    print("\njit(jacfwd(field)), paper 001 K = M = 2 ReLU, exact I4 with the eta^2 term "
          f"(median of {args.repeat}; max |J_now - J_before| = {dJ:.1e})\n")
    print(f"| variant | jaxpr eqns | trace + lower s | XLA compile s | K = {args.K_field} field ms "
          "| K = 10 field first call s |")
    print("|---|---|---|---|---|---|")
    for name in variants:
        rs = res[name]
        med = lambda k: float(np.median([r[k] for r in rs]))
        print(f"| {name} | {rs[0]['eqns']} | {med('trace_lower_s'):.2f} | {med('compile_s'):.2f} "
              f"| {fr[name]['ms']:.2f} | {fr[name]['first_s']:.1f} |")
    a, b = res["now"], res["before (v2)"]
    ratio = np.median([r["compile_s"] for r in b]) / np.median([r["compile_s"] for r in a])
    print(f"\ncompile before / now = {ratio:.2f}x; field run time now / before = "
          f"{fr['now']['ms'] / fr['before (v2)']['ms']:.2f}")


if __name__ == "__main__":
    main()
