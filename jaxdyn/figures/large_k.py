"""ReLU soft committee machines at large K (new results): the learning rate at which perfect
learning loses stability, for K = M = 2..10, isotropic (T = I) and graded (T = diag(1..M))
teachers, each cross-checked by trajectories just below and above it; the fold of the
unspecialised plateau in eta (where the plateau disappears, and with it the finite trajectories
from a small-overlap start), also checked by trajectories.

`jaxdyn reproduce large-k-thresholds` writes `large-k-thresholds.png` (eta_c against K) and the
table as JSON. The threshold comes from the pencil method of `jaxdyn.stability_threshold`
(perfect learning does not move with eta, so the Jacobian is `eta A + eta^2 B`); the
cross-check integrates the full-eta^2 ODE from a point near perfect learning (students
`J_i = B_i + delta xi_i` in weight space, so the overlaps are a valid covariance) at
`eta_c (1 -+ rel)` and compares the distance to perfect learning at `alpha_max` with the start.
"""

from __future__ import annotations

import numpy as np

from .._reproduce import register


def teacher(K: int, kind: str):
    """T = I (`"isotropic"`) or T = diag(1..K) (`"graded"`)."""
    import jax.numpy as jnp

    if kind == "isotropic":
        return jnp.eye(K)
    if kind == "graded":
        return jnp.diag(jnp.arange(1.0, K + 1.0))
    raise ValueError(f"kind must be 'isotropic' or 'graded', got {kind!r}")


def perfect_learning_eta_c(K: int, kind: str, *, eta_bracket=(0.1, 3.0)):
    """The perfect-learning stability threshold (a `jaxdyn.Threshold`, pencil method)."""
    import jaxdyn as jd

    sc = jd.Scenario(K=K, M=K, T=teacher(K, kind))
    pl = jd.OrderParams(Q=sc.T, R=sc.T)
    return jd.stability_threshold(sc, pl, eta_bracket=eta_bracket, method="pencil", with_fixed_point=False)


def near_perfect_learning(K: int, kind: str, *, delta=1e-3, seed=0, dim=None):
    """Overlaps of students `B_i + delta xi_i` (xi_i random unit vectors) with the teacher."""
    import jax.numpy as jnp

    import jaxdyn as jd

    T = np.asarray(teacher(K, kind))
    dim = 3 * K if dim is None else dim
    rng = np.random.default_rng(seed)
    B = np.zeros((K, dim))
    B[:, :K] = np.diag(np.sqrt(np.diag(T)))
    X = rng.normal(size=(K, dim))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    J = B + delta * X
    return jd.OrderParams(Q=jnp.asarray(J @ J.T), R=jnp.asarray(J @ B.T))


def trajectory_check(K: int, kind: str, eta_c: float, *, rel=0.02, alpha_max=None, delta=1e-3):
    """Distance to perfect learning at alpha_max over the distance at 0, at eta_c (1 - rel) and
    eta_c (1 + rel): < 1 below (stable), > 1 or diverged above (unstable)."""
    import jax.numpy as jnp

    import jaxdyn as jd

    sc = jd.Scenario(K=K, M=K, T=teacher(K, kind))
    op0 = near_perfect_learning(K, kind, delta=delta)
    x_pl = np.asarray(jd.flatten_op(jd.OrderParams(Q=sc.T, R=sc.T)))
    d0 = np.max(np.abs(np.asarray(jd.flatten_op(op0)) - x_pl))
    alpha_max = float(alpha_max if alpha_max is not None else 40.0 / (rel * eta_c**2))
    out = {}
    for side, e in (("below", eta_c * (1 - rel)), ("above", eta_c * (1 + rel))):
        tr = jd.integrate(sc, op0, eta=jnp.asarray(e), alphas=jnp.array([alpha_max]),
                          rtol=1e-9, atol=1e-12, max_steps=400_000, throw=False)
        x = np.asarray(jd.flatten_op(jd.OrderParams(Q=tr.Q[-1], R=tr.R[-1])))
        ratio = float(np.max(np.abs(x - x_pl)) / d0) if np.all(np.isfinite(x)) else float("inf")
        out[side] = {"eta": float(e), "distance_ratio": ratio, "diverged": bool(tr.diverged),
                     "num_steps": int(tr.num_steps)}
    out["alpha_max"] = alpha_max
    out["confirms"] = bool(out["below"]["distance_ratio"] < 1 and not out["below"]["diverged"]
                           and (out["above"]["distance_ratio"] > 1 or out["above"]["diverged"]))
    return out


def symmetry_broken_start(K: int):
    """Paper 000's initial condition generalised to K units: `R = 1e-3 I`, `Q = diag(0.2..0.3)`
    (K = 2: `Q = diag(0.2, 0.3)`, Straat & Biehl, ESANN 2019)."""
    import jax.numpy as jnp

    import jaxdyn as jd

    return jd.OrderParams(Q=jnp.diag(jnp.linspace(0.2, 0.3, K)), R=1e-3 * jnp.eye(K))


def divergence_threshold(K: int, kind: str, *, lo: float, hi: float, alpha_max=1000.0, iters=10):
    """Bisection on eta for blow-up (`Trajectory.diverged`: some `Q_ii` beyond 1e4 max(1, |T|))
    before `alpha_max` from the symmetry-broken start; returns (eta_lo, eta_hi): the trajectory
    at eta_lo stays finite, the one at eta_hi diverges. Raises if the bracket is not one."""
    import jax.numpy as jnp

    import jaxdyn as jd

    sc = jd.Scenario(K=K, M=K, T=teacher(K, kind))
    op0 = symmetry_broken_start(K)

    def diverges(e):
        tr = jd.integrate(sc, op0, eta=jnp.asarray(e), alphas=jnp.array([alpha_max]),
                          max_steps=200_000, throw=False)
        return bool(tr.diverged) or not bool(np.all(np.isfinite(np.asarray(tr.Q[-1]))))

    if diverges(lo) or not diverges(hi):
        raise ValueError(f"(lo, hi) = ({lo}, {hi}) does not bracket the divergence at K = {K}")
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if diverges(mid) else (mid, hi)
    return lo, hi


def plateau_pattern(K: int, kind: str):
    """Label patterns of the unspecialised plateau: `Q_ii = q`, `Q_ik = c`, and `R_in = r`
    (isotropic teacher: every overlap equal) or `R_in = r_n` (graded teacher: one per teacher)."""
    import jaxdyn as jd

    Rp, Qp = jd.symmetry_patterns(K, K, "unspecialised")
    if kind == "isotropic":
        Rp = [["r"] * K for _ in range(K)]
    return Rp, Qp


def _plateau_system(K: int, kind: str):
    import jax.numpy as jnp

    import jaxdyn as jd

    sc = jd.Scenario(K=K, M=K, T=teacher(K, kind))
    P = jnp.asarray(jd.symmetry_basis(K, K, *plateau_pattern(K, kind)))
    return sc, jd.OrderParamODE(sc), P, jnp.linalg.pinv(P)


_JIT = {}


def _jitted(fn):
    """One `eqx.filter_jit` wrapper per function (so repeated calls reuse its compilations)."""
    if fn not in _JIT:
        import equinox as eqx

        _JIT[fn] = eqx.filter_jit(fn)
    return _JIT[fn]


def _projected_field_and_jacobian(ode, P, Pp, y):
    """The field projected on the subspace `x = P z` and its Jacobian in `y = (z, eta)`."""
    import jax

    import jaxdyn as jd

    K = ode.scenario.K

    def G(y):
        return Pp @ jd.flatten_op(ode.field(jd.unflatten_op(P @ y[:-1], K, K), y[-1]))

    return G(y), jax.jacfwd(G)(y)


def plateau_fold(K: int, kind: str, *, eta0=None, ds=0.05, max_points=400, stol=1e-13):
    """The saddle-node (fold) in eta of the unspecialised plateau fixed point, found by
    pseudo-arclength continuation inside the plateau's symmetry subspace (`plateau_pattern`:
    3 unknowns for T = I, K + 2 for the graded teacher) with the eta component of the tangent as
    the test function, refined by bisection in arclength. The plateau at `eta0` (default eta_c/2)
    is the end point of the trajectory from `plateau_start` (it attracts within the subspace).
    Only small linear algebra besides `jacfwd` of the projected field (d + 1 directions), so
    K = 10 costs seconds after compilation.
    Returns a dict: eta_fold, the plateau overlaps (q, c, r) at the fold, eps_g there, the number of
    branch points, and the smallest singular value of the subspace Jacobian there (~0)."""
    import jax.numpy as jnp

    import jaxdyn as jd

    sc, ode, P, Ppj = _plateau_system(K, kind)
    G_and_jac = _jitted(_projected_field_and_jacobian)
    Pn = np.asarray(P)
    Pp = np.linalg.pinv(Pn)
    eta0 = 0.5 * float(closed_form_eta_c(K)) if eta0 is None else float(eta0)
    tr = jd.integrate(sc, plateau_start(K), eta=jnp.asarray(eta0), alphas=jnp.array([300.0]),
                      throw=False)
    z = Pp @ np.asarray(jd.flatten_op(jd.OrderParams(Q=tr.Q[-1], R=tr.R[-1])))
    y = np.concatenate([z, [eta0]])

    def ev(y):
        g, J = G_and_jac(ode, P, Ppj, jnp.asarray(y))
        return np.asarray(g), np.asarray(J)

    def newton(y, t=None, y_ref=None, s=None, iters=12):
        for _ in range(iters):
            g, J = ev(y)
            if t is None:  # eta fixed
                dz = np.linalg.solve(J[:, :-1], -g)
                dy = np.concatenate([dz, [0.0]])
            else:  # on the hyperplane t . (y - y_ref) = s
                A = np.vstack([J, t])
                dy = np.linalg.solve(A, -np.concatenate([g, [t @ (y - y_ref) - s]]))
            y = y + dy
            if np.max(np.abs(dy)) < 1e-13 * (1 + np.max(np.abs(y))):
                break
        g, J = ev(y)
        return y, g, J

    def tangent(J, t_prev):
        t = np.linalg.svd(J)[2][-1]
        return t if t @ t_prev >= 0 else -t

    y, g, J = newton(y)
    if np.max(np.abs(g)) > 1e-10:
        raise RuntimeError(f"plateau_fold: no plateau fixed point at eta0 = {eta0} (residual {np.max(np.abs(g)):.2e})")
    t = tangent(J, np.eye(len(y))[-1])  # start towards larger eta
    n = 0
    while True:
        n += 1
        if n > max_points:
            raise RuntimeError(f"plateau_fold: no fold within {max_points} branch points (eta = {y[-1]:.6g})")
        y_new, g, J = newton(y + ds * t, t, y, ds)
        if np.max(np.abs(g)) > 1e-10 or np.max(np.abs(y_new - y)) > 4 * ds:
            ds *= 0.5
            if ds < 1e-8:
                raise RuntimeError("plateau_fold: the corrector fails")
            continue
        t_new = tangent(J, t)
        if t_new[-1] < 0:  # d eta / ds changed sign: the fold lies within this step
            break
        y, t = y_new, t_new
        ds = min(2 * ds, 0.2)
    # bisection in arclength on the eta component of the tangent
    a, b = 0.0, ds
    for _ in range(60):
        m = 0.5 * (a + b)
        ym, g, J = newton(y + m * t, t, y, m)
        if tangent(J, t)[-1] > 0:
            a = m
        else:
            b = m
        if b - a < stol:
            break
    yf, g, J = newton(y + 0.5 * (a + b) * t, t, y, 0.5 * (a + b))
    op = jd.unflatten_op(jnp.asarray(Pn @ yf[:-1]), K, K)
    return {"eta_fold": float(yf[-1]), "q": float(op.Q[0, 0]), "c": float(op.Q[0, 1]),
            "R": np.asarray(op.R).tolist(), "eps_g": float(jd.eps_g(sc, op)),
            "residual": float(np.max(np.abs(g))), "n_points": n,
            "min_singular_value": float(np.linalg.svd(J[:, :-1], compute_uv=False)[-1]),
            "x": (Pn @ yf[:-1]).tolist()}


def plateau_start(K: int):
    """The exactly unspecialised start `Q = I/4`, `R_in = 1e-3` (it stays in the plateau's
    subspace, up to rounding)."""
    import jax.numpy as jnp

    import jaxdyn as jd

    return jd.OrderParams(Q=0.25 * jnp.eye(K), R=1e-3 * jnp.ones((K, K)))


def fold_trajectory_check(K: int, kind: str, eta_fold: float, eps_g_fold: float, *, rel=0.003,
                          alpha_max=1500.0):
    """Trajectories from `plateau_start` at `eta_fold (1 -+ rel)`, recorded on 400 times: the
    smallest `max |f|` (the field) along each while `eps_g > eps_g_fold / 2` (on the plateau side,
    before specialisation). Below the fold the trajectory reaches the plateau fixed point (tiny
    `|f|`), then specialises; above it there is none to reach (`|f|` stays finite: the ghost of the
    fold, ~ sqrt(rel)) and the trajectory blows up or leaves."""
    import jax
    import jax.numpy as jnp

    import jaxdyn as jd

    sc = jd.Scenario(K=K, M=K, T=teacher(K, kind))
    ode = jd.OrderParamODE(sc)
    al = jnp.concatenate([jnp.zeros(1), jnp.geomspace(0.1, alpha_max, 399)])
    res = _jitted(_field_residuals)
    out = {}
    for side, e in (("below", eta_fold * (1 - rel)), ("above", eta_fold * (1 + rel))):
        tr = jd.integrate(sc, plateau_start(K), eta=jnp.asarray(e), alphas=al,
                          max_steps=400_000, throw=False)
        Q, R, eg = np.asarray(tr.Q), np.asarray(tr.R), np.asarray(tr.eps_g)
        ok = np.all(np.isfinite(Q), axis=(1, 2)) & np.isfinite(eg)
        r = np.asarray(res(ode, jnp.asarray(Q[ok]), jnp.asarray(R[ok]), jnp.asarray(e)))
        r = np.where(eg[ok] > 0.5 * eps_g_fold, r, np.inf)
        j = int(np.argmin(r))
        out[side] = {"eta": float(e), "min_residual": float(r[j]), "alpha_at_min": float(np.asarray(al)[ok][j]),
                     "diverged": bool(tr.diverged), "alpha_end": float(tr.alpha_end)}
    b, a = out["below"]["min_residual"], out["above"]["min_residual"]
    out["confirms"] = bool(b < 1e-6 and a > 100 * b)
    out["alpha_max"], out["rel"] = float(alpha_max), float(rel)
    return out


def _field_residuals(ode, Q, R, eta):
    import jax
    import jax.numpy as jnp

    import jaxdyn as jd

    one = lambda q, r: jnp.max(jnp.abs(jd.flatten_op(ode.field(jd.OrderParams(Q=q, R=r), eta))))
    return jax.vmap(one)(Q, R)


def closed_form_eta_c(K):
    """The perfect-learning threshold of the ReLU machine with K = M and any diagonal T: the
    smaller root of `(K^2 + K + 2) eta^2 - 4 (K + 1)(K + 2) eta + 16 (K + 1) = 0` (~ 4 / K at
    large K). Derived in the docs (`large_k.md`): it is the permutation-symmetric mode of the
    student components orthogonal to the teacher; `pencil_spectrum` lists every mode."""
    K = np.asarray(K, float)
    a, b, c = K * K + K + 2, 4 * (K + 1) * (K + 2), 16 * (K + 1)
    return (b - np.sqrt(b * b - 4 * a * c)) / (2 * a)


def pencil_spectrum(K: int) -> np.ndarray:
    """Every finite eta > 0 at which an eigenvalue of the perfect-learning Jacobian `eta A + eta^2 B`
    (ReLU, K = M, any diagonal T, no noise) crosses zero, with multiplicity, sorted: the derived
    generalised eigenvalues of `(A, -B)` (docs, `large_k.md`). The orthogonal student components
    `D` obey `dD/dalpha = -eta (P D + D P) + eta^2 M(D)`; by permutation symmetry the
    K(K+1)/2 modes split into a symmetric pair (the quadratic of `closed_form_eta_c`), K - 1 copies
    of a pair with `eta^2 - 2 (K + 2) eta + 4 (K + 2) = 0` and K(K - 3)/2 modes at eta = 4; the
    components along the teacher relax at rate O(eta) with no eta^2 term (no finite crossing).

    Example:
        >>> from jaxdyn.figures.large_k import pencil_spectrum
        >>> pencil_spectrum(2)  # 3 - sqrt(3), 4, 3 + sqrt(3)
    """
    K = int(K)
    if K < 1:
        raise ValueError(f"K must be >= 1, got {K}")
    if K == 1:  # one mode: -eta + eta^2 / 2
        return np.array([2.0])
    a, b, c = K * K + K + 2, 4 * (K + 1) * (K + 2), 16 * (K + 1)
    d = np.sqrt(b * b - 4 * a * c)
    roots = [(b - d) / (2 * a), (b + d) / (2 * a)]
    if K == 2:  # the standard irrep is one diagonal mode, -eta + eta^2 / 4
        roots.append(4.0)
    else:
        s = np.sqrt((K + 2.0) * (K - 2.0))
        roots += [K + 2 - s] * (K - 1) + [K + 2 + s] * (K - 1) + [4.0] * (K * (K - 3) // 2)
    return np.sort(np.asarray(roots, float))


def plot_eta_c(rows, *, ax, divergence=()):
    """eta_c against K from the rows of `large_k_thresholds` (dicts with K, teacher, eta_c), and
    the divergence thresholds (dicts with K, eta_div_lo, eta_div_hi) where given."""
    dv = [d for d in divergence if "eta_div_lo" in d]
    if dv:
        mid = np.array([0.5 * (d["eta_div_lo"] + d["eta_div_hi"]) for d in dv])
        half = np.array([0.5 * (d["eta_div_hi"] - d["eta_div_lo"]) for d in dv])
        # shifted right of the eta_c markers (the two nearly coincide)
        ax.errorbar([d["K"] + 0.12 for d in dv], mid, yerr=half, fmt="v", color="C3", capsize=2,
                    label="blow-up before alpha = 1000, T = I\n(symmetry-broken start; bracket)")
    for kind, m in (("isotropic", "o"), ("graded", "x")):
        r = [x for x in rows if x["teacher"] == kind]
        ax.plot([x["K"] for x in r], [x["eta_c"] for x in r], m, ms=7 if m == "o" else 9,
                mfc="none", label=f"$\\eta_c$, T = {'I' if kind == 'isotropic' else 'diag(1..M)'} (pencil)")
    Ks = sorted({x["K"] for x in rows})
    k = np.linspace(1, max(Ks), 200)
    ax.plot(k, closed_form_eta_c(k), "k-", lw=0.8, label="closed form (derived)")
    ax.plot(k, 4 / k, "k:", lw=0.8, label="4 / K")
    ax.set(xlabel="K = M", ylabel=r"learning rate $\eta$", yscale="log",
           title="where perfect learning\nloses stability")
    import matplotlib.ticker as mticker

    ax.yaxis.set_major_locator(mticker.FixedLocator([0.3, 0.4, 0.5, 0.7, 1, 1.5, 2, 3, 4]))
    ax.yaxis.set_major_formatter(mticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(mticker.NullFormatter())
    ax.set_xticks(Ks)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return ax


def plot_fold_ratio(folds, *, ax, divergence=()):
    """The plateau fold and the blow-up bracket as fractions of eta_c(K)."""
    for kind, m, c in (("isotropic", "o", "C0"), ("graded", "x", "C1")):
        f = [x for x in folds if x["teacher"] == kind and "eta_fold" in x]
        if f:
            ax.plot([x["K"] for x in f], [x["eta_fold"] / closed_form_eta_c(x["K"]) for x in f],
                    m + "-", color=c, mfc="none", ms=7, lw=0.8,
                    label=f"plateau fold, T = {'I' if kind == 'isotropic' else 'diag(1..M)'}")
    dv = [d for d in divergence if "eta_div_lo" in d]
    if dv:
        ec = closed_form_eta_c(np.array([d["K"] for d in dv]))
        lo = np.array([d["eta_div_lo"] for d in dv]) / ec
        hi = np.array([d["eta_div_hi"] for d in dv]) / ec
        ax.errorbar([d["K"] + 0.15 for d in dv], 0.5 * (lo + hi), yerr=0.5 * (hi - lo), fmt="v",
                    color="C3", capsize=2, label="blow-up bracket, T = I")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set(xlabel="K = M", ylabel=r"$\eta / \eta_c(K)$",
           title="plateau fold and the onset of blow-up\n(small-overlap starts)")
    Ks = sorted({x["K"] for x in folds})
    if Ks:
        ax.set_xticks(Ks)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return ax


@register("large-k-thresholds", "ReLU K=M=2..10 (T=I, T=diag(1..M)): perfect-learning eta_c(K) and plateau folds, checked on trajectories")
def large_k_thresholds(outdir, *, fast=False):
    import time

    import matplotlib.pyplot as plt

    Ks = [1, 2, 3, 4] if fast else list(range(1, 11))
    check_Ks = [2, 3] if fast else list(range(2, 11))
    rows = []
    for K in Ks:
        for kind in ("isotropic", "graded"):
            t0 = time.perf_counter()
            th = perfect_learning_eta_c(K, kind)
            row = {"K": K, "teacher": kind, "eta_c": th.value, "tol": th.tol,
                   "closed_form": float(closed_form_eta_c(K)),
                   "hopf": th.details["hopf"], "eigenvalue_at_eta_c": str(th.details["eigenvalue"]),
                   "seconds": time.perf_counter() - t0}
            if K in check_Ks:
                row["trajectories"] = trajectory_check(K, kind, th.value)
            rows.append(row)
            print(row, flush=True)
    div = []
    for K in ([2] if fast else [2, 3, 4, 6]):
        t0 = time.perf_counter()
        ec = float(closed_form_eta_c(K))
        try:
            lo, hi = divergence_threshold(K, "isotropic", lo=0.5 * ec, hi=2 * ec, iters=6 if fast else 10)
            d = {"K": K, "teacher": "isotropic", "eta_div_lo": lo, "eta_div_hi": hi,
                 "over_eta_c": 0.5 * (lo + hi) / ec}
        except ValueError as err:  # no blow-up in (eta_c / 2, 2 eta_c): say so
            d = {"K": K, "teacher": "isotropic", "error": str(err)}
        d["seconds"] = time.perf_counter() - t0
        div.append(d)
        print(d, flush=True)
    folds = []
    for K in ([2, 3] if fast else list(range(2, 11))):
        for kind in (("isotropic",) if fast else ("isotropic", "graded")):
            t0 = time.perf_counter()
            try:
                f = plateau_fold(K, kind)
                f.pop("x")
                d = {"K": K, "teacher": kind, **f,
                     "over_eta_c": f["eta_fold"] / float(closed_form_eta_c(K))}
                if not fast or K == 2:
                    d["trajectories"] = fold_trajectory_check(K, kind, f["eta_fold"], f["eps_g"])
            except RuntimeError as err:
                d = {"K": K, "teacher": kind, "error": str(err)}
            d["seconds"] = time.perf_counter() - t0
            folds.append(d)
            print(d, flush=True)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9.6, 3.9), constrained_layout=True)
    plot_eta_c(rows, ax=ax, divergence=div)
    plot_fold_ratio(folds, ax=ax2, divergence=div)
    fig.suptitle("ReLU soft committee machine, full $\\eta^2$ ODE (new results)", fontsize=10)
    fig.savefig(outdir / "large-k-thresholds.png", dpi=130)
    plt.close(fig)
    same = max(abs(a["eta_c"] - b["eta_c"]) for a, b in zip(rows[::2], rows[1::2]))
    return {"rows": rows, "divergence": div, "plateau_folds": folds,
            "max_isotropic_minus_graded": same,
            "all_trajectory_checks_confirm": all(r["trajectories"]["confirms"] for r in rows
                                                 if "trajectories" in r),
            "all_fold_checks_confirm": all(f["trajectories"]["confirms"] for f in folds
                                           if "trajectories" in f)}
