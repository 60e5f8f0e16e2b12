"""Critical learning rates, each a one-dimensional root-finding problem in eta.

- `stability_threshold`: the eta at which a fixed point, followed as eta changes, loses stability
  (`max Re lambda = 0`);
- `fold_eta`: the eta at which the branch through a fixed point ends in a saddle-node (fold);
- `divergence_eta`: the smallest eta for which the trajectory from `op0` diverges (bisection on the
  divergence event of `jaxdyn.integrate`);
- `nonmonotonic_eta`: the eta above which `eps_g(alpha)` from `op0` stops decreasing monotonically
  (root of `max_alpha d ln eps_g / d alpha`).

Each returns a `Threshold(value, tol, kind, bracket, details)`; `float(th)` is the value and `tol`
the achieved tolerance (half the final bracket, or the conditioning estimate when larger).
Every per-eta evaluation is one `eqx.filter_jit`-compiled function with eta a JAX array, so a
search compiles once.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._fixed_points import (arc_correct, continuation, extended_field, fixed_point,
                            fixed_point_analysis, fixed_point_eta_derivative, flat_field,
                            flatten_op)
from ._integrate import integrate
from ._model import OrderParams, Scenario, check_order_params
from ._ode import OrderParamODE, as_ode, eps_g


class Threshold(eqx.Module):
    """A critical learning rate: `value` (0-d array), achieved tolerance `tol` (the true root lies
    within `value +- tol`, up to the model's own accuracy), `kind` ("stability", "fold",
    "divergence", "nonmonotonic"), the initial `bracket` (2,), and `details` (a dict: iterations,
    the fixed point there, ...). `float(th)` is the value; `th.as_dict()` the JSON-ready numbers.

    Example:
        >>> th = jaxdyn.Threshold(2.0, 1e-12, "stability", (0.5, 3.0))
        >>> float(th), th.as_dict()["bracket"]
    """

    value: jax.Array
    tol: jax.Array
    bracket: jax.Array
    kind: str = eqx.field(static=True)
    details: dict

    def __init__(self, value, tol, kind: str, bracket, details=None):
        self.value = jnp.asarray(value, dtype=float)
        self.tol = jnp.asarray(tol, dtype=float)
        self.kind = str(kind)
        self.bracket = jnp.asarray(bracket, dtype=float)
        self.details = {} if details is None else dict(details)

    def __float__(self):
        return float(self.value)

    def as_dict(self) -> dict:
        """`value`, `tol`, `kind`, `bracket` and the scalar/list entries of `details` as Python
        numbers (for JSON)."""
        return {"value": float(self.value), "tol": float(self.tol), "kind": self.kind,
                "bracket": [float(e) for e in self.bracket],
                **{k: v for k, v in self.details.items()
                   if isinstance(v, (int, float, str, bool, list))}}


def _illinois(h, a, b, fa, fb, *, xtol, maxiter=80):
    """Bracketing root finder (regula falsi, Illinois variant); returns (root, a, b, n_evals)."""
    if not (np.sign(fa) * np.sign(fb) < 0):
        raise ValueError(f"no sign change in [{a}, {b}]: h = {fa:.3e}, {fb:.3e}")
    side = 0
    n = 0
    while abs(b - a) > xtol and n < maxiter:
        c = (a * fb - b * fa) / (fb - fa)
        if not (min(a, b) < c < max(a, b)):
            c = 0.5 * (a + b)
        fc = h(c)
        n += 1
        if fc == 0:
            return c, c, c, n
        if np.sign(fc) == np.sign(fb):
            b, fb = c, fc
            if side == -1:
                fa *= 0.5
            side = -1
        else:
            a, fa = c, fc
            if side == 1:
                fb *= 0.5
            side = 1
        # keep the bracket shrinking even when one end is stuck
        if n % 4 == 0:
            m = 0.5 * (a + b)
            fm = h(m)
            n += 1
            if np.sign(fm) == np.sign(fa):
                a, fa = m, fm
            else:
                b, fb = m, fm
    return 0.5 * (a + b), a, b, n


# --------------------------------------------------------------------------- stability threshold
def stability_threshold(
    scenario: Scenario,
    fixed_point_guess,
    *,
    eta_bracket,
    eta2: bool = True,
    i4: str = "exact",
    order: int = 10,
    symmetry=None,
    xtol: float = 1e-10,
    ds_max: float = 0.05,
    method: str = "auto",
    with_fixed_point: bool = True,
) -> Threshold:
    """The eta in `eta_bracket` at which the fixed point near `fixed_point_guess` (at
    `eta_bracket[0]`), followed in eta, first changes stability (`max Re lambda` crosses 0).

    `method="pencil"` (tried first by `"auto"`): where the fixed point does not move with eta
    (perfect learning without noise or weight decay: the field is `eta f1 + eta^2 f2` with
    `f1 = f2 = 0` there), the Jacobian is `eta A + eta^2 B` and the threshold is where the pencil
    `A + eta B` first has an eigenvalue on the imaginary axis: a real crossing is a generalised
    eigenvalue of `(A, -B)`, a complex (Hopf) one a root of `max Re lambda(A + eta B)`. Two
    Jacobians (at the bracket ends), a third as a check, then only small dense linear algebra
    (`with_fixed_point=False` skips the analysed `FixedPoint` in `details`, whose Newton solver is
    the larger compilation at large K).
    `method="newton"` (tried next by `"auto"` when the fixed point moves): steps in eta with the
    tangent predictor `x* + (dx*/deta) d eta` (implicit derivative `-J^{-1} df/deta`, no extra
    solve) and one warm-started Newton corrector per step, the step growing while the corrector
    stays on the branch and aimed at the root extrapolated from the margins so far; the first sign
    change of `max Re lambda` is then refined by a bracketing root finder with the same predictor.
    A handful of Newton solves (`details["n_solves"]`). It does not follow a fold: where the
    corrector leaves the branch it gives up (`"auto"` then falls back to continuation).
    `method="continuation"`: the branch is followed by pseudo-arclength `continuation` (through
    folds) to locate the first sign change of the stability margin, which is then refined by the
    bracketing root finder on `eta -> max Re lambda(fixed_point(eta))`.

    Example (paper 000: K=M=1 perfect learning is stable for eta < 2):
        >>> pl = jaxdyn.OrderParams(Q=[[1.0]], R=[[1.0]])
        >>> jaxdyn.stability_threshold(jaxdyn.Scenario(K=1, M=1), pl, eta_bracket=(0.5, 3.0)).value
    """
    ode = as_ode(scenario, eta2=eta2, i4=i4, order=order)
    e0, e1 = (float(e) for e in eta_bracket)
    if method not in ("auto", "pencil", "newton", "continuation"):
        raise ValueError(f"method must be 'auto', 'pencil', 'newton' or 'continuation', got {method!r}")
    if method in ("auto", "pencil") and symmetry is None:
        th = _pencil_threshold(ode, fixed_point_guess, e0, e1, xtol=xtol, required=method == "pencil",
                               with_fixed_point=with_fixed_point)
        if th is not None:
            return th
    elif method == "pencil":
        raise ValueError("method='pencil' needs symmetry=None (the full Jacobian)")
    if method in ("auto", "newton"):
        try:
            return _newton_threshold(ode, fixed_point_guess, e0, e1, xtol=xtol, symmetry=symmetry)
        except _BranchLost as err:
            if method == "newton":
                raise ValueError(f"stability_threshold(method='newton'): {err}; use "
                                 "method='continuation' (it follows folds) or fold_eta") from None
    br = continuation(ode, fixed_point_guess, eta_start=e0, eta_stop=e1, symmetry=symmetry,
                      ds_max=ds_max, max_points=2000)
    mr = br.max_real
    s0 = np.sign(mr[0])
    idx = np.nonzero(np.sign(mr) != s0)[0]
    if idx.size == 0:
        raise ValueError(
            f"stability_threshold: max Re lambda keeps its sign ({mr[0]:.3e} .. {mr[-1]:.3e}) along "
            f"the branch from eta = {e0} ({br.stopped}, last eta {br.eta[-1]:.6g})"
        )
    j = int(idx[0])
    folds_before = [f for f in br.folds if f["index"] <= j]
    if folds_before:
        raise ValueError(
            f"stability_threshold: the branch folds at eta ~ {folds_before[0]['eta']:.6g} before it "
            "changes stability; use fold_eta"
        )
    ea, eb = float(br.eta[j - 1]), float(br.eta[j])
    xa, xb = np.asarray(br.x[j - 1]), np.asarray(br.x[j])
    dtype = jnp.result_type(float)
    cache = {}

    def h(e):
        w = (e - ea) / (eb - ea)
        guess = jnp.asarray((1 - w) * xa + w * xb, dtype)
        fp = fixed_point(ode, guess, eta=jnp.asarray(e, dtype))
        if not bool(fp.converged):
            raise RuntimeError(f"stability_threshold: Newton failed at eta = {e}")
        cache[e] = fp
        return float(fp.max_real)

    root, a, b, n = _illinois(h, ea, eb, float(mr[j - 1]), float(mr[j]), xtol=xtol)
    fp = fixed_point(ode, jnp.asarray(0.5 * (xa + xb), dtype), eta=jnp.asarray(root, dtype))
    # conditioning: d(max Re lambda)/d eta from the bracket ends
    slope = float(mr[j] - mr[j - 1]) / (eb - ea)
    tol = max(0.5 * abs(b - a), abs(float(fp.max_real)) / max(abs(slope), 1e-300),
              4 * np.finfo(float).eps * abs(root))
    lead = np.asarray(fp.eigenvalues)[0]
    return Threshold(
        value=float(root), tol=float(tol), kind="stability", bracket=(e0, e1),
        details={"n_evals": n, "n_branch_points": len(br.eta), "eigenvalue": complex(lead),
                 "hopf": bool(abs(lead.imag) > 1e-8), "fixed_point": fp,
                 "x": np.asarray(fp.x).tolist(), "n_unstable_before": int(br.n_unstable[j - 1]),
                 "n_unstable_after": int(br.n_unstable[j])},
    )


def _field_and_jacobian(ode, x, eta):
    # the program of `fixed_point`'s analysis (compiled once for both)
    a = fixed_point_analysis(ode, x, eta, jnp.asarray(True), jnp.asarray(0.0, x.dtype))
    return a["fx"], a["jacobian"]


class _BranchLost(Exception):
    """The natural-parameter march of `_newton_threshold` could not stay on the branch."""


def _newton_threshold(ode: OrderParamODE, guess, e0, e1, *, xtol, symmetry, max_solves=200):
    """The moving-fixed-point path of `stability_threshold`: tangent-predicted Newton steps in
    eta to the first sign change of the stability margin, then Illinois on the bracket."""
    dtype = jnp.result_type(float)
    n_solves = 0

    def solve(x_guess, e):
        nonlocal n_solves
        n_solves += 1
        fp = fixed_point(ode, jnp.asarray(x_guess, dtype), eta=jnp.asarray(e, dtype), symmetry=symmetry)
        return fp if bool(fp.converged) else None

    def point(fp, e):
        x = np.asarray(fp.x)
        t = np.asarray(fixed_point_eta_derivative(fp, ode))
        return {"eta": float(e), "x": x, "t": t, "h": float(fp.max_real), "fp": fp}

    fp0 = fixed_point(ode, guess, eta=jnp.asarray(e0, dtype), symmetry=symmetry)
    n_solves += 1
    if not bool(fp0.converged):
        raise ValueError(f"stability_threshold: Newton did not converge at eta = {e0} from the guess "
                         f"(residual {float(fp0.residual):.2e})")
    p = point(fp0, e0)
    s0 = np.sign(p["h"])
    if s0 == 0:
        raise ValueError(f"stability_threshold: the fixed point is marginal at eta = {e0}; start the "
                         "bracket elsewhere")
    pts = [p]

    def step_to(p, e):
        """Corrected point at e from p's tangent, or None if the corrector left the branch."""
        d = e - p["eta"]
        step = p["t"] * d
        # a fixed point that does not move (perfect learning) keeps its exact coordinates: at
        # singular covariances a rounding-level shift moves the Jacobian by far more
        pred = p["x"] if np.max(np.abs(step)) <= 1e-14 * (1 + np.max(np.abs(p["x"]))) else p["x"] + step
        fp = solve(pred, e)
        if fp is None:
            return None
        # on the branch, the corrector moves x by O(d^2): more than the predictor's own step
        # means it landed on another branch (or the branch folds within the step)
        move = float(np.max(np.abs(np.asarray(fp.x) - pred)))
        if move > 0.25 * float(np.max(np.abs(p["t"] * d))) + 1e-9 * (1 + float(np.max(np.abs(pred)))):
            return None
        return point(fp, e)

    de = (e1 - e0) / 16
    rejected = 0
    while True:
        if n_solves > max_solves:
            raise _BranchLost(f"no sign change of the stability margin after {max_solves} solves")
        # a fold ahead: the tangent blows up and the admissible step shrinks geometrically
        if de < 1e-6 * (e1 - e0) or (rejected >= 3 and de < 1e-3 * (e1 - e0)):
            raise _BranchLost(f"the corrector leaves the branch near eta = {p['eta']:.8g} "
                              "(a fold or a sharp turn)")
        e = min(p["eta"] + de, e1)
        q = step_to(p, e)
        if q is None:
            de *= 0.5
            rejected += 1
            continue
        rejected = 0
        pts.append(q)
        if np.sign(q["h"]) != s0:
            break
        if e >= e1:
            raise ValueError(f"stability_threshold: max Re lambda keeps its sign ({pts[0]['h']:.3e} .. "
                             f"{q['h']:.3e}) along the branch from eta = {e0} to {e1} (newton method)")
        # aim at the root of the margin extrapolated linearly, but grow at most 4x per step
        slope = (q["h"] - p["h"]) / (q["eta"] - p["eta"])
        de_next = 4.0 * de
        if slope * s0 < 0:  # moving towards zero
            de_next = min(de_next, 1.1 * abs(q["h"] / slope))
        de = max(de_next, 1e-3 * de)
        p = q
    a, b = pts[-2], pts[-1]
    cache = {a["eta"]: a, b["eta"]: b}

    def h(e):
        near = a if abs(e - a["eta"]) <= abs(e - b["eta"]) else b
        q = step_to(near, e)
        if q is None:  # predictor too far for the guard: retry from the other end
            other = b if near is a else a
            q = step_to(other, e)
        if q is None:
            raise _BranchLost(f"the corrector leaves the branch inside ({a['eta']:.8g}, {b['eta']:.8g})")
        cache[e] = q
        return q["h"]

    root, lo, hi, n = _illinois(h, a["eta"], b["eta"], a["h"], b["h"], xtol=xtol)
    if root not in cache:
        h(root)
    r = cache[root]
    fp = r["fp"]
    slope = (b["h"] - a["h"]) / (b["eta"] - a["eta"])
    tol = max(0.5 * abs(hi - lo), abs(r["h"]) / max(abs(slope), 1e-300),
              4 * np.finfo(float).eps * abs(root))
    lead = np.asarray(fp.eigenvalues)[0]
    return Threshold(
        value=float(root), tol=float(tol), kind="stability", bracket=(e0, e1),
        details={"method": "newton", "n_solves": n_solves, "n_evals": n,
                 "n_march_points": len(pts), "eigenvalue": complex(lead),
                 "hopf": bool(abs(lead.imag) > 1e-8), "fixed_point": fp, "x": r["x"].tolist(),
                 "n_unstable_before": int(a["fp"].n_unstable), "n_unstable_after": int(b["fp"].n_unstable)},
    )


def _pencil_threshold(ode: OrderParamODE, guess, e0, e1, *, xtol, required, with_fixed_point=True):
    """The perfect-learning fast path of `stability_threshold` (None if the fixed point moves)."""
    # deferred: scipy is a dev dependency, needed only on this path
    import scipy.linalg
    import scipy.optimize

    scenario = ode.scenario
    dtype = jnp.result_type(float)
    em = 0.5 * (e0 + e1)
    etas = (e0, e1, em)
    if isinstance(guess, OrderParams):
        check_order_params(scenario, guess)
        xg = flatten_op(guess)
    else:
        xg = jnp.asarray(guess, dtype)
    # cheap path: the guess is already a fixed point at every eta (one compiled Jacobian, no Newton)
    fj = [_field_and_jacobian(ode, jnp.asarray(xg, dtype), jnp.asarray(e, dtype)) for e in etas]
    x = np.asarray(xg, float)
    moved = 0.0
    ok = all(float(jnp.max(jnp.abs(f))) <= 1e-10 for f, _ in fj)
    if ok:
        Ja, Jb, Jm = (np.asarray(J) for _, J in fj)
    else:
        fa = fixed_point(ode, guess, eta=jnp.asarray(e0, dtype))
        fps = [fa] + [fixed_point(ode, fa.x, eta=jnp.asarray(e, dtype)) for e in (e1, em)]
        x = np.asarray(fa.x)
        moved = max(float(np.max(np.abs(np.asarray(f.x) - x))) for f in fps)
        ok = all(bool(f.converged) for f in fps) and moved <= 1e-12 * (1.0 + np.max(np.abs(x)))
        Ja, Jb, Jm = (np.asarray(f.jacobian) for f in fps)
    # J(e) = e A + e^2 B from the two ends; the midpoint checks the polynomial form
    B = (Jb / e1 - Ja / e0) / (e1 - e0)
    A = Ja / e0 - e0 * B
    scale = max(float(np.max(np.abs(Jm))), 1e-300)
    ok = ok and float(np.max(np.abs(em * A + em**2 * B - Jm))) <= 1e-9 * scale
    if not ok:
        if required:
            raise ValueError("stability_threshold(method='pencil'): the fixed point moves with eta "
                             f"(by {moved:.2e}) or its Jacobian is not eta A + eta^2 B")
        return None
    # for eta > 0 the eigenvalues of J have the signs of those of A + eta B
    zero_tol = 1e-9 * max(float(np.max(np.abs(A))), float(np.max(np.abs(B))) * e1, 1e-300)

    def h(e):
        return float(np.max(np.linalg.eigvals(A + e * B).real))

    h0 = h(e0)
    if abs(h0) <= zero_tol:
        raise ValueError(f"stability_threshold: the fixed point is marginal at eta = {e0} "
                         f"(max Re lambda / eta = {h0:.3e}); start the bracket elsewhere")
    s0 = np.sign(h0)
    # candidates: real crossings (generalised eigenvalues) and sign changes on a grid (Hopf)
    ev = scipy.linalg.eigvals(A, -B)
    real = np.sort(ev[np.isfinite(ev) & (np.abs(ev.imag) <= 1e-9 * np.abs(ev))].real)
    cands = [e for e in real if e0 < e <= e1]
    grid = np.linspace(e0, e1, 257)
    hg = np.array([h(e) for e in grid])
    flip = np.nonzero(np.sign(hg) != s0)[0]
    root, hopf, n_evals = None, False, 257
    if flip.size:
        j = int(flip[0])
        ga, gb = grid[j - 1], grid[j]
        real_in = [e for e in cands if ga - 1e-12 <= e <= gb + 1e-12]
        # a real crossing inside the first grid cell that changes sign: the eigenvalue is exact
        for e in real_in:
            if np.sign(h(min(e + 1e-9 * e, e1))) != s0 or np.sign(h(max(e - 1e-9 * e, e0))) != s0:
                root = float(e)
                break
        if root is None:
            root, r = scipy.optimize.brentq(h, ga, gb, xtol=min(xtol, 1e-14), full_output=True)
            n_evals += r.function_calls
            hopf = True
    # a real crossing between grid points where max Re returns to its sign within one cell
    for e in cands:
        if root is not None and e >= root:
            break
        if np.sign(h(min(e * (1 + 1e-9), e1))) != s0:
            root, hopf = float(e), False
            break
    if root is None:
        raise ValueError(
            f"stability_threshold: max Re lambda keeps its sign on [{e0}, {e1}] (pencil method)")
    lam = np.linalg.eigvals(A + root * B)
    lead = lam[np.argmax(lam.real)] * root
    hopf = hopf or abs(lead.imag) > 1e-8 * max(1.0, abs(lead))
    fp = fixed_point(ode, jnp.asarray(x, dtype), eta=jnp.asarray(root, dtype)) \
        if with_fixed_point else None
    eps = 1e-7 * root
    nu = lambda e: int(np.sum(np.linalg.eigvals(A + e * B).real > zero_tol))
    return Threshold(
        value=float(root), tol=float(max(xtol if hopf else 0.0, 1e3 * np.finfo(float).eps * root)),
        kind="stability", bracket=(e0, e1),
        details={"method": "pencil", "n_evals": n_evals, "n_jacobians": 3, "eigenvalue": complex(lead),
                 "hopf": bool(hopf), "fixed_point": fp, "x": x.tolist(),
                 "real_crossings": [float(e) for e in real if e > 0],
                 "n_unstable_before": nu(root - eps), "n_unstable_after": nu(root + eps)},
    )


# --------------------------------------------------------------------------- fold
def fold_eta(
    scenario: Scenario,
    fixed_point_guess,
    *,
    eta_start,
    eta_stop=None,
    eta2: bool = True,
    i4: str = "exact",
    order: int = 10,
    symmetry=None,
    stol: float = 1e-10,
    ds_max: float = 0.05,
) -> Threshold:
    """The eta at which the branch through the fixed point near `fixed_point_guess` (at
    `eta_start`) ends in a saddle-node: followed towards `eta_stop` (default: increasing eta, up to
    `10 eta_start`), the first fold (turning point, `d eta / ds = 0`) on it.

    Refinement: on the hyperplane `t_a . (y - y_a) = s` through the last branch point `y_a` before
    the fold (`t_a` its tangent), the corrected point `y(s)` and its tangent are smooth in `s`; the
    fold is the root of the tangent's eta component, found by a bracketing solver in `s`
    (first derivatives only: no extended system with second derivatives). `details` holds the
    fixed point at the fold (one eigenvalue ~ 0) and the eta of the partner branch point.

    Example (paper 001: the plateau fixed point, here near its fold, disappears at 1.2543259):
        >>> sc = jaxdyn.Scenario(K=2, M=2, T=jnp.diag(jnp.array([1.0, 2.0])))
        >>> guess = jaxdyn.OrderParams(Q=[[2.0, 0.85], [0.85, 2.0]], R=[[0.41, 0.9], [0.41, 0.9]])
        >>> fp = jaxdyn.symmetric_fixed_point(sc, guess, eta=jnp.array(1.25))
        >>> jaxdyn.fold_eta(sc, fp.x, eta_start=1.25, eta_stop=1.3, ds_max=0.01).value
    """
    ode = as_ode(scenario, eta2=eta2, i4=i4, order=order)
    e0 = float(eta_start)
    e1 = float(eta_stop) if eta_stop is not None else 10.0 * e0
    br = continuation(ode, fixed_point_guess, eta_start=e0, eta_stop=e1, symmetry=symmetry,
                      ds_max=ds_max, stop_at_fold=True, max_points=4000)
    if not br.folds:
        raise ValueError(f"fold_eta: no fold between eta = {e0} and {e1} ({br.stopped})")
    i = br.folds[0]["index"]
    dtype = jnp.result_type(float)
    ya = jnp.asarray(np.concatenate([br.x[i - 1], [br.eta[i - 1]]]), dtype)
    yb = np.concatenate([br.x[i], [br.eta[i]]])
    ta = jnp.asarray(br.tangent[i - 1], dtype)
    kw = dict(rtol=1e-8, atol=1e-11, max_steps=16)
    sb = float(jnp.dot(ta, jnp.asarray(yb) - ya))
    pts = {}

    def g(s):
        # predictor: the point on the chord from y_a to y_b with t_a . (y - y_a) = s
        y_pred = ya + (s / sb) * (jnp.asarray(yb) - ya)
        y, t, lam, nu, res, ok, _ = arc_correct(ode, y_pred, ta, ya, jnp.asarray(s, dtype), **kw)
        if not bool(ok):
            raise RuntimeError(f"fold_eta: corrector failed at s = {s}")
        pts[s] = (np.asarray(y), np.asarray(lam), float(res))
        return float(t[-1])

    g0 = float(br.tangent[i - 1][-1])
    gb = g(sb)
    root, a, b, n = _illinois(g, 0.0, sb, g0, gb, xtol=stol)
    g(root)
    y, lam, res = pts[root]
    eta_f = float(y[-1])
    # conditioning of (x, eta) at a regular fold: smallest singular value of [J | f_eta]
    A = np.asarray(jax.jacfwd(lambda yy: extended_field(ode, yy))(jnp.asarray(y)))
    smin = np.linalg.svd(A, compute_uv=False)[-1]
    ea = float(pts[a][0][-1]) if a in pts else float(ya[-1])
    eb = float(pts[b][0][-1]) if b in pts else float(yb[-1])
    tol = max(abs(ea - eta_f), abs(eb - eta_f), res / max(smin, 1e-300), 1e-15 * eta_f)
    fp = fixed_point(ode, jnp.asarray(y[:-1]), eta=jnp.asarray(eta_f, dtype))
    return Threshold(
        value=eta_f, tol=float(tol), kind="fold", bracket=(e0, e1),
        details={"n_evals": n, "n_branch_points": len(br.eta), "fixed_point": fp,
                 "x": y[:-1].tolist(), "eigenvalues_real": np.sort(lam.real)[::-1].tolist(),
                 "min_abs_eigenvalue": float(np.min(np.abs(lam))),
                 "n_unstable_on_branch": int(br.n_unstable[i - 1]),
                 "n_unstable_partner": int(br.n_unstable[i]), "branch": br},
    )


# --------------------------------------------------------------------------- trajectories
def _traj(ode, op0, eta, alphas, rtol, atol, max_steps, blowup):
    return integrate(ode.scenario, op0, eta=jnp.asarray(eta, jnp.result_type(float)),
                     alphas=alphas, eta2=ode.eta2, i4=ode.i4, rtol=rtol, atol=atol,
                     max_steps=max_steps, blowup=blowup, throw=False)


def divergence_eta(
    scenario: Scenario,
    op0: OrderParams,
    *,
    eta_bracket,
    alpha_max: float = 2000.0,
    xtol: float = 1e-7,
    eta2: bool = True,
    i4: str = "exact",
    order: int = 10,
    rtol: float = 1e-9,
    atol: float = 1e-11,
    max_steps: int = 200_000,
    blowup: float = 1e4,
) -> Threshold:
    """The smallest eta in `eta_bracket` for which the trajectory from `op0` diverges before
    `alpha_max` (bisection on `integrate(...).diverged`; the lower end must converge, the upper
    end diverge). Near the threshold the time to diverge grows, so `alpha_max` must be long enough:
    `details["alpha_diverged"]` reports it at the upper end of the final bracket.

    Example (K=M=1 ReLU from Q = 0.25, R = 0):
        >>> sc = jaxdyn.Scenario(K=1, M=1)
        >>> op0 = jaxdyn.OrderParams(Q=[[0.25]], R=[[0.0]])
        >>> th = jaxdyn.divergence_eta(sc, op0, eta_bracket=(2.0, 3.0), alpha_max=200.0, xtol=1e-4)
        >>> th.value, th.tol
    """
    ode = as_ode(scenario, eta2=eta2, i4=i4, order=order)
    check_order_params(ode.scenario, op0)
    lo, hi = (float(e) for e in eta_bracket)
    alphas = jnp.asarray([alpha_max], jnp.result_type(float))

    def run(e):
        tr = _traj(ode, op0, e, alphas, rtol, atol, max_steps, blowup)
        if not bool(tr.ok):
            raise RuntimeError(f"divergence_eta: integrate failed at eta = {e}: {tr.message()}")
        return bool(tr.diverged), float(tr.alpha_end)

    d_lo, _ = run(lo)
    d_hi, a_hi = run(hi)
    if d_lo or not d_hi:
        raise ValueError(f"divergence_eta: need convergence at {lo} and divergence at {hi} "
                         f"(got diverged={d_lo}, {d_hi})")
    n = 2
    while hi - lo > 2 * xtol:
        m = 0.5 * (lo + hi)
        d, a = run(m)
        n += 1
        if d:
            hi, a_hi = m, a
        else:
            lo = m
    return Threshold(value=0.5 * (lo + hi), tol=0.5 * (hi - lo), kind="divergence",
                     bracket=tuple(float(e) for e in eta_bracket),
                     details={"n_evals": n, "eta_converges": lo, "eta_diverges": hi,
                              "alpha_diverged": a_hi, "alpha_max": alpha_max})


@eqx.filter_jit
def _max_log_rate(ode, Q, R, eta, alphas, eps_floor):
    """max over recorded alpha of d ln eps_g / d alpha (parabolic refinement at the grid max),
    ignoring points where eps_g < eps_floor * eps_g(alpha_0) (there eps_g is rounding noise)."""

    def rate(q, r):
        op = OrderParams(Q=q, R=r)
        f = ode.field(op, eta)
        e, de = jax.jvp(lambda o: eps_g(ode.scenario, o), (op,), (f,))
        return de / e, e

    ok = jnp.all(jnp.isfinite(Q), axis=(-1, -2))
    Qs = jnp.where(ok[:, None, None], Q, jnp.eye(Q.shape[-1]))
    Rs = jnp.where(ok[:, None, None], R, 0.0)
    hr, e = jax.vmap(rate)(Qs, Rs)
    ok = ok & (e > eps_floor * e[0])
    h = jnp.where(ok, hr, -jnp.inf)
    j = jnp.clip(jnp.argmax(h), 1, h.shape[0] - 2)
    x0, x1, x2 = alphas[j - 1], alphas[j], alphas[j + 1]
    y0, y1, y2 = h[j - 1], h[j], h[j + 1]
    # vertex of the parabola through the three points
    d01, d12 = (y1 - y0) / (x1 - x0), (y2 - y1) / (x2 - x1)
    c2 = (d12 - d01) / (x2 - x0)
    xv = jnp.clip(0.5 * (x0 + x1) - d01 / (2 * jnp.where(c2 == 0, -1e-300, c2)), x0, x2)
    yv = y0 + d01 * (xv - x0) + c2 * (xv - x0) * (xv - x1)
    fin = jnp.isfinite(y0) & jnp.isfinite(y2) & (c2 < 0)
    return jnp.where(fin, jnp.maximum(yv, h[j]), jnp.max(h)), jnp.where(fin, xv, alphas[jnp.argmax(h)])


def nonmonotonic_eta(
    scenario: Scenario,
    op0: OrderParams,
    *,
    eta_bracket,
    alpha_max: float = 400.0,
    n_alpha: int = 4000,
    xtol: float = 1e-9,
    eta2: bool = True,
    i4: str = "exact",
    order: int = 10,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    max_steps: int = 200_000,
    eps_floor: float = 1e-7,
) -> Threshold:
    """The eta in `eta_bracket` above which `eps_g(alpha)` from `op0` is no longer monotonically
    decreasing on `[0, alpha_max]`: the root of `h(eta) = max_alpha d ln eps_g / d alpha`
    (`d eps_g / d alpha = grad eps_g . f` exactly at `n_alpha` recorded times, with a parabolic
    refinement at the maximum). Points where `eps_g < eps_floor * eps_g(0)` are ignored: after
    convergence eps_g is rounding noise (~1e-12) and its "increases" are not learning.
    `details["alpha_at_max"]` is where the first increase appears.

    Example (paper 001; 1.2173269 at the default `xtol`):
        >>> sc = jaxdyn.Scenario(K=2, M=2, T=jnp.diag(jnp.array([1.0, 2.0])))
        >>> op0 = jaxdyn.OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=1e-3 * jnp.eye(2))
        >>> jaxdyn.nonmonotonic_eta(sc, op0, eta_bracket=(1.2, 1.23), xtol=1e-4, n_alpha=1000).value
    """
    ode = as_ode(scenario, eta2=eta2, i4=i4, order=order)
    check_order_params(ode.scenario, op0)
    lo, hi = (float(e) for e in eta_bracket)
    dtype = jnp.result_type(float)
    alphas = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-3, alpha_max, n_alpha - 1)]).astype(dtype)
    info = {}

    def h(e):
        tr = _traj(ode, op0, e, alphas, rtol, atol, max_steps, 1e4)
        if not bool(tr.ok):
            raise RuntimeError(f"nonmonotonic_eta: integrate failed at eta = {e}: {tr.message()}")
        v, a = _max_log_rate(ode, tr.Q, tr.R, jnp.asarray(e, dtype), alphas,
                             jnp.asarray(eps_floor, dtype))
        info[e] = (float(a), bool(tr.diverged))
        return float(v)

    h_lo, h_hi = h(lo), h(hi)
    if not (h_lo < 0 < h_hi):
        raise ValueError(f"nonmonotonic_eta: need max d ln eps/d alpha < 0 at {lo} and > 0 at {hi} "
                         f"(got {h_lo:.3e}, {h_hi:.3e})")
    root, a, b, n = _illinois(h, lo, hi, h_lo, h_hi, xtol=xtol)
    hr = h(root)
    slope = (h_hi - h_lo) / (hi - lo)
    tol = max(0.5 * abs(b - a), abs(hr) / abs(slope), 4 * np.finfo(float).eps * abs(root))
    return Threshold(value=float(root), tol=float(tol), kind="nonmonotonic",
                     bracket=(lo, hi),
                     details={"n_evals": n + 3, "alpha_at_max": info[root][0],
                              "h_at_root": hr, "alpha_max": alpha_max})
