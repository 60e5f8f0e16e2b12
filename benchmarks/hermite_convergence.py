"""Error of paper 001's Hermite series for I4, against exact values, by order and correlation.

Run from the repository root:

    python benchmarks/hermite_convergence.py            # prints the markdown tables
    python benchmarks/hermite_convergence.py --write    # also writes docs/hermite_convergence.md

References: the exact ReLU I4 (`jaxdyn._averages.relu_moments.relu_i4` when present, else the independent
NumPy reference `tests/relu_i4_reference.py`: Stein's lemma + Plackett's identity, checked
against a 1-D integral for equicorrelated matrices to 1e-14) and the closed-form erf I4 (docs/conventions.md
section 2). Unit variances (the series is evaluated on correlations; ReLU rescales exactly).
"""

import argparse
import os
import pathlib
import platform
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np


jax.config.update("jax_enable_x64", True)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jaxdyn as jd
from jaxdyn._averages.hermite import hermite_i4


ORDERS = (6, 8, 10, 12, 14)
EQUI = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
BINS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
TOLS = (1e-4, 1e-6, 1e-8)
SR_BINS = (0.0, 0.5, 0.7, 0.8, 0.9, 1.0, 1.2, 1.5, 2.0, 3.0)


def relu_exact(C):
    try:
        from jaxdyn._averages.relu_moments import relu_i4

        return np.asarray(relu_i4(jnp.asarray(C))), "jaxdyn._averages.relu_moments.relu_i4"
    except ImportError:
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
        from relu_i4_reference import relu_i4_reference

        return relu_i4_reference(C), "tests/relu_i4_reference.py"


def random_correlations(n, seed=0):
    """Correlation matrices from Gram matrices of 4 random vectors in k = 4..24 dimensions
    (small k gives strong correlations), covering max|rho| from ~0.1 to ~1."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = rng.integers(4, 25)
        A = rng.normal(size=(4, k)) * np.exp(rng.normal(size=(1, k)))
        C = A @ A.T
        d = np.sqrt(np.diag(C))
        C = C / np.outer(d, d)
        if np.linalg.eigvalsh(C)[0] > 1e-3:  # the reference needs positive definite matrices
            out.append(C)
    return np.array(out)


def spectral_radius(C):
    """rho(|R|): largest eigenvalue of the matrix of |rho_ij| with zero diagonal."""
    R = np.abs(C - np.eye(4))
    return np.linalg.eigvalsh(R)[..., -1]


def series(C, g, N):
    return np.asarray(hermite_i4(jnp.asarray(C), (g,) * 4, N, warn=False))


def fmt(x):
    return f"{x:.0e}" if x >= 1e-15 else "<1e-15"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--n-random", type=int, default=3000)
    args = ap.parse_args()
    relu, erf = jd.ReLU(), jd.Erf()

    equi = np.array([np.full((4, 4), r) + (1 - r) * np.eye(4) for r in EQUI])
    rel_e, src = relu_exact(equi)
    erf_e = np.asarray(jd.I4(jnp.asarray(equi), erf))
    rnd = random_correlations(args.n_random)
    rel_r, _ = relu_exact(rnd)
    erf_r = np.asarray(jd.I4(jnp.asarray(rnd), erf))
    mx = np.max(np.abs(rnd[:, np.triu_indices(4, 1)[0], np.triu_indices(4, 1)[1]]), axis=1)

    lines = []
    w = lines.append
    w("# Convergence of the Hermite (Kibble-Slepian) series for I4\n")
    w("Produced by `python benchmarks/hermite_convergence.py --write` (do not edit by hand).")
    w(f"Exact ReLU reference: `{src}`; erf: the closed form of docs/conventions.md, Gaussian averages. Absolute errors of")
    w("`jaxdyn.I4(C, g, method=\"hermite\", order=N)` on correlation matrices (unit variances).\n")
    for name, g, ex in (("ReLU", relu, rel_e), ("erf", erf, erf_e)):
        w(f"## {name}, equicorrelated 4x4 (`rho_ij = r`): |series - exact|\n")
        w("| order | " + " | ".join(f"r={r}" for r in EQUI) + " |")
        w("|---|" + "---|" * len(EQUI))
        for N in ORDERS:
            err = np.abs(series(equi, g, N) - ex)
            w(f"| {N} | " + " | ".join(fmt(e) for e in err) + " |")
        w("")
    sr = spectral_radius(rnd)
    for crit, val, bins in (("max|rho_ij|", mx, BINS), ("rho(|R|)", sr, SR_BINS)):
        for name, g, ex in (("ReLU", relu, rel_r), ("erf", erf, erf_r)):
            w(f"## {name}, {len(rnd)} random correlation matrices binned by {crit}: worst |series - exact|\n")
            labels = [f"[{a:.1f},{b:.1f})" for a, b in zip(bins[:-1], bins[1:])]
            counts = [int(((val >= a) & (val < b)).sum()) for a, b in zip(bins[:-1], bins[1:])]
            w("| order | " + " | ".join(f"{l} n={c}" for l, c in zip(labels, counts)) + " |")
            w("|---|" + "---|" * len(labels))
            for N in ORDERS:
                err = np.abs(series(rnd, g, N) - ex)
                cells = []
                for a, b in zip(bins[:-1], bins[1:]):
                    sel = (val >= a) & (val < b)
                    cells.append(fmt(err[sel].max()) if sel.any() else "-")
                w(f"| {N} | " + " | ".join(cells) + " |")
            w("")

    # trusted region: largest rho(|R|) below which every tested matrix (random, equicorrelated on a
    # fine grid; ReLU and erf) has error <= tol
    fine = np.array([np.full((4, 4), r) + (1 - r) * np.eye(4) for r in np.arange(0.01, 0.995, 0.01)])
    allC = np.concatenate([rnd, fine])
    allsr = spectral_radius(allC)
    ex_relu = np.concatenate([rel_r, relu_exact(fine)[0]])
    ex_erf = np.asarray(jd.I4(jnp.asarray(allC), erf))
    limits = {}
    for N in ORDERS:
        err = np.maximum(np.abs(series(allC, relu, N) - ex_relu), np.abs(series(allC, erf, N) - ex_erf))
        for tol in TOLS:
            bad = allsr[err > tol]
            first_bad = bad.min() if bad.size else np.inf
            limits[(N, tol)] = float(np.floor(100 * allsr[allsr < first_bad].max()) / 100)
    from jaxdyn._averages.hermite import REGION_LIMITS

    w("## Trusted region (`jaxdyn.hermite_in_region`)\n")
    w("Criterion: the spectral radius `rho(|R|)` of the matrix of absolute correlations `|rho_ij|`")
    w("(zero diagonal). The absolute-value majorant of the series converges iff `rho(|R|) < 1`")
    w("(for equicorrelation r: `3|r| < 1`), and it predicts the error better than max|rho_ij|")
    w("(at the same guaranteed error it accepts up to twice as many of the random matrices). Limit")
    w("for each order and tolerance: the largest `rho(|R|)` (rounded down to 0.01) such that every")
    w(f"tested matrix ({len(allC)}: the random ones above and equicorrelated r = 0.01..0.99) with")
    w("a smaller `rho(|R|)` had error <= tol for both ReLU and erf:\n")
    w("| tol | " + " | ".join(f"order {N}" for N in ORDERS) + " |")
    w("|---|" + "---|" * len(ORDERS))
    for tol in TOLS:
        w(f"| {tol:g} (measured) | " + " | ".join(f"{limits[(N, tol)]:.2f}" for N in ORDERS) + " |")
        w(f"| {tol:g} (`REGION_LIMITS`) | "
          + " | ".join(f"{REGION_LIMITS.get(tol, {}).get(N, float('nan')):.2f}" for N in ORDERS) + " |")
    w("")
    w("`REGION_LIMITS` (in `jaxdyn/_averages/hermite.py`) are the measured limits minus a 0.02 margin.")
    w("")
    print("REGION_LIMITS = " + repr({tol: {N: limits[(N, tol)] for N in ORDERS} for tol in TOLS}),
          file=sys.stderr)
    try:
        cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        cpu = [l.split(":", 1)[1].strip() for l in cpu.splitlines() if l.startswith("Model name")][0]
    except Exception:  # pragma: no cover
        cpu = platform.processor()
    w(f"Machine: {cpu}; jax {jax.__version__}.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        path = os.path.join(os.path.dirname(__file__), "..", "docs", "hermite_convergence.md")
        old = open(path).read() if os.path.exists(path) else ""
        marker = "<!-- generated below -->"
        head = old.split(marker)[0] + marker + "\n\n" if marker in old else ""
        with open(path, "w") as f:
            f.write(head + text)


if __name__ == "__main__":
    main()
