"""I4 evaluations per second on CPU: paper 001's Hermite series (orders 6, 10, 14) vs the exact
methods, batched over 10^4 covariances, after compilation.

Run from the repository root:  python benchmarks/bench_i4.py [--batch 10000]

Baseline (same run): a NumPy loop over covariances, each evaluating the same series as one
vectorised sum over the precomputed index set (`sum_t coef_t prod_ij rho_ij^E_tij`).
"ReLU series" uses the cached coefficient matrix (one matrix product per batch); "tanh series"
recomputes coefficients per covariance by quadrature (variances differ) and contracts edge by edge.
"""

import argparse
import subprocess
import timeit

import jax
import jax.numpy as jnp
import numpy as np


jax.config.update("jax_enable_x64", True)

import jaxdyn as jd
from jaxdyn._averages import hermite as H


def random_covs(n, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, 4, 12))
    C = A @ np.swapaxes(A, 1, 2) / 12
    s = np.exp(rng.uniform(-0.3, 0.3, size=(n, 4)))
    return C * s[:, :, None] * s[:, None, :]


def rate(fn, x, n, repeat=5):
    jax.block_until_ready(fn(x))  # compile
    t = min(timeit.repeat(lambda: jax.block_until_ready(fn(x)), number=1, repeat=repeat))
    return n / t


def numpy_baseline(C, order, n_loop=200):
    ix = H.hermite_index_set(order)
    E, nn = ix["E"], ix["n"]
    c = np.asarray(jd.hermite_coefficients(jd.ReLU(), order + 1))
    coef = ix["inv_fact"] * c[1:][nn[:, 0]] * c[1:][nn[:, 1]] * c[nn[:, 2]] * c[nn[:, 3]]
    iu = ([0, 0, 0, 1, 1, 2], [1, 2, 3, 2, 3, 3])

    def run():
        out = np.empty(n_loop)
        for k in range(n_loop):
            d = np.sqrt(np.diag(C[k]))
            rho = (C[k] / np.outer(d, d))[iu]
            out[k] = d[2] * d[3] * np.sum(coef * np.prod(rho**E, axis=1))
        return out

    t = min(timeit.repeat(run, number=1, repeat=2))
    return n_loop / t, run()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=10_000)
    args = ap.parse_args()
    B = args.batch
    C = jnp.asarray(random_covs(B))
    rows = []
    for N in (6, 10, 14):
        f = jax.jit(lambda c, N=N: H.hermite_i4(c, (jd.ReLU(),) * 4, N, warn=False))
        r = rate(f, C, B)
        base, vals = numpy_baseline(np.asarray(C), N)
        assert np.allclose(vals, np.asarray(f(C))[: len(vals)], rtol=1e-12, atol=1e-15)
        rows.append((f"ReLU series, order {N}", r, base))
    for N in (6, 10, 14):
        f = jax.jit(lambda c, N=N: H.hermite_i4(c, (jd.Tanh(),) * 4, N, warn=False))
        rows.append((f"tanh series (per-covariance coefficients), order {N}", rate(f, C, B, 3), None))
    try:
        from jaxdyn._averages.relu_moments import relu_i4

        rows.append(("ReLU exact (`relu_i4`)", rate(jax.jit(relu_i4), C, B), None))
    except ImportError:
        rows.append(("ReLU exact (`relu_i4`): not available in this checkout", float("nan"), None))
    rows.append(("erf closed form", rate(jax.jit(lambda c: jd.I4(c, jd.Erf())), C, B), None))
    try:
        cpu = [l.split(":", 1)[1].strip() for l in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if l.startswith("Model name")][0]
    except Exception:
        cpu = "unknown"
    print(f"Machine: {cpu}; jax {jax.__version__}; batch {B} covariances (4x4, float64)\n")
    print("| method | I4 evaluations / s | NumPy-loop baseline / s | speed-up |")
    print("|---|---|---|---|")
    for name, r, base in rows:
        b = f"{base:.3g}" if base else "-"
        sp = f"{r / base:.0f}x" if base else "-"
        print(f"| {name} | {r:.3g} | {b} | {sp} |")


if __name__ == "__main__":
    main()
