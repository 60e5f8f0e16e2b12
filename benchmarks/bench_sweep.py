"""Benchmark: paper 001's eta sweep (K=M=2 ReLU, T=diag(1,2), full eta^2 ODE, exact I4) three ways,
in the same run:

1. a Python loop over single jitted solves (`jaxdyn._integrate._solve`, one eta at a time);
2. plain `jit(vmap(solve))` over all points at once;
3. `jaxdyn.sweep` (sorted by eta, `lax.map(batch_size=B)`, `shard_map` over all visible devices),
   and the same with a steady-state stop (`stop_tol`: converged solves end early).

Wall times are after compilation (each variant is compiled and run once before timing).
The loop is slow, so by default it is timed on `--loop-n` evenly spaced points and extrapolated
to `--n` (its cost is the sum over points; pass `--loop-n 0` to run it on all points).

Usage (repository root):
    EQX_ON_ERROR=nan python benchmarks/bench_sweep.py --n 1024
    EQX_ON_ERROR=nan XLA_FLAGS=--xla_force_host_platform_device_count=2 python benchmarks/bench_sweep.py --n 1024
On a GPU machine the same command uses the GPU (batch = whole chunk).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time

import jax


jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxdyn as jd  # noqa: E402
from jaxdyn._integrate import _solve  # noqa: E402


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next((ln.split(":", 1)[1].strip() for ln in out.splitlines()
                     if ln.startswith("Model name")), platform.processor())
        cpus = next((ln.split(":", 1)[1].strip() for ln in out.splitlines()
                     if ln.startswith("CPU(s)")), "?")
        return f"{name}, {cpus} CPU(s)"
    except Exception:  # pragma: no cover
        return platform.platform()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1024, help="number of eta values in [0.1, 1.3]")
    ap.add_argument("--alpha-max", type=float, default=1000.0)
    ap.add_argument("--n-alpha", type=int, default=200)
    ap.add_argument("--loop-n", type=int, default=64,
                    help="points timed for the Python loop (extrapolated to --n); 0: all")
    ap.add_argument("--skip-vmap", action="store_true", help="skip the plain-vmap variant")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--chunk-size", type=int, default=None)
    ap.add_argument("--stop-tol", type=float, default=1e-9,
                    help="also time the sweep with this steady-state stop (0: skip)")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args()

    sc = jd.Scenario(K=2, M=2, T=jnp.diag(jnp.array([1.0, 2.0])))
    op0 = jd.OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=1e-3 * jnp.eye(2))
    etas = np.linspace(0.1, 1.3, args.n)
    alphas = jnp.asarray(np.geomspace(1e-2, args.alpha_max, args.n_alpha))
    kw = dict(solver=diffrax.Tsit5(),
              controller=diffrax.PIDController(rtol=1e-8, atol=1e-10), dt0=None, max_steps=100_000,
              blowup=1e4, adjoint=diffrax.RecursiveCheckpointAdjoint())
    t0 = jnp.asarray(0.0)
    res = {"machine": machine(), "devices": [str(d) for d in jax.devices()], "n": args.n,
           "alpha_max": args.alpha_max, "n_alpha": args.n_alpha, "jax": jax.__version__,
           "EQX_ON_ERROR": os.environ.get("EQX_ON_ERROR"), "XLA_FLAGS": os.environ.get("XLA_FLAGS")}
    print(json.dumps({k: res[k] for k in ("machine", "devices", "n")}))

    # 3. jaxdyn.sweep
    def run_sweep():
        return jd.sweep(sc, op0, eta=etas, alphas=np.asarray(alphas), progress=False,
                        batch_size=args.batch_size, chunk_size=args.chunk_size)

    t = time.perf_counter()
    ds = run_sweep()
    res["sweep_first_call_s"] = time.perf_counter() - t
    t = time.perf_counter()
    ds = run_sweep()
    res["sweep_s"] = time.perf_counter() - t
    res["sweep_batch_size"] = int(ds.attrs["batch_size"])
    res["sweep_devices"] = int(ds.attrs["n_devices"])
    res["total_steps"] = int(ds["num_steps"].sum())
    res["max_steps"] = int(ds["num_steps"].max())
    print(f"jaxdyn.sweep: {res['sweep_s']:.2f} s (first call incl. compile {res['sweep_first_call_s']:.1f} s)",
          flush=True)

    # 3b. the same sweep ending converged solves early (steady-state stop)
    if args.stop_tol > 0:
        def run_stop():
            return jd.sweep(sc, op0, eta=etas, alphas=np.asarray(alphas), progress=False,
                            batch_size=args.batch_size, chunk_size=args.chunk_size,
                            stop_tol=args.stop_tol)

        run_stop()
        t = time.perf_counter()
        dss = run_stop()
        res["sweep_stop_s"] = time.perf_counter() - t
        res["stop_tol"] = args.stop_tol
        res["sweep_stop_total_steps"] = int(dss["num_steps"].sum())
        a, b = ds["eps_g"].values, dss["eps_g"].values
        ok = np.isfinite(a) & np.isfinite(b)
        res["sweep_stop_max_abs_diff_eps_g"] = float(np.max(np.abs(a[ok] - b[ok])))
        res["sweep_stop_same_regimes"] = bool(np.array_equal(ds["regime"].values, dss["regime"].values))
        print(f"jaxdyn.sweep(stop_tol={args.stop_tol:g}): {res['sweep_stop_s']:.2f} s, "
              f"{res['sweep_stop_total_steps']} steps, same regimes: {res['sweep_stop_same_regimes']}, "
              f"max |d eps_g| {res['sweep_stop_max_abs_diff_eps_g']:.1e}", flush=True)

    # 2. plain vmap over everything
    if not args.skip_vmap:
        fv = jax.jit(jax.vmap(lambda e: _solve(jd.OrderParamODE(sc, eta=e), op0, alphas, t0, **kw).eps_g))
        fv(jnp.asarray(etas[:2])).block_until_ready()  # compile at another shape
        fv = jax.jit(jax.vmap(lambda e: _solve(jd.OrderParamODE(sc, eta=e), op0, alphas, t0, **kw).eps_g))
        t = time.perf_counter()
        ev = fv(jnp.asarray(etas)).block_until_ready()
        res["vmap_first_call_s"] = time.perf_counter() - t
        t = time.perf_counter()
        ev = fv(jnp.asarray(etas)).block_until_ready()
        res["vmap_s"] = time.perf_counter() - t
        ev = np.asarray(ev)
        ok = np.isfinite(ev)
        res["vmap_vs_sweep_max_abs_diff"] = float(np.max(np.abs(ev[ok] - ds["eps_g"].values[ok])))
        print(f"plain vmap: {res['vmap_s']:.2f} s", flush=True)

    # 1. Python loop over single jitted solves
    f1 = jax.jit(lambda e: _solve(jd.OrderParamODE(sc, eta=e), op0, alphas, t0, **kw).eps_g)
    f1(jnp.asarray(1.0)).block_until_ready()
    idx = np.arange(args.n) if args.loop_n <= 0 or args.loop_n >= args.n else \
        np.unique(np.linspace(0, args.n - 1, args.loop_n).round().astype(int))
    t = time.perf_counter()
    for i in idx:
        f1(jnp.asarray(etas[i])).block_until_ready()
    tl = time.perf_counter() - t
    res["loop_points_timed"] = int(idx.size)
    res["loop_s"] = tl * args.n / idx.size
    res["loop_extrapolated"] = bool(idx.size < args.n)
    print(f"Python loop: {res['loop_s']:.2f} s" + (f" (extrapolated from {idx.size} points)"
                                                   if idx.size < args.n else ""), flush=True)

    res["speedup_vs_loop"] = res["loop_s"] / res["sweep_s"]
    if "vmap_s" in res:
        res["speedup_vs_vmap"] = res["vmap_s"] / res["sweep_s"]
    reg = ds["regime"].values
    res["regime_counts"] = {n: int((reg == r).sum()) for r, n in jd.SWEEP_REGIMES.items()}
    print(json.dumps(res, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
