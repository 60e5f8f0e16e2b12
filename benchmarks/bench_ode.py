"""Benchmark: one full-eta^2 order-parameter trajectory and the vector field, jaxdyn vs NumPy/SciPy.

Baselines written for this benchmark and measured in the same run, for the same equations
(erf(x/sqrt 2) soft committee machine, closed-form I3/I4 of docs/conventions.md, Gaussian averages, eta^2 term on):
  - "numpy-loop": the straightforward code of the field, Python loops over (i, k, a, b) calling
    scalar closed forms, integrated with scipy.integrate.solve_ivp (RK45) at the same rtol/atol;
  - "numpy-vec":  the same equations vectorised with NumPy index arrays (as jaxdyn does), same solver.
jaxdyn: jit-compiled vector field, diffrax Tsit5 + PID controller, float64. Compile time is
reported separately (first call minus a warm call).

Also: K=M=10 erf to alpha=1e4 at rtol=1e-8 (the issue's target: < 5 s CPU time; the C++ reference
nn2pp with fixed-step Euler dt=0.01 was measured at ~6 minutes on this kind of machine), and the
ReLU K=M=2 trajectory of paper 001 with the exact I4.

Run:  python benchmarks/bench_ode.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time

os.environ.setdefault("EQX_ON_ERROR", "nan")  # no host callbacks in the timed loops

import jax


jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
from scipy.integrate import solve_ivp

import jaxdyn as jd


# ----------------------------------------------------------------------------- NumPy baselines
def _erf_i3(C):
    c11, c12, c13, c23, c33 = C[0, 0], C[0, 1], C[0, 2], C[1, 2], C[2, 2]
    L3 = (1 + c11) * (1 + c33) - c13**2
    return (2 / np.pi) * (c23 * (1 + c11) - c12 * c13) / ((1 + c11) * np.sqrt(L3))


def _erf_i4(C):
    c11, c22, c33, c44 = C[0, 0], C[1, 1], C[2, 2], C[3, 3]
    c12, c13, c14, c23, c24, c34 = C[0, 1], C[0, 2], C[0, 3], C[1, 2], C[1, 3], C[2, 3]
    L4 = (1 + c11) * (1 + c22) - c12**2
    L0 = L4 * c34 - c23 * c24 * (1 + c11) - c13 * c14 * (1 + c22) + c12 * c13 * c24 + c12 * c14 * c23
    L1 = L4 * (1 + c33) - c23**2 * (1 + c11) - c13**2 * (1 + c22) + 2 * c12 * c13 * c23
    L2 = L4 * (1 + c44) - c24**2 * (1 + c11) - c14**2 * (1 + c22) + 2 * c12 * c14 * c24
    return (4 / np.pi**2) * np.arcsin(L0 / np.sqrt(L1 * L2)) / np.sqrt(L4)


def numpy_loop_field(K, M, T, eta):
    L = K + M
    u = np.concatenate([-np.ones(K), np.ones(M)])

    def f(t, y):
        Q = y[: K * K].reshape(K, K)
        R = y[K * K :].reshape(K, M)
        C = np.block([[Q, R], [R.T, T]])
        dQ = np.zeros((K, K))
        dR = np.zeros((K, M))
        for i in range(K):
            for n in range(M):
                s = 0.0
                for a in range(L):
                    s += u[a] * _erf_i3(C[np.ix_([i, K + n, a], [i, K + n, a])])
                dR[i, n] = eta * s
        for i in range(K):
            for k in range(i, K):
                s1 = 0.0
                for a in range(L):
                    s1 += u[a] * (_erf_i3(C[np.ix_([i, k, a], [i, k, a])])
                                  + _erf_i3(C[np.ix_([k, i, a], [k, i, a])]))
                s2 = 0.0
                for a in range(L):
                    for b in range(L):
                        s2 += u[a] * u[b] * _erf_i4(C[np.ix_([i, k, a, b], [i, k, a, b])])
                dQ[i, k] = dQ[k, i] = eta * s1 + eta**2 * s2
        return np.concatenate([dQ.ravel(), dR.ravel()])

    return f


def _erf_i3_vec(C):
    c11, c12, c13, c23, c33 = C[:, 0, 0], C[:, 0, 1], C[:, 0, 2], C[:, 1, 2], C[:, 2, 2]
    L3 = (1 + c11) * (1 + c33) - c13**2
    return (2 / np.pi) * (c23 * (1 + c11) - c12 * c13) / ((1 + c11) * np.sqrt(L3))


def _erf_i4_vec(C):
    g = lambda i, j: C[:, i, j]
    c11, c22, c33, c44 = g(0, 0), g(1, 1), g(2, 2), g(3, 3)
    c12, c13, c14, c23, c24, c34 = g(0, 1), g(0, 2), g(0, 3), g(1, 2), g(1, 3), g(2, 3)
    L4 = (1 + c11) * (1 + c22) - c12**2
    L0 = L4 * c34 - c23 * c24 * (1 + c11) - c13 * c14 * (1 + c22) + c12 * c13 * c24 + c12 * c14 * c23
    L1 = L4 * (1 + c33) - c23**2 * (1 + c11) - c13**2 * (1 + c22) + 2 * c12 * c13 * c23
    L2 = L4 * (1 + c44) - c24**2 * (1 + c11) - c14**2 * (1 + c22) + 2 * c12 * c14 * c24
    return (4 / np.pi**2) * np.arcsin(L0 / np.sqrt(L1 * L2)) / np.sqrt(L4)


def numpy_vec_field(K, M, T, eta):
    L = K + M
    u = np.concatenate([-np.ones(K), np.ones(M)])
    i3 = np.stack(np.meshgrid(np.arange(K), np.arange(L), np.arange(L), indexing="ij"), -1).reshape(-1, 3)
    i4 = np.stack(np.meshgrid(np.arange(K), np.arange(K), np.arange(L), np.arange(L), indexing="ij"),
                  -1).reshape(-1, 4)

    def f(t, y):
        Q = y[: K * K].reshape(K, K)
        R = y[K * K :].reshape(K, M)
        C = np.block([[Q, R], [R.T, T]])
        F = (_erf_i3_vec(C[i3[:, :, None], i3[:, None, :]]).reshape(K, L, L) * u).sum(-1)
        dR = eta * F[:, K:]
        dQ = eta * (F[:, :K] + F[:, :K].T)
        v4 = _erf_i4_vec(C[i4[:, :, None], i4[:, None, :]]).reshape(K, K, L, L)
        dQ = dQ + eta**2 * np.einsum("ikab,a,b->ik", v4, u, u)
        return np.concatenate([dQ.ravel(), dR.ravel()])

    return f


# ----------------------------------------------------------------------------------- helpers
def best_of(fn, repeat):
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def cpu_time(fn):
    t0 = time.process_time()
    w0 = time.perf_counter()
    out = fn()
    return out, time.process_time() - t0, time.perf_counter() - w0


def machine():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = [ln.split(":", 1)[1].strip() for ln in out.splitlines() if "Model name" in ln][0]
    except Exception:  # noqa: BLE001
        name = platform.processor()
    return f"{name}, {os.cpu_count()} cores, jax {jax.__version__} ({jax.default_backend()})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    print("machine:", machine())
    rtol, atol = 1e-8, 1e-10

    # --- K = M = 2 erf, eta = 0.5, eta^2 on, to alpha = 400
    K = M = 2
    T = np.eye(M)
    eta = 0.5
    Q0 = np.diag([0.2, 0.3])
    R0 = 1e-3 * np.eye(2)
    y0 = np.concatenate([Q0.ravel(), R0.ravel()])
    sc = jd.Scenario(K=K, M=M, g=jd.Erf())
    op0 = jd.OrderParams(Q=Q0, R=R0)
    alphas = jnp.linspace(0.0, 400.0, 401)

    run = lambda: jax.block_until_ready(jd.integrate(sc, op0, eta=eta, alphas=alphas, rtol=rtol, atol=atol))
    t_first = best_of(run, 1)
    t_jax = best_of(run, 5)
    tr = run()
    print(f"\n[K=M=2 erf trajectory to alpha=400, rtol={rtol}] jaxdyn: {t_jax * 1e3:.1f} ms "
          f"({int(tr.num_steps)} steps); compile+first call {t_first:.2f} s")
    res = {}
    for name, f in [("numpy-vec", numpy_vec_field(K, M, T, eta)), ("numpy-loop", numpy_loop_field(K, M, T, eta))]:
        t0 = time.perf_counter()
        sol = solve_ivp(f, (0, 400), y0, method="RK45", rtol=rtol, atol=atol, t_eval=np.asarray(alphas))
        dt = time.perf_counter() - t0
        dev = np.max(np.abs(sol.y[:, -1] - np.concatenate([np.ravel(tr.Q[-1]), np.ravel(tr.R[-1])])))
        res[name] = dt
        print(f"  {name:10s}: {dt:8.3f} s ({sol.nfev} field evals)  -> jaxdyn is {dt / t_jax:7.0f}x faster;"
              f" max |difference| at alpha=400: {dev:.1e}")

    # --- vector-field evaluation
    f_j = jax.jit(lambda op: jd.vector_field(sc, op, eta))
    jax.block_until_ready(f_j(op0))
    n_rep = 2000
    t_vf = best_of(lambda: [jax.block_until_ready(f_j(op0)) for _ in range(n_rep)], 3) / n_rep
    f_v, f_l = numpy_vec_field(K, M, T, eta), numpy_loop_field(K, M, T, eta)
    t_nv = best_of(lambda: [f_v(0, y0) for _ in range(200)], 3) / 200
    t_nl = best_of(lambda: [f_l(0, y0) for _ in range(20)], 3) / 20
    print(f"[vector field K=M=2 erf] jaxdyn (jit, per call incl. dispatch) {t_vf * 1e6:.1f} us; "
          f"numpy-vec {t_nv * 1e6:.1f} us ({t_nv / t_vf:.0f}x); numpy-loop {t_nl * 1e6:.0f} us ({t_nl / t_vf:.0f}x)")

    # --- K = M = 10 erf to alpha = 1e4
    K = M = 10
    key = np.random.default_rng(0)
    sc10 = jd.Scenario(K=K, M=M, g=jd.Erf())
    Q0 = np.diag(key.uniform(0.1, 0.5, K))
    R0 = 1e-3 * key.uniform(0, 1, (K, M))
    op10 = jd.OrderParams(Q=Q0, R=R0)
    amax = 1e3 if args.quick else 1e4
    al10 = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1.0, amax, 200)])
    run10 = lambda: jax.block_until_ready(jd.integrate(sc10, op10, eta=0.5, alphas=al10, rtol=rtol, atol=atol,
                                                       max_steps=1_000_000))
    _, c_first, w_first = cpu_time(run10)
    tr10, c10, w10 = cpu_time(run10)
    f10 = jax.jit(lambda op: jd.vector_field(sc10, op, 0.5))
    jax.block_until_ready(f10(op10))
    t_vf10 = best_of(lambda: [jax.block_until_ready(f10(op10)) for _ in range(200)], 3) / 200
    print(f"\n[K=M=10 erf, eta=0.5, alpha=0..{amax:g}, rtol={rtol}] jaxdyn: {w10:.2f} s wall, {c10:.2f} s CPU, "
          f"{int(tr10.num_steps)} steps, final eps_g {float(tr10.eps_g[-1]):.3e}; compile+first {w_first:.1f} s wall")
    print(f"  vector field K=M=10: {t_vf10 * 1e6:.0f} us per evaluation "
          f"(nn2pp reference: 360 us per Euler step, ~6 min to alpha=1e4 at dt=0.01)")
    f10n = numpy_vec_field(K, M, np.eye(M), 0.5)
    y10 = np.concatenate([Q0.ravel(), R0.ravel()])
    t_n10 = best_of(lambda: [f10n(0, y10) for _ in range(10)], 2) / 10
    print(f"  numpy-vec vector field K=M=10: {t_n10 * 1e6:.0f} us ({t_n10 / t_vf10:.1f}x slower than jaxdyn)")

    # --- ReLU K=M=2 paper 001, exact I4
    try:
        sc1 = jd.Scenario(K=2, M=2, T=jnp.diag(jnp.array([1.0, 2.0])))
        op1 = jd.OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=1e-3 * jnp.eye(2))
        run1 = lambda: jax.block_until_ready(jd.integrate(sc1, op1, eta=1.0, alphas=alphas, rtol=rtol, atol=atol))
        t1_first = best_of(run1, 1)
        t1 = best_of(run1, 3)
        tr1 = run1()
        f1 = jax.jit(lambda op: jd.vector_field(sc1, op, 1.0))
        jax.block_until_ready(f1(op1))
        t_vf1 = best_of(lambda: [jax.block_until_ready(f1(op1)) for _ in range(500)], 3) / 500
        print(f"\n[paper 001 ReLU K=M=2, T=diag(1,2), eta=1, exact I4, to alpha=400] {t1 * 1e3:.1f} ms "
              f"({int(tr1.num_steps)} steps, final eps_g {float(tr1.eps_g[-1]):.2e}); compile+first "
              f"{t1_first:.1f} s; vector field {t_vf1 * 1e6:.0f} us")
    except Exception as e:  # noqa: BLE001
        print("ReLU exact-I4 benchmark skipped:", type(e).__name__, e)


if __name__ == "__main__":
    main()
