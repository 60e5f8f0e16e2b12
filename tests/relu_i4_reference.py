"""Independent NumPy/SciPy reference for the ReLU I4 (tests/test_relu_moments.py checks jaxdyn against it).

`I4 = E[theta(z1) theta(z2) relu(z3) relu(z4)] = E[z3 z4 prod_k theta(z_k)]` for a correlation
matrix C (unit diagonal, positive definite). Stein's lemma on z3 (docs/conventions.md, Gaussian averages):
`I4 = C34 P4 + sum_{j != 4} C3j phi(0) E[z4 prod_{k != j} theta_k | z_j = 0]`, the conditional
expectations again by Stein's lemma in terms of 2-D orthant probabilities (closed form), and the
4-D orthant probability P4 by Plackett's identity integrated along `C(t) = (1 - t) I + t C`
(Gauss-Legendre in t). Two equicorrelated checks: `equicorrelated_relu_i4` (1-D integral).
"""

import itertools

import numpy as np
from scipy.special import ndtr


def _orth2(r):
    return 0.25 + np.arcsin(np.clip(r, -1, 1)) / (2 * np.pi)


def _cond(C, j):
    """Covariance of the other variables given z_j = 0 (Schur complement), with index map."""
    keep = [k for k in range(C.shape[-1]) if k != j]
    Cj = C[..., :, j]
    S = C - Cj[..., :, None] * Cj[..., None, :] / C[..., j, j][..., None, None]
    return S[..., keep, :][..., :, keep], keep


def orthant4(C, n_gl=200):
    """P(z > 0) for z ~ N(0, C), C (..., 4, 4) correlation matrices, by Plackett's identity."""
    x, w = np.polynomial.legendre.leggauss(n_gl)
    t = 0.5 * (x + 1)
    w = 0.5 * w
    P = np.full(C.shape[:-2], 1 / 16)
    eye = np.eye(4)
    for tk, wk in zip(t, w):
        Ct = (1 - tk) * eye + tk * C
        for i, j in itertools.combinations(range(4), 2):
            k, l = [m for m in range(4) if m not in (i, j)]
            A = Ct[..., [i, j], :][..., :, [i, j]]
            B = Ct[..., [k, l], :][..., :, [i, j]]
            S = Ct[..., [k, l], :][..., :, [k, l]] - B @ np.linalg.solve(A, np.swapaxes(B, -1, -2))
            r = S[..., 0, 1] / np.sqrt(S[..., 0, 0] * S[..., 1, 1])
            rho = Ct[..., i, j]
            P = P + wk * C[..., i, j] * _orth2(r) / (2 * np.pi * np.sqrt(1 - rho**2))
    return P


def relu_i4_reference(C, n_gl=200):
    """Exact (to quadrature accuracy) ReLU I4 for correlation matrices C (..., 4, 4)."""
    C = np.asarray(C, float)
    out = C[..., 2, 3] * orthant4(C, n_gl)
    phi0 = 1 / np.sqrt(2 * np.pi)
    for j in (0, 1, 2):
        Cp, keep = _cond(C, j)  # law of the other three given z_j = 0
        q = keep.index(3)
        inner = 0.0
        for li in range(3):
            Cpp, keep2 = _cond(Cp, li)
            r = Cpp[..., 0, 1] / np.sqrt(Cpp[..., 0, 0] * Cpp[..., 1, 1])
            inner = inner + Cp[..., q, li] / np.sqrt(2 * np.pi * Cp[..., li, li]) * _orth2(r)
        out = out + C[..., 2, j] * phi0 * inner
    return out


def equicorrelated_relu_i4(r, n=400):
    """ReLU I4 for the equicorrelated 4x4 matrix (r >= 0) by a 1-D integral over the common factor."""
    x, w = np.polynomial.legendre.leggauss(n)
    u = 12 * x
    w = 12 * w * np.exp(-0.5 * u**2) / np.sqrt(2 * np.pi)
    a, s = np.sqrt(r) * u, np.sqrt(1 - r)
    p = ndtr(a / s)
    m = a * p + s * np.exp(-0.5 * (a / s) ** 2) / np.sqrt(2 * np.pi)
    return float(np.sum(w * p**2 * m**2))
