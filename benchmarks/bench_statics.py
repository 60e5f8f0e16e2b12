"""Benchmark: paper 002 specialisation transitions (`jaxdyn.specialisation_transition`).

Times one transition for K <= 10 after compilation, and the whole K = 2..20 table for ReLU and
the sigmoid, against a NumPy/SciPy baseline written here for the ReLU transition (same physics,
hand-coded gradients of eqs. 12/19, `scipy.optimize.fsolve` + `brentq`, same D-continuation
idea), which also checks the numbers.

    PYTHONPATH=$PWD python3 benchmarks/bench_statics.py [--quick]
"""

import sys
import time

import numpy as np
from scipy.optimize import brentq, fsolve

import jaxdyn as jd

jd.enable_x64()

TWO_PI = 2 * np.pi


# ------------------------------------------------------------ SciPy baseline (ReLU only)
def _G(c):
    return c / 4 + (np.sqrt(1 - c * c) + c * np.arcsin(c)) / TWO_PI


def _dG(c):
    return 0.25 + np.arcsin(c) / TWO_PI


def _f(R, S, C, K, a):
    A = 1 + (K - 1) * C - (R + (K - 1) * S) ** 2
    B = 1 - C - (R - S) ** 2
    eps = 0.5 - _G(R) + (K - 1) / 2 * (_G(C) - 2 * _G(S) + 1 / TWO_PI)
    return a * K * eps - 0.5 * np.log(A) - (K - 1) / 2 * np.log(B)


def _grad(R, S, C, K, a):
    A = 1 + (K - 1) * C - (R + (K - 1) * S) ** 2
    B = 1 - C - (R - S) ** 2
    u = R + (K - 1) * S
    gR = a * K * (-_dG(R)) + u / A + (K - 1) * (R - S) / B
    gS = a * K * (-(K - 1) * _dG(S)) + (K - 1) * u / A - (K - 1) * (R - S) / B
    gC = a * K * ((K - 1) / 2 * _dG(C)) - (K - 1) / (2 * A) + (K - 1) / (2 * B)
    return np.array([gR, gS, gC])


def scipy_transition(K):
    # unspecialised branch in alpha, instability where alpha (1-C) G''(r) = 1
    def unspec(a, z0):
        F = lambda z: [(_grad(z[0], z[0], z[1], K, a)[0] + _grad(z[0], z[0], z[1], K, a)[1]),
                       _grad(z[0], z[0], z[1], K, a)[2]]
        return fsolve(F, z0, xtol=1e-13)

    z = np.zeros(2)
    lam = lambda a, z: a * (1 - z[1]) / (TWO_PI * np.sqrt(1 - z[0] ** 2)) - 1
    a_prev, z_prev = 1e-3, z
    for a in np.linspace(0.1, 12, 240):
        z = unspec(a, z_prev)
        if lam(a, z) > 0:
            break
        a_prev, z_prev = a, z
    a_inst = brentq(lambda a: lam(a, unspec(a, z_prev)), a_prev, a, xtol=1e-14)
    zi = unspec(a_inst, z_prev)
    # specialised branch in D with unknowns (S, C, alpha)
    Ds = np.concatenate([np.geomspace(1e-5, 2e-2, 40), np.linspace(2e-2, 0.6, 120)])
    y = np.array([zi[0], zi[1], a_inst])
    alphas, fs, ys = [], [], []
    for D in Ds:
        F = lambda y: _grad(y[0] + D, y[0], y[1], K, y[2]) / np.array([D, 1.0, 1.0])
        y = fsolve(F, y, xtol=1e-13)
        alphas.append(y[2]); fs.append(_f(y[0] + D, y[0], y[1], K, y[2])); ys.append(y.copy())
    alphas = np.array(alphas)
    i = int(np.argmin(alphas))
    if alphas[i] > a_inst * (1 - 1e-7):
        return a_inst, a_inst
    # crossing of the free energies along the stable part
    zu = zi
    for j in range(i, len(Ds)):
        zu = unspec(alphas[j], zu)
        if fs[j] - _f(zu[0], zu[0], zu[1], K, alphas[j]) < 0:
            break
    ylo = ys[j - 1]

    def delta(D):
        F = lambda y: _grad(y[0] + D, y[0], y[1], K, y[2]) / np.array([D, 1.0, 1.0])
        yy = fsolve(F, ylo, xtol=1e-13)
        z = unspec(yy[2], zu)
        return _f(yy[0] + D, yy[0], yy[1], K, yy[2]) - _f(z[0], z[0], z[1], K, yy[2]), yy[2]

    Dc = brentq(lambda D: delta(D)[0], Ds[j - 1], Ds[j], xtol=1e-13)
    return a_inst, delta(Dc)[1]


def main(quick=False):
    g_relu, g_erf = jd.ReLU(), jd.Erf()
    t0 = time.perf_counter()
    for g in (g_relu, g_erf):  # compile: the pitchfork path (K=2) and the fold path (K=3)
        jd.specialisation_transition(K=2, g=g)
        jd.specialisation_transition(K=3, g=g)
    t_compile = time.perf_counter() - t0
    print(f"compile + first calls (K=2, 3; both activations): {t_compile:.1f} s")
    rows = []
    for K in (5, 10):
        for name, g in (("relu", g_relu), ("erf", g_erf)):
            t0 = time.perf_counter()
            tr = jd.specialisation_transition(K=K, g=g)
            dt = time.perf_counter() - t0
            rows.append((K, name, dt, tr.alpha_c))
            print(f"one transition K={K:2d} {name}: {dt:.2f} s  (alpha_c = {tr.alpha_c:.10f})")
    Ks = range(2, 8) if quick else range(2, 21)
    t0 = time.perf_counter()
    table = {(K, n): jd.specialisation_transition(K=K, g=g) for n, g in (("relu", g_relu), ("erf", g_erf))
             for K in Ks}
    t_table = time.perf_counter() - t0
    print(f"table K={Ks.start}..{Ks.stop - 1}, both activations ({len(table)} transitions): {t_table:.1f} s")
    # baseline, ReLU only
    Kb = (2, 3, 5, 10)
    t0 = time.perf_counter()
    base = {K: scipy_transition(K) for K in Kb}
    t_base = time.perf_counter() - t0
    t0 = time.perf_counter()
    mine = {K: jd.specialisation_transition(K=K, g=g_relu) for K in Kb}
    t_mine = time.perf_counter() - t0
    for K in Kb:
        print(f"  K={K:2d} ReLU alpha_inst jaxdyn {mine[K].alpha_inst:.12f} scipy {base[K][0]:.12f} | "
              f"alpha_c jaxdyn {mine[K].alpha_c:.12f} scipy {base[K][1]:.12f}")
    print(f"ReLU K in {Kb}: jaxdyn {t_mine:.2f} s, SciPy baseline {t_base:.2f} s, ratio {t_base / t_mine:.1f}x")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
