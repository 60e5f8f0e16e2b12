"""The papers' scenarios, initial conditions and named fixed points, in one public module.

- Paper 000: M. Straat, M. Biehl, "On-line learning dynamics of ReLU neural networks using
  statistical physics techniques", ESANN 2019 (arXiv:1903.07378).
- Paper 001: O. Citton, F. Richert, M. Biehl, "Phase transition analysis for shallow neural networks
  with arbitrary activation functions", ESANN 2025.
- Paper 002: F. Oostwal, M. Straat, M. Biehl, "Hidden unit specialization in layered neural networks:
  ReLU vs. sigmoidal activation", Physica A 564 (2021), arXiv:1910.07476.
- Paper 003: Y. Tian, "An analytical formula of population gradient for two-layered ReLU network and
  its applications in convergence and critical point analysis", ICML 2017 (arXiv:1703.00560).

Figures, tests and notebooks take their settings from here (`import jaxdyn as jd; jd.papers...`).

Example:
    >>> sc, op0 = jaxdyn.papers.paper001()
    >>> sc.T, op0.Q
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ._fixed_points import FixedPoint, fixed_point
from ._model import OrderParams, Scenario
from ._ode import OrderParamODE


def paper001_scenario() -> Scenario:
    """Paper 001's teacher-student setting: K = M = 2 ReLU units, T = diag(1, 2), v = w = 1."""
    return Scenario(K=2, M=2, T=jnp.diag(jnp.array([1.0, 2.0])))


def paper001_init() -> OrderParams:
    """Paper 001's initial condition: Q = diag(0.1, 0.2), R = 1e-3 I."""
    return OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=1e-3 * jnp.eye(2))


def paper001() -> tuple[Scenario, OrderParams]:
    """`(paper001_scenario(), paper001_init())`."""
    return paper001_scenario(), paper001_init()


def tian_R(K: int) -> float:
    """Paper 003, theorem (identical students, orthonormal teacher): every R_in at the saddle,
    `(sqrt(K-1) - acos(1/sqrt K) + pi) / (pi K)`."""
    return (np.sqrt(K - 1) - np.arccos(1 / np.sqrt(K)) + np.pi) / (np.pi * K)


def perfect_learning(sc: Scenario) -> OrderParams:
    """The perfect-learning fixed point R = T, Q = T (K = M)."""
    if sc.K != sc.M:
        raise ValueError("perfect learning R = Q = T needs K = M")
    return OrderParams(Q=sc.T, R=sc.T)


def symmetric_guess(sc: Scenario, r=None, q=None, c=None) -> OrderParams:
    """A PSD guess in the unspecialised subspace: R_in = r T_nn-scaled, Q_ii = q, Q_ik = c."""
    K = sc.K
    t = np.diag(np.asarray(sc.T))
    r = 0.5 if r is None else r
    R = np.tile(r * t, (K, 1))
    RRt = R @ np.linalg.solve(np.asarray(sc.T), R.T)
    s = RRt[0, 0]
    q = s + 0.3 if q is None else q
    c = s - 0.2 if c is None else c
    Q = np.full((K, K), c) + (q - c) * np.eye(K)
    return OrderParams(Q=jnp.asarray(Q), R=jnp.asarray(R))


def plateau_fixed_point(sc: Scenario, eta, *, eta2=True, i4="exact", order=10, guess=None
                        ) -> FixedPoint:
    """The unspecialised plateau fixed point (R_in = r_n, Q_ii = q, Q_ik = c, students *not*
    identical) at `eta`: searched in the symmetry subspace (small-eta field first, then the full
    field at `eta` from there), stability in the full space."""
    eta = jnp.asarray(eta, float)
    g = symmetric_guess(sc) if guess is None else guess
    fp = fixed_point(sc, g, eta=eta, eta2=False, symmetry="unspecialised")
    if eta2:
        ode = OrderParamODE(sc, i4=i4, order=order)
        fp = fixed_point(ode, fp.x, eta=eta, symmetry="unspecialised")
    return fp


def tian_saddle(K: int, eta=1.0) -> FixedPoint:
    """Paper 003's saddle of identical students (T = I, v = w = 1) as a fixed point of the
    small-eta ODE, found in the identical-student subspace."""
    sc = Scenario(K=K, M=K)
    r = 0.5
    g = OrderParams(Q=jnp.full((K, K), K * r**2 + 0.05) + 0.01 * jnp.eye(K), R=jnp.full((K, K), r))
    return fixed_point(sc, g, eta=jnp.asarray(eta, float), eta2=False, symmetry="identical")
