"""Fixed points of the order-parameter ODEs, their stability, symmetric searches and continuation
in the learning rate.

**Flat coordinates.** All Jacobians, eigenvectors and branches use one documented order of the
`n = K M + K (K + 1) / 2` independent order parameters: `R` row-major, then the upper triangle of
`Q` row-major. For K = M = 2 that is `(R11, R12, R21, R22, Q11, Q12, Q22)` as in paper 000.
`flatten_op` / `unflatten_op` convert, `flat_labels(K, M)` names the coordinates. A perturbation of
the flat `Q12` moves both `Q12` and `Q21` (Q stays symmetric).
With a learned readout (`Scenario(eta_v=...)`) the state has K more coordinates, `v_1 .. v_K`,
appended last (`flat_labels(K, M, learn_v=True)`); named symmetry subspaces then also set all
`v_i` equal. Learning the readout brings continuous families of fixed points (perfect learning
realised by rescaled ReLU units, silenced units): their directions are zero eigenvalues, counted
in `n_marginal` (see `jaxdyn.readout_field`).

**Time scale.** The Jacobian is that of `d/dalpha` (alpha = steps / N). The small-learning-rate
field (`eta2=False`) is proportional to `eta`, so its eigenvalues are too: divide by `eta` for the
rate per unit of `eta * alpha`.

**Stability.** Eigenvalues are sorted by decreasing real part. `n_unstable` counts
`Re(lambda) > zero_tol`, `n_marginal` counts `|Re(lambda)| <= zero_tol` with
`zero_tol = 1e-7 * max(1, max|lambda|)`; `kind` is "stable" (all negative), "marginal" (none
positive, some zero), "saddle" (some positive, some not) or "unstable" (all positive).

**Differentiability.** `fixed_point` solves `f(x) = 0` with `optimistix.Newton`; the default
implicit adjoint makes `.x`, `.op`, `.jacobian` and `.eigenvalues` differentiable (forward and
reverse mode) with respect to `eta` and the scenario's array fields. The eigenvectors are
computed from a stopped-gradient Jacobian (their derivatives are not needed, and are undefined for
degenerate eigenvalues).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
import optimistix as optx

from ._model import OrderParams, Scenario, check_eta, check_order_params
from ._ode import OrderParamODE, as_ode, traced_field


# --------------------------------------------------------------------------- flat coordinates
def n_flat(K: int, M: int) -> int:
    """Number of independent order parameters, `K M + K (K + 1) / 2`."""
    return K * M + K * (K + 1) // 2


def n_state(scenario: Scenario) -> int:
    """Number of flat coordinates of a scenario's state (`n_flat`, plus K for a learned readout)."""
    return n_flat(scenario.K, scenario.M) + (scenario.K if scenario.learn_v else 0)


def flat_labels(K: int, M: int, *, learn_v: bool = False) -> tuple[str, ...]:
    """Names of the flat coordinates, e.g. `("R11", "R12", "R21", "R22", "Q11", "Q12", "Q22")`,
    followed by `"v1", ..., "vK"` for a learned readout."""
    r = [f"R{i + 1}{n + 1}" for i in range(K) for n in range(M)]
    q = [f"Q{i + 1}{k + 1}" for i in range(K) for k in range(i, K)]
    v = [f"v{i + 1}" for i in range(K)] if learn_v else []
    return tuple(r + q + v)


def flatten_op(op: OrderParams) -> jax.Array:
    """`OrderParams` -> flat vector (R row-major, then the upper triangle of Q row-major, then
    `v` if the state carries a readout). Leading batch axes are kept."""
    K = op.Q.shape[-1]
    iu, ju = np.triu_indices(K)
    R = jnp.asarray(op.R)
    parts = [R.reshape(R.shape[:-2] + (-1,)), jnp.asarray(op.Q)[..., iu, ju]]
    if op.v is not None:
        parts.append(jnp.asarray(op.v, parts[1].dtype))
    return jnp.concatenate(parts, -1)


def unflatten_op(x, K: int, M: int) -> OrderParams:
    """Flat vector (..., n) -> `OrderParams` (the inverse of `flatten_op`; a vector with K more
    coordinates than `n_flat(K, M)` carries the readout `v`)."""
    x = jnp.asarray(x)
    n = n_flat(K, M)
    if x.shape[-1] == n + K:
        op = unflatten_op(x[..., :n], K, M)
        return OrderParams(Q=op.Q, R=op.R, v=x[..., n:])
    if x.shape[-1] != n:
        raise ValueError(f"expected {n} flat coordinates for K={K}, M={M} ({n + K} with a learned "
                         f"readout), got {x.shape[-1]}")
    batch = x.shape[:-1]
    R = x[..., : K * M].reshape(batch + (K, M))
    q = x[..., K * M :]
    iu, ju = np.triu_indices(K)
    Q = jnp.zeros(batch + (K, K), x.dtype).at[..., iu, ju].set(q).at[..., ju, iu].set(q)
    return OrderParams(Q=Q, R=R)


def flat_field(scenario: Scenario | OrderParamODE, x, eta, *, eta2=True, i4="exact", order=10):
    """The vector field in flat coordinates: `flatten_op(ode.field(unflatten_op(x), eta))`, for an
    `OrderParamODE` or a scenario with the keyword options of `jaxdyn.vector_field`."""
    ode = as_ode(scenario, eta2=eta2, i4=i4, order=order)
    op = unflatten_op(x, ode.scenario.K, ode.scenario.M)
    # through the field's own jit: eager calls (and jacfwd of them) run one compiled program, and
    # the solvers that trace it (Newton, the analysis at a root) reuse its traced graph
    return flatten_op(traced_field(ode, op, jnp.asarray(eta)))


# --------------------------------------------------------------------------- symmetry subspaces
def symmetry_basis(K: int, M: int, R_pattern, Q_pattern) -> np.ndarray:
    """Basis `P` (n x d, 0/1 entries) of the subspace where flat coordinates with equal labels
    are equal: `x = P z`. `R_pattern` is a K x M nested list of hashable labels, `Q_pattern` a
    K x K symmetric one (only its upper triangle is read). Labels are shared between R and Q only
    if they are equal objects (use distinct names)."""
    R_pattern = np.asarray(R_pattern, dtype=object)
    Q_pattern = np.asarray(Q_pattern, dtype=object)
    if R_pattern.shape != (K, M) or Q_pattern.shape != (K, K):
        raise ValueError(f"patterns must have shapes {(K, M)} and {(K, K)}")
    iu, ju = np.triu_indices(K)
    labels = [("R", x) for x in R_pattern.reshape(-1)] + [("Q", Q_pattern[i, j]) for i, j in zip(iu, ju)]
    uniq = list(dict.fromkeys(labels))
    P = np.zeros((len(labels), len(uniq)))
    for a, lab in enumerate(labels):
        P[a, uniq.index(lab)] = 1.0
    return P


def symmetry_patterns(K: int, M: int, kind: str):
    """Named symmetry subspaces (label patterns for `symmetry_basis`):

    - `"unspecialised"`: the plateau of paper 000/001: `R_in = r_n` (equal per teacher),
      `Q_ii = q`, `Q_ik = c` (i != k).
    - `"identical"`: identical students (paper 003's saddle): `R_in = r_n`, all `Q_ik = q`.
    - `"site-symmetric"` (K = M): `R_ii = r`, `R_in = s` (i != n), `Q_ii = q`, `Q_ik = c`.
    """
    if kind == "unspecialised":
        Rp = [[f"r{n}" for n in range(M)] for _ in range(K)]
        Qp = [["q" if i == k else "c" for k in range(K)] for i in range(K)]
    elif kind == "identical":
        Rp = [[f"r{n}" for n in range(M)] for _ in range(K)]
        Qp = [["q"] * K for _ in range(K)]
    elif kind == "site-symmetric":
        if K != M:
            raise ValueError("site-symmetric needs K == M")
        Rp = [["r" if i == n else "s" for n in range(M)] for i in range(K)]
        Qp = [["q" if i == k else "c" for k in range(K)] for i in range(K)]
    else:
        raise ValueError(f"unknown symmetry {kind!r}; use 'unspecialised', 'identical', 'site-symmetric'")
    return Rp, Qp


# --------------------------------------------------------------------------- result
_KINDS = ("stable", "marginal", "saddle", "unstable")


class FixedPoint(eqx.Module):
    """A fixed point of the order-parameter ODEs and its linear stability.

    Fields: `op` (`OrderParams`), `x` (flat coordinates, see the module docstring), `eta`,
    `residual` (max |f(x)| over the flat components), `converged` (Newton succeeded and the
    residual is below `tol`), `num_steps`, `jacobian` (n x n, d/dalpha), `eigenvalues` (complex,
    decreasing real part), `eigenvectors` (columns, unit norm, largest component real positive),
    `n_unstable`, `n_marginal`, `basis` (the symmetry basis P for a symmetric search, else None) and
    `labels` (static coordinate names). Under vmap every array field gains a leading axis.
    """

    op: OrderParams
    x: jax.Array
    eta: jax.Array
    residual: jax.Array
    converged: jax.Array
    num_steps: jax.Array
    jacobian: jax.Array
    eigenvalues: jax.Array
    eigenvectors: jax.Array
    n_unstable: jax.Array
    n_marginal: jax.Array
    basis: jax.Array | None
    labels: tuple = eqx.field(static=True)

    @property
    def max_real(self):
        """Largest real part of the spectrum (the stability margin)."""
        return jnp.max(jnp.real(self.eigenvalues), axis=-1)

    @property
    def kind(self):
        """"stable", "marginal", "saddle" or "unstable" (a list under a batch axis)."""
        nu = np.asarray(self.n_unstable)
        nm = np.asarray(self.n_marginal)
        n = self.x.shape[-1]

        def one(u, m):
            if u == 0:
                return "stable" if m == 0 else "marginal"
            return "unstable" if u == n else "saddle"

        if nu.ndim == 0:
            return one(int(nu), int(nm))
        return [one(int(u), int(m)) for u, m in zip(nu.reshape(-1), nm.reshape(-1))]

    def subspace_eigenvalues(self):
        """Eigenvalues of the Jacobian restricted to the symmetry subspace (`P^+ J P`), for a
        symmetric search (None otherwise); the remaining ones are transverse to it."""
        if self.basis is None:
            return None
        P = np.asarray(self.basis)
        Pp = np.linalg.pinv(P)
        ev = np.linalg.eigvals(Pp @ np.asarray(self.jacobian) @ P)
        return ev[np.lexsort((ev.imag, -ev.real))]

    def summary(self) -> dict:
        """Plain-Python summary (JSON-serialisable)."""
        ev = np.asarray(self.eigenvalues)
        vec = np.asarray(self.eigenvectors)
        return {
            "eta": float(self.eta),
            "x": dict(zip(self.labels, np.asarray(self.x).tolist())),
            "residual": float(self.residual),
            "converged": bool(self.converged),
            "kind": self.kind,
            "n_unstable": int(self.n_unstable),
            "eigenvalues_real": ev.real.tolist(),
            "eigenvalues_imag": ev.imag.tolist(),
            "eigenvectors_real": vec.real.T.tolist(),
        }


def _spectrum(J):
    """Eigenvalues (differentiable) and eigenvectors (of the stopped-gradient J), both sorted by
    decreasing real part, then increasing imaginary part."""
    lam = jnp.linalg.eigvals(J)
    lam = lam[jnp.lexsort((jnp.imag(lam), -jnp.real(lam)))]
    w, V = jnp.linalg.eig(jax.lax.stop_gradient(J))
    order = jnp.lexsort((jnp.imag(w), -jnp.real(w)))
    V = V[:, order]
    # fix the phase: the largest-modulus component real and positive
    idx = jnp.argmax(jnp.abs(V), axis=0)
    piv = V[idx, jnp.arange(V.shape[1])]
    V = V * (jnp.abs(piv).astype(piv.dtype) / piv)[None, :]
    return lam, V


def _classify(lam):
    re = jnp.real(lam)
    zero_tol = 1e-7 * jnp.maximum(1.0, jnp.max(jnp.abs(lam)))
    return jnp.sum(re > zero_tol), jnp.sum(jnp.abs(re) <= zero_tol)


@eqx.filter_jit
def _newton(ode, x0, eta, basis, *, rtol, atol, max_steps, residual_tol):
    # Newton only: the analysis at the root is its own program (`field_and_jacobian`), shared by
    # every basis and solver option of one ODE and by the threshold finders
    if basis is None:
        z0 = x0

        def F(z, args):
            o, e = args
            return flat_field(o, z, e)
    else:
        Pp = jnp.linalg.pinv(basis)
        z0 = Pp @ x0

        def F(z, args):
            o, e = args
            return Pp @ flat_field(o, basis @ z, e)

    sol = optx.root_find(
        F, optx.Newton(rtol=rtol, atol=atol), z0, (ode, eta), max_steps=max_steps, throw=False
    )
    x = sol.value if basis is None else basis @ sol.value
    ok = (sol.result == optx.RESULTS.successful) | (sol.result == optx.RESULTS.max_steps_reached)
    # keep the guess if Newton made it worse (e.g. a singular Jacobian at an exact fixed point, as
    # at a transcritical bifurcation of the perfect-learning point), or if the guess is already a
    # root to `atol`: at singular covariances (perfect learning, |rho| = 1) the field is only
    # Hoelder there, and a Newton polish that moves x by 1e-10 moves the Jacobian by ~1e-5
    # (a guess already in the subspace is kept as given: P P^+ x0 differs from it by rounding,
    # which at singular covariances moves the Jacobian far more than the rounding itself)
    if basis is None:
        xg = x0
    else:
        xp = basis @ z0
        xg = jnp.where(jnp.max(jnp.abs(xp - x0)) <= 1e-14 * (1 + jnp.max(jnp.abs(x0))), x0, xp)
    res = lambda y: jnp.max(jnp.abs(flat_field(ode, y, eta)))
    r_new, r_old = res(x), res(xg)
    keep = ~(r_new <= r_old) | (r_old <= atol)
    # value from the chosen point, derivative (implicit function theorem) always from Newton's root
    x_d = jnp.where(jnp.isfinite(x), x, xg)
    x = lax.stop_gradient(jnp.where(keep, xg, x_d)) + (x_d - lax.stop_gradient(x_d))
    # a point whose residual is at the requested level is a fixed point whatever Newton's own
    # criterion said (at a singular Jacobian it may report divergence after landing on the root)
    ok = ok | (keep & jnp.isfinite(r_old)) | (r_new <= residual_tol)
    return x, ok, sol.stats["num_steps"]


@eqx.filter_jit
def fixed_point_analysis(ode, x, eta, ok, residual_tol):
    """The field, its Jacobian and spectrum at `x`, with the residual and convergence flag: one
    compiled program per ODE and shape, shared by every basis and solver option of `fixed_point`
    and by the threshold finders (which read `fx` and `J`)."""
    scenario = ode.scenario
    f = lambda y: flat_field(ode, y, eta)
    fx = f(x)
    J = jax.jacfwd(f)(x)
    lam, V = _spectrum(J)
    nu, nm = _classify(lam)
    res = jnp.max(jnp.abs(fx))
    conv = ok & (res <= residual_tol) & jnp.all(jnp.isfinite(x))
    return dict(op=unflatten_op(x, scenario.K, scenario.M), fx=fx, residual=res, converged=conv,
                jacobian=J, eigenvalues=lam, eigenvectors=V, n_unstable=nu, n_marginal=nm)


def _fixed_point_at(ode, x0, eta, basis, *, rtol, atol, max_steps, residual_tol):
    x, ok, num_steps = _newton(ode, x0, eta, basis, rtol=rtol, atol=atol, max_steps=max_steps,
                               residual_tol=residual_tol)
    a = fixed_point_analysis(ode, x, eta, ok, jnp.asarray(residual_tol, x.dtype))
    del a["fx"]
    scenario = ode.scenario
    return FixedPoint(x=x, eta=eta, num_steps=num_steps, basis=basis,
                      # the readout adds v1..vK
                      labels=flat_labels(scenario.K, scenario.M, learn_v=scenario.learn_v), **a)


def _as_flat(scenario, guess):
    if isinstance(guess, OrderParams):
        check_order_params(scenario, guess)
        if scenario.learn_v and guess.v is None:  # learned readout: v defaults to scenario.v
            guess = OrderParams(Q=guess.Q, R=guess.R, v=scenario.v)
        x = flatten_op(guess)
    else:
        x = jnp.asarray(guess, dtype=float)
        if x.shape[-1] != n_state(scenario):
            raise ValueError(
                f"guess must be OrderParams or a flat vector of length {n_state(scenario)}"
            )
    return jnp.asarray(x, dtype=jnp.result_type(float))


def fixed_point(
    scenario: Scenario,
    guess,
    *,
    eta,
    eta2: bool = True,
    i4: str = "exact",
    order: int = 10,
    rtol: float = 1e-9,
    atol: float = 1e-12,
    max_steps: int = 40,
    residual_tol: float = 1e-10,
    symmetry=None,
) -> FixedPoint:
    """Find a fixed point of the order-parameter ODEs near `guess` by Newton's method and analyse
    its stability.

    **Arguments:**
    - `scenario`: a `jaxdyn.Scenario` (or a `jaxdyn.OrderParamODE`, which carries the options
      below); `guess`: `OrderParams` or flat vector (see module doc).
    - `eta`: learning rate (a JAX array: no recompilation when it changes; may be traced, e.g.
      under `jax.jacfwd` for `d fixed point / d eta`).
    - `eta2`, `i4`, `order`: as in `jaxdyn.vector_field` (they build one `OrderParamODE`).
    - `rtol`, `atol`, `max_steps`: of `optimistix.Newton` (never throws; read `.converged`).
      Newton stops when a step is below `atol + rtol |x|` and `max|f| < atol`; its quadratic
      convergence makes the returned point far more accurate than `rtol` (the step before the
      last one was ~sqrt(rtol)), down to the rounding floor of the field.
    - `residual_tol`: `.converged` means `max|f(x*)| <= residual_tol` at the returned point (also
      when Newton used all its steps, e.g. at a near-singular Jacobian close to a fold, where its
      step-size criterion may not fire although the residual is at the rounding level ~1e-16).
    - `symmetry`: search inside a symmetry subspace: a name of `symmetry_patterns`
      ("unspecialised", "identical", "site-symmetric"), a pair `(R_pattern, Q_pattern)` of label
      patterns, or a basis matrix `P` (n x d). Newton runs on `P^+ f(P z) = 0`; the stability is
      analysed in the full space (`.subspace_eigenvalues()` gives the restricted spectrum), and
      the residual is that of the full field, so a non-invariant subspace shows up as
      `converged=False`.

    **Returns** a `FixedPoint`.

    Example:
        >>> sc = jaxdyn.Scenario(K=1, M=1)
        >>> fp = jaxdyn.fixed_point(sc, jaxdyn.OrderParams(Q=[[0.9]], R=[[0.9]]), eta=jnp.array(0.5))
        >>> fp.eigenvalues   # -eta/2, eta^2/2 - eta
    """
    ode = as_ode(scenario, eta2=eta2, i4=i4, order=order)
    scenario = ode.scenario
    check_eta(eta)
    x0 = _as_flat(scenario, guess)
    basis = _basis(scenario.K, scenario.M, symmetry, learn_v=scenario.learn_v)
    dtype = jnp.result_type(float)
    return _fixed_point_at(ode, x0, jnp.asarray(eta, dtype), basis, rtol=rtol, atol=atol,
                            max_steps=max_steps, residual_tol=residual_tol)


def _basis(K, M, symmetry, *, learn_v=False):
    if symmetry is None:
        return None
    n = n_flat(K, M) + (K if learn_v else 0)
    if isinstance(symmetry, str) or (isinstance(symmetry, tuple) and len(symmetry) == 2):
        pats = symmetry_patterns(K, M, symmetry) if isinstance(symmetry, str) else symmetry
        P = symmetry_basis(K, M, *pats)
        if learn_v:  # exchangeable students: one common readout v_i = v
            P = np.block([[P, np.zeros((P.shape[0], 1))], [np.zeros((K, P.shape[1])), np.ones((K, 1))]])
    else:
        P = np.asarray(symmetry, dtype=float)
        if P.ndim != 2 or P.shape[0] != n:
            raise ValueError(f"a symmetry basis must have shape ({n}, d)")
    return jnp.asarray(P, dtype=jnp.result_type(float))


def symmetric_fixed_point(scenario: Scenario, guess, *, eta, symmetry="unspecialised", **kw) -> FixedPoint:
    """`fixed_point(..., symmetry=symmetry)`: the search inside a symmetry subspace (default the
    unspecialised plateau `R_in = r_n`, `Q_ii = q`, `Q_ik = c`), stability in the full space.

    Example (paper 000's K=M=2 plateau, small-eta dynamics):
        >>> sc = jaxdyn.Scenario(K=2, M=2)
        >>> guess = jaxdyn.OrderParams(Q=[[0.7, 0.4], [0.4, 0.7]], R=[[0.5, 0.5], [0.5, 0.5]])
        >>> fp = jaxdyn.symmetric_fixed_point(sc, guess, eta=jnp.array(1.0), eta2=False)
        >>> fp.op.R[0, 0], fp.n_unstable     # 0.52457922..., 1 (specialisation)
    """
    return fixed_point(scenario, guess, eta=eta, symmetry=symmetry, **kw)


def fixed_point_eta_derivative(fp: FixedPoint, scenario: Scenario | OrderParamODE, *, eta2=True,
                               i4="exact", order=10):
    """`d x* / d eta = -J^{-1} df/deta` at a fixed point (the implicit-function theorem; the same
    as differentiating `fixed_point` with `jax.jacfwd`, without re-solving)."""
    ode = as_ode(scenario, eta2=eta2, i4=i4, order=order)
    return _eta_derivative(ode, fp.x, fp.eta, fp.jacobian)


@eqx.filter_jit
def _eta_derivative(ode, x, eta, J):
    # one forward-mode directional derivative in eta (compiled once per ODE and shape: the
    # Newton march of `stability_threshold` calls this at every step)
    _, fe = jax.jvp(lambda e: flat_field(ode, x, e), (eta,), (jnp.ones_like(eta),))
    return -jnp.linalg.solve(J, fe)


# --------------------------------------------------------------------------- continuation
class Branch(eqx.Module):
    """A branch of fixed points followed in eta by pseudo-arclength continuation.

    Arrays over the branch points (in the order they were computed): `eta` (m,), `x` (m, n),
    `eigenvalues` (m, n), `n_unstable` (m,), `residual` (m,), `tangent` (m, n + 1) (unit tangent in
    `(x, eta)`; its last component `d eta / ds` changes sign at a fold). `fold_index` and
    `change_index` are the (integer array) indices of the branch points just after a fold and just
    after a change of `n_unstable`; `folds` and `stability_changes` give them as lists of dicts
    `{"index", "eta", "eta_prev", ...}` (the eta there is that of the branch point after the event,
    to the branch's resolution; `fold_eta` / `stability_threshold` refine). `stopped` says why the
    continuation ended. `labels` are the flat coordinate names.

    Example:
        >>> sc = jaxdyn.Scenario(K=1, M=1)
        >>> pl = jaxdyn.OrderParams(Q=[[1.0]], R=[[1.0]])
        >>> br = jaxdyn.continuation(sc, pl, eta_start=0.5, eta_stop=2.5)
        >>> br.change_index, br.stability_changes[0]["eta"]   # stable below eta = 2
    """

    eta: jax.Array
    x: jax.Array
    eigenvalues: jax.Array
    n_unstable: jax.Array
    residual: jax.Array
    tangent: jax.Array
    fold_index: jax.Array
    change_index: jax.Array
    stopped: str = eqx.field(static=True)
    labels: tuple = eqx.field(static=True)

    @property
    def max_real(self):
        """`max Re lambda` at every branch point (m,)."""
        return jnp.max(jnp.real(self.eigenvalues), axis=-1)

    @property
    def folds(self) -> list:
        """The folds as dicts `{"index", "eta", "eta_prev"}`."""
        return [{"index": int(i), "eta": float(self.eta[i]), "eta_prev": float(self.eta[i - 1])}
                for i in np.asarray(self.fold_index)]

    @property
    def stability_changes(self) -> list:
        """The changes of `n_unstable` as dicts `{"index", "eta", "eta_prev",
        "n_unstable_before", "n_unstable_after"}`."""
        return [{"index": int(i), "eta": float(self.eta[i]), "eta_prev": float(self.eta[i - 1]),
                 "n_unstable_before": int(self.n_unstable[i - 1]),
                 "n_unstable_after": int(self.n_unstable[i])}
                for i in np.asarray(self.change_index)]

    def op(self, i) -> OrderParams:
        """The fixed point at branch index `i` as `OrderParams`."""
        K = sum(1 for s in self.labels if s.startswith("Q") and s[1] == s[2])
        M = sum(1 for s in self.labels if s.startswith("R")) // K
        return unflatten_op(jnp.asarray(self.x[i]), K, M)


def extended_field(scenario: Scenario | OrderParamODE, y, *, eta2=True, i4="exact", order=10):
    """The field on the extended space `y = (flat overlaps, eta)` of the continuation (and of the
    fold refinement of `jaxdyn.fold_eta`)."""
    return flat_field(as_ode(scenario, eta2=eta2, i4=i4, order=order), y[:-1], y[-1])


def _tangent(A, t_prev):
    """Unit null vector of the n x (n+1) matrix A, oriented along t_prev (bordered solve)."""
    n1 = A.shape[1]
    B = jnp.concatenate([A, t_prev[None, :]], axis=0)
    rhs = jnp.zeros(n1).at[-1].set(1.0)
    t = jnp.linalg.solve(B, rhs)
    t = t / jnp.linalg.norm(t)
    return t * jnp.sign(jnp.dot(t, t_prev))


@eqx.filter_jit
def arc_correct(ode: OrderParamODE, y_pred, t_ref, y_base, s, *, rtol, atol, max_steps):
    """Solve f(x, eta) = 0 on the hyperplane t_ref . (y - y_base) = s, starting from y_pred; return
    the point, its tangent (oriented along t_ref), spectrum and status."""

    def G(y, args):
        o, tr, yb, ss = args
        return jnp.concatenate([
            extended_field(o, y),
            jnp.dot(tr, y - yb)[None] - ss,
        ])

    sol = optx.root_find(G, optx.Newton(rtol=rtol, atol=atol), y_pred, (ode, t_ref, y_base, s),
                         max_steps=max_steps, throw=False)
    y = sol.value
    A = jax.jacfwd(lambda yy: extended_field(ode, yy))(y)
    t = _tangent(A, t_ref)
    lam = jnp.linalg.eigvals(A[:, :-1])
    lam = lam[jnp.lexsort((jnp.imag(lam), -jnp.real(lam)))]
    nu, _ = _classify(lam)
    res = jnp.max(jnp.abs(extended_field(ode, y)))
    ok = ((sol.result == optx.RESULTS.successful) | (sol.result == optx.RESULTS.max_steps_reached)) \
        & jnp.all(jnp.isfinite(y))
    return y, t, lam, nu, res, ok, sol.stats["num_steps"]


def continuation(
    scenario: Scenario,
    fixed_point_guess,
    *,
    eta_start,
    eta_stop,
    ds: float = 0.02,
    ds_min: float = 1e-6,
    ds_max: float = 0.05,
    max_points: int = 400,
    stop_at_fold: bool = False,
    eta2: bool = True,
    i4: str = "exact",
    order: int = 10,
    symmetry=None,
    residual_tol: float = 1e-9,
) -> Branch:
    """Follow the branch of fixed points through `fixed_point_guess` (a fixed point, or close to
    one, at `eta_start`) towards `eta_stop` by pseudo-arclength continuation in `(x, eta)`
    (predictor along the tangent, Newton corrector on the orthogonal hyperplane, adaptive step).
    The continuation passes folds (the branch turns back in eta, and the fixed point it meets
    there is followed beyond) and records them, and records changes of the number of unstable
    directions. It stops when eta leaves `[min, max]` of the start/stop interval (or drops to 0),
    after `max_points`, at a fold if `stop_at_fold`, or when the step size falls below `ds_min`.

    `symmetry` as in `fixed_point` is used only to correct the starting point.

    Example:
        >>> sc = jaxdyn.Scenario(K=1, M=1)
        >>> pl = jaxdyn.OrderParams(Q=[[1.0]], R=[[1.0]])     # perfect learning
        >>> br = jaxdyn.continuation(sc, pl, eta_start=0.5, eta_stop=2.5)
        >>> br.stability_changes      # one unstable direction from eta = 2 on
    """
    ode = as_ode(scenario, eta2=eta2, i4=i4, order=order)
    scenario = ode.scenario
    check_eta(eta_start)
    fp0 = fixed_point(ode, fixed_point_guess, eta=eta_start, symmetry=symmetry,
                      residual_tol=residual_tol)
    if not bool(fp0.converged):
        raise ValueError(
            f"continuation: no fixed point near the guess at eta = {float(eta_start)} "
            f"(residual {float(fp0.residual):.2e})"
        )
    if scenario.learn_v and int(fp0.n_marginal) > 0:
        raise ValueError(
            f"continuation: the fixed point has {int(fp0.n_marginal)} zero eigenvalue(s): with a "
            "learned readout it lies on a continuous family of fixed points (e.g. rescaled ReLU "
            "units or a silenced unit), which has no unique tangent. Continue the slice with the "
            "readout fixed at its fixed-point value instead: jaxdyn.Scenario(..., v=fp.op.v) "
            "without eta_v"
        )
    dtype = jnp.result_type(float)
    kw = dict(rtol=1e-8, atol=1e-11, max_steps=16)
    direction = 1.0 if eta_stop >= eta_start else -1.0
    lo, hi = min(eta_start, eta_stop), max(eta_start, eta_stop)
    y = jnp.concatenate([fp0.x, jnp.asarray(eta_start, dtype)[None]])
    n1 = y.shape[0]
    e_eta = jnp.zeros(n1, dtype).at[-1].set(direction)
    # initial tangent, oriented towards eta_stop
    _, t, lam, nu, res, ok, _ = arc_correct(ode, y, e_eta, y, jnp.asarray(0.0, dtype), **kw)
    etas, xs, lams, nus, ress, tans = [float(y[-1])], [np.asarray(y[:-1])], [np.asarray(lam)], \
        [int(nu)], [float(res)], [np.asarray(t)]
    folds, changes = [], []
    h = float(ds)
    stopped = "max_points"
    while len(etas) < max_points:
        y_pred = y + h * t
        y_new, t_new, lam, nu, res, ok, _ = arc_correct(
            ode, y_pred, t, y, jnp.asarray(h, dtype), **kw
        )
        ok = bool(ok) and float(res) <= residual_tol
        # reject steps that jump: the tangent should turn by less than ~30 degrees
        if ok and float(jnp.dot(t_new, t)) < 0.85:
            ok = False
        if not ok:
            h *= 0.5
            if h < ds_min:
                stopped = "step size below ds_min (corrector failed)"
                break
            continue
        i = len(etas)
        if np.sign(float(t_new[-1])) != np.sign(float(t[-1])) and float(t[-1]) != 0.0:
            folds.append({"index": i, "eta": float(y_new[-1]), "eta_prev": float(y[-1])})
        if int(nu) != nus[-1]:
            changes.append({"index": i, "eta": float(y_new[-1]), "eta_prev": float(y[-1]),
                            "n_unstable_before": nus[-1], "n_unstable_after": int(nu)})
        y, t = y_new, t_new
        etas.append(float(y[-1]))
        xs.append(np.asarray(y[:-1]))
        lams.append(np.asarray(lam))
        nus.append(int(nu))
        ress.append(float(res))
        tans.append(np.asarray(t))
        if folds and stop_at_fold:
            stopped = "fold"
            break
        if not (lo - 1e-12 <= etas[-1] <= hi + 1e-12) or etas[-1] <= 0:
            stopped = "left the eta interval"
            break
        h = min(h * 1.3, ds_max)
    return Branch(
        eta=jnp.asarray(etas), x=jnp.asarray(np.array(xs)), eigenvalues=jnp.asarray(np.array(lams)),
        n_unstable=jnp.asarray(nus), residual=jnp.asarray(ress), tangent=jnp.asarray(np.array(tans)),
        fold_index=jnp.asarray([f["index"] for f in folds], int),
        change_index=jnp.asarray([c["index"] for c in changes], int), stopped=stopped, labels=flat_labels(scenario.K, scenario.M, learn_v=scenario.learn_v),
    )
