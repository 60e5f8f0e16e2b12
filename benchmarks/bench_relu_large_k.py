"""ReLU at large K (issue 16): exact-I4 throughput, the K = M = 10 vector field against erf, the
perfect-learning threshold by the pencil method, and one K = M = 10 full-eta^2 trajectory.

Baselines measured in the same run: `benchmarks/_relu_i4_v1.py` (the exact I4 before this change,
kept verbatim; also swapped into the vector field for the "ReLU field, v1 I4" row), the erf field
(closed forms), the NumPy/SciPy reference `tests/relu_i4_reference.py` for the error, and
`stability_threshold(method="continuation")` for the threshold. Timings are medians of repeated
calls after compilation; the machine is shared, so compare ratios within one run.

Run:  python benchmarks/bench_relu_large_k.py [--quick] [--no-trajectory] [--no-continuation]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import subprocess
import time

os.environ.setdefault("EQX_ON_ERROR", "nan")
import jax


jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np

import jaxdyn as jd
import jaxdyn._averages.relu_moments as relu_moments_module
import jaxdyn._ode as ode_module  # the field calls `jaxdyn._ode.relu_i4_terms`: baselines are swapped in there
from jaxdyn._averages.relu_moments import relu_i4

HERE = pathlib.Path(__file__).parent


def _load(name, folder=None):
    spec = importlib.util.spec_from_file_location(name, (folder or HERE) / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def med(f, repeat=7):
    jax.block_until_ready(f())
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        jax.block_until_ready(f())
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def random_covs(n, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, 4, 12))
    C = A @ np.swapaxes(A, 1, 2) / 12
    s = np.exp(rng.uniform(-0.3, 0.3, size=(n, 4)))
    return C * s[:, :, None] * s[:, None, :]


def bench_i4(batch):
    v1, ref = _load("_relu_i4_v1"), _load("relu_i4_reference", HERE.parent / "tests")
    C = jnp.asarray(random_covs(batch))
    new = jax.jit(lambda c: relu_i4(c))
    old = jax.jit(lambda c: v1.relu_i4(c))
    t_new, t_old = [], []
    for _ in range(3):  # interleaved rounds: the load of the shared machine hits both
        t_new.append(med(lambda: new(C), 3))
        t_old.append(med(lambda: old(C), 3))
    t_new, t_old = np.median(t_new), np.median(t_old)
    Cn = np.asarray(C[:300])
    s = np.sqrt(np.einsum("...ii->...i", Cn))
    corr = Cn / s[:, :, None] / s[:, None, :]
    err_ref = float(np.max(np.abs(np.asarray(new(C))[:300] - ref.relu_i4_reference(corr, 400) * s[:, 2] * s[:, 3])))
    err_v1 = float(np.max(np.abs(np.asarray(new(C)) - np.asarray(old(C)))))
    return {"batch": batch, "new_per_s": batch / t_new, "v1_per_s": batch / t_old,
            "speedup": t_old / t_new, "max_err_vs_numpy_reference": err_ref,
            "max_diff_vs_v1": err_v1}


def field_setup(K, g=None):
    rng = np.random.default_rng(0)
    B = rng.normal(size=(2 * K, 3 * K))
    B /= np.linalg.norm(B, axis=1, keepdims=True)
    kw = {} if g is None else {"g": g}
    sc = jd.Scenario(K=K, M=K, T=jnp.asarray(B[K:] @ B[K:].T), **kw)
    return sc, jd.OrderParams(Q=jnp.asarray(B[:K] @ B[:K].T), R=jnp.asarray(B[:K] @ B[K:].T))


def _grouped_per_quadruple(relu_theta_moment):
    """The vector field's ReLU I4 before the set-sharing rewrite: one `relu_theta_moment` call per
    coincidence pattern of the quadruples (every quadruple evaluated separately), kept here as a
    same-run baseline."""
    from jaxdyn._averages.closed_forms import relu_moment_small
    from jaxdyn._model import gather
    from jaxdyn._ode import _relu_groups

    def terms(C, idx4):
        idx4 = np.ascontiguousarray(idx4, dtype=np.int64)
        out = jnp.zeros(C.shape[:-2] + (idx4.shape[0],), C.dtype)
        for pos, units, p, q in _relu_groups(idx4.tobytes(), idx4.shape):
            cov = gather(C, units)
            v = (relu_moment_small(cov, int(p), int(q)) if units.shape[1] <= 2
                 else relu_theta_moment(cov, int(p), int(q)))
            out = out.at[..., pos].set(v)
        return out

    return terms


def bench_field(K, baselines=True):
    """One jitted `vector_field` at K = M: erf, ReLU, and (baselines) the ReLU field with the
    previous per-quadruple I4 evaluation and with the v1 I4 (swapped in for the new one)."""
    out = {}
    v1 = _load("_relu_i4_v1")
    names = ("erf", "relu", "relu_prev", "relu_v1") if baselines else ("erf", "relu")
    for name in names:
        sc, op = field_setup(K, jd.Erf() if name == "erf" else None)
        saved = ode_module.relu_i4_terms
        # the field looks relu_i4_terms up in jaxdyn._ode at trace time (until issue 10 this
        # patched jaxdyn._averages.relu_moments instead, which the field no longer reads: those
        # baseline rows measured the current code)
        if name == "relu_prev":
            ode_module.relu_i4_terms = _grouped_per_quadruple(relu_moments_module.relu_theta_moment)
        if name == "relu_v1":
            ode_module.relu_i4_terms = _grouped_per_quadruple(v1.relu_theta_moment)
        jax.clear_caches()  # no trace of another variant may be reused
        try:
            f = jax.jit(lambda op, e: jd.vector_field(sc, op, e))
            t0 = time.perf_counter()
            jax.block_until_ready(f(op, 0.3))
            out[name + "_compile_s"] = time.perf_counter() - t0
            out[name + "_ms"] = 1e3 * med(lambda: f(op, 0.3))
        finally:
            ode_module.relu_i4_terms = saved
    for name in names[1:]:
        out[name + "_over_erf"] = out[name + "_ms"] / out["erf_ms"]
    return out


def bench_threshold(Ks, continuation):
    from jaxdyn.figures.large_k import teacher

    out = {}
    for K in Ks:
        sc = jd.Scenario(K=K, M=K, T=teacher(K, "graded"))
        pl = jd.OrderParams(Q=sc.T, R=sc.T)
        t0 = time.perf_counter()
        th = jd.stability_threshold(sc, pl, eta_bracket=(0.1, 3.0), method="pencil")
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        th = jd.stability_threshold(sc, pl, eta_bracket=(0.1, 3.0), method="pencil")
        out[K] = {"eta_c": th.value, "first_call_s": first, "after_compile_s": time.perf_counter() - t0}
        # the general path (what a moving fixed point gets): an identity symmetry basis skips
        # the pencil; tangent-predicted Newton steps against pseudo-arclength continuation
        eye = np.eye(pl.Q.shape[0] * (pl.Q.shape[0] + 1) // 2 + K * K)
        for rep in range(2):
            t0 = time.perf_counter()
            tn = jd.stability_threshold(sc, pl, eta_bracket=(0.1, 3.0), method="newton", symmetry=eye)
            out[K]["newton_first_s" if rep == 0 else "newton_s"] = time.perf_counter() - t0
        out[K]["newton_eta_c"] = tn.value
        out[K]["newton_solves"] = tn.details["n_solves"]
        if continuation and K == 2:
            t0 = time.perf_counter()
            tc = jd.stability_threshold(sc, pl, eta_bracket=(1.0, 2.0), method="continuation")
            out[K]["continuation_s"] = time.perf_counter() - t0
            out[K]["continuation_eta_c"] = tc.value
            out[K]["continuation_over_newton"] = out[K]["continuation_s"] / out[K]["newton_s"]
    return out


def bench_trajectory(K, eta):
    sc = jd.Scenario(K=K, M=K)
    op0 = jd.OrderParams(Q=jnp.diag(jnp.linspace(0.2, 0.3, K)), R=1e-3 * jnp.eye(K))
    alphas = jnp.geomspace(1.0, 1e4, 50)
    run = lambda e: jd.integrate(sc, op0, eta=jnp.asarray(e), alphas=alphas, throw=False)
    t0 = time.perf_counter()
    tr = jax.block_until_ready(run(eta))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    tr = jax.block_until_ready(run(eta * (1 + 1e-9)))
    return {"eta": eta, "first_call_s": first, "after_compile_s": time.perf_counter() - t0,
            "num_steps": int(tr.num_steps), "eps_g_end": float(tr.eps_g[-1]),
            "status": int(tr.status)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-trajectory", action="store_true")
    ap.add_argument("--no-continuation", action="store_true")
    ap.add_argument("--only", choices=("i4", "field", "threshold", "trajectory"), default=None)
    ap.add_argument("--eta-c-10", type=float, default=None,
                    help="eta_c of K = M = 10, T = I (default: computed by the pencil method)")
    args = ap.parse_args()
    try:
        cpu = [l.split(":", 1)[1].strip() for l in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if l.startswith("Model name")][0]
    except Exception:
        cpu = "unknown"
    print(f"Machine: {cpu}, {os.cpu_count()} cores (shared); jax {jax.__version__}\n", flush=True)
    do = lambda name: args.only in (None, name)
    if do('i4'):
        r = bench_i4(2000 if args.quick else 10_000)
        print("| exact ReLU I4 | moments / s | |\n|---|---|---|")
        print(f"| new (`relu_i4`) | {r['new_per_s']:.3g} | {r['speedup']:.1f}x the baseline |")
        print(f"| baseline (v1, same run) | {r['v1_per_s']:.3g} | |")
        print(f"| max error vs NumPy reference (300 covariances) | {r['max_err_vs_numpy_reference']:.1e} | "
              f"max diff vs v1 {r['max_diff_vs_v1']:.1e} |\n", flush=True)
    if do('field'):
        K = 4 if args.quick else 10
        f = bench_field(K)
        print(f"| K = M = {K} vector field | ms | / erf |\n|---|---|---|")
        for name in ("erf", "relu", "relu_prev", "relu_v1"):
            print(f"| {name} | {f[name + '_ms']:.3g} | {f[name + '_ms'] / f['erf_ms']:.1f} |")
        comp = ", ".join(f"{n} {f[n + '_compile_s']:.0f} s" for n in ("erf", "relu", "relu_prev", "relu_v1"))
        print(f"(compile: {comp})\n", flush=True)
        print("| K = M | erf ms | ReLU ms | ReLU / erf | ReLU compile s |\n|---|---|---|---|---|")
        for Kf in ([2, 3, 4] if args.quick else [2, 3, 4, 5, 6, 7, 8, 9, 10]):
            f = bench_field(Kf, baselines=False)
            print(f"| {Kf} | {f['erf_ms']:.3g} | {f['relu_ms']:.3g} | {f['relu_over_erf']:.1f} | "
                  f"{f['relu_compile_s']:.1f} |", flush=True)
        print()
    if do('threshold'):
        th = bench_threshold([2, 3] if args.quick else [2, 3, 4], not args.no_continuation)
        print("| perfect-learning threshold, T = diag(1..K) | eta_c | first call s | after compilation s |")
        print("|---|---|---|---|")
        for K, v in th.items():
            print(f"| K = M = {K} | {v['eta_c']:.13f} | {v['first_call_s']:.1f} | {v['after_compile_s']:.2f} |")
            print(f"| K = M = {K}, general path (`method='newton'`, {v['newton_solves']} Newton solves) | "
                  f"{v['newton_eta_c']:.13f} | {v['newton_first_s']:.1f} | {v['newton_s']:.2f} |")
            if "continuation_s" in v:
                print(f"| K = M = {K}, continuation (baseline) | {v['continuation_eta_c']:.13f} | "
                      f"{v['continuation_s']:.1f} (after the Newton run's compilation) | "
                      f"{v['continuation_over_newton']:.0f}x the Newton time |")
        print(flush=True)
    if do('trajectory'):
        if not args.no_trajectory:
            Kt = 4 if args.quick else 10
            eta_c = args.eta_c_10
            if eta_c is None or args.quick:
                from jaxdyn.figures.large_k import perfect_learning_eta_c

                eta_c = perfect_learning_eta_c(Kt, "isotropic").value
            t = bench_trajectory(Kt, 0.5 * eta_c)
            print(f"K = M = {Kt} ReLU trajectory (T = I, R0 = 1e-3 I, Q0 = diag(0.2..0.3), eta = eta_c/2 = "
                  f"{t['eta']:.6f}) to alpha = 1e4: {t['after_compile_s']:.1f} s after compilation "
                  f"(first call {t['first_call_s']:.1f} s), {t['num_steps']} steps, eps_g = {t['eps_g_end']:.3e}, "
                  f"status {t['status']}")

if __name__ == "__main__":
    main()
