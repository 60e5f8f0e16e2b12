"""Gradient of a learning-curve objective with respect to a 64-piece learning-rate schedule:
ReLU K = M = 2, T = diag(1, 2), exact I4, full eta^2 ODE to alpha = 100 (issue 13 target: < 2 s
after compilation on 2 cores), and a full optimisation (target: < 5 minutes): the 1-D search for
the best constant eta, then 80 Adam steps warm-started from it, compilation included.

Baselines measured in the same run: central finite differences (2 x 64 forward solves, the
derivative-free alternative; timed as 128 x one forward solve) and forward mode (`jax.jacfwd`
with `diffrax.ForwardMode`, 64 tangents).

    PYTHONPATH=. python benchmarks/bench_protocols.py [--no-opt | --opt-only]
"""

import os
import sys
import time

os.environ.setdefault("EQX_ON_ERROR", "nan")

import jax
import jax.numpy as jnp
import numpy as np

import jaxdyn as jd

jd.enable_x64()


def best_of(fn, n=3):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t)
    return min(ts)


def main():
    from jaxdyn.figures.protocols import relu_setting

    if "--opt-only" in sys.argv:
        return optimisation()
    sc, op0 = relu_setting()
    obj = jd.FinalError(alpha_F=100.0)
    edges = jnp.linspace(0.0, 100.0, 65)
    rng = np.random.default_rng(0)
    s = jd.PiecewiseConstant.on_grid(jnp.asarray(0.9 + 0.2 * rng.random(64)), edges, eta_max=2.0)

    t = time.perf_counter()
    jax.block_until_ready(jd.schedule_gradient(sc, op0, s, objective=obj))
    t_compile = time.perf_counter() - t
    t_rev = best_of(lambda: jd.schedule_gradient(sc, op0, s, objective=obj))
    r = jd.evaluate_schedule(sc, op0, s, objective=obj)
    t_fwd_solve = best_of(lambda: jd.evaluate_schedule(sc, op0, s, objective=obj).value)
    t = time.perf_counter()
    jax.block_until_ready(jd.schedule_gradient(sc, op0, s, objective=obj, mode="forward"))
    t_jf_compile = time.perf_counter() - t
    t_jf = best_of(lambda: jd.schedule_gradient(sc, op0, s, objective=obj, mode="forward"), n=1)
    print(f"64-piece ReLU K=M=2 exact I4, ln eps_g(100) = {float(r.value):.4f}, "
          f"{int(r.num_steps)} solver steps)")
    print(f"  reverse-mode gradient: {t_rev:.3f} s (compile + first {t_compile:.1f} s)")
    print(f"  one forward solve: {t_fwd_solve * 1e3:.1f} ms; central FD (128 solves): "
          f"{128 * t_fwd_solve:.2f} s -> reverse is {128 * t_fwd_solve / t_rev:.1f}x faster")
    print(f"  forward mode (jacfwd, 64 tangents): {t_jf:.3f} s (compile + first {t_jf_compile:.1f} s)"
          f" -> reverse is {t_jf / t_rev:.1f}x faster")
    if "--no-opt" not in sys.argv:
        optimisation()


def optimisation():
    from jaxdyn.figures.protocols import relu_study

    t, c = time.perf_counter(), time.process_time()
    # 80 warm-started Adam steps: the 150-step run of `jaxdyn reproduce protocols-relu` is within
    # 0.002 (in alpha) of its optimum after 80 (its history)
    st = relu_study(progress=False, steps=80)
    t_opt, c_opt = time.perf_counter() - t, time.process_time() - c
    print(f"full optimisation (best constant by 1-D search + {st['res'].history.shape[0]} Adam steps,"
          f" 64 pieces, incl. compilation): {t_opt:.1f} s wall, {c_opt:.1f} s process CPU; "
          f"alpha to eps_g=1e-3: {float(st['res'].value):.3f} vs {st['value_const']:.3f} at the "
          f"best constant eta {st['eta_const']:.4f}")
    os.system("uptime")


if __name__ == "__main__":
    main()
