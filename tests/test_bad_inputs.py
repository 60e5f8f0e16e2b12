"""Bad input gets a `ValueError` that names the argument, never a number (and never a NaN).

A hypothesis-generated family: a valid call of each public entry point with one argument corrupted
(wrong shape, non-PSD overlaps, NaN, non-positive rates, ...)."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

import jaxdyn as jd


SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

SC = jd.Scenario(K=2, M=2, T=jnp.diag(jnp.array([1.0, 2.0])))
OP = jd.OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=1e-3 * jnp.eye(2))
ALPHAS = jnp.linspace(0.0, 1.0, 5)


def _bad_matrices(n, m=None):
    """Corruptions of an n x m (default square PSD) matrix argument, with what the message names."""
    m = n if m is None else m
    good = np.eye(n, m) * 0.5
    nan = good.copy()
    nan[0, 0] = np.nan
    out = [("shape", np.eye(n + 1, m)), ("nan", nan)]
    if n == m:
        nonpsd = np.eye(n)
        nonpsd[0, 0] = -1.0
        asym = good.copy()
        if n > 1:
            asym[0, 1] = 0.3
            out.append(("asym", asym))
        out.append(("nonpsd", nonpsd))
    return out


def _call_integrate(**kw):
    args = dict(scenario=SC, op0=OP, eta=0.5, alphas=ALPHAS)
    args.update(kw)
    sc, op0 = args.pop("scenario"), args.pop("op0")
    return jd.integrate(sc, op0, **args)


CASES = []
for kind, Q in _bad_matrices(2):
    CASES.append((f"integrate-Q-{kind}", "Q", lambda Q=Q: _call_integrate(op0=jd.OrderParams(Q=Q, R=OP.R))))
for kind, R in _bad_matrices(2, 3)[:1] + [("huge", 10 * np.eye(2))]:
    CASES.append((f"integrate-R-{kind}", "R", lambda R=R: _call_integrate(op0=jd.OrderParams(Q=OP.Q, R=R))))
for bad in (0.0, -0.5, np.nan, np.inf, [0.5, 0.6]):
    CASES.append((f"integrate-eta-{bad}", "eta", lambda bad=bad: _call_integrate(eta=bad)))
for name, a in [("nan", jnp.array([0.0, np.nan, 1.0])), ("decreasing", jnp.array([1.0, 0.5])),
                ("empty", jnp.zeros(0)), ("2d", jnp.zeros((2, 2))), ("inf", jnp.array([0.0, np.inf]))]:
    CASES.append((f"integrate-alphas-{name}", "alphas", lambda a=a: _call_integrate(alphas=a)))
for kind, T in _bad_matrices(2):
    CASES.append((f"Scenario-T-{kind}", "T", lambda T=T: jd.Scenario(K=2, M=2, T=T)))
for field, val in [("K", 0), ("M", -1), ("K", 1.5), ("noise", -0.1), ("weight_decay", -1.0),
                   ("batch_size", 0), ("v", np.ones(3)), ("w", np.ones(1)), ("g", "nonsense"),
                   ("noise", np.nan)]:
    kw = dict(K=2, M=2)
    kw[field] = val
    CASES.append((f"Scenario-{field}-{val}", field, lambda kw=kw: jd.Scenario(**kw)))
for fn in ("I2", "J2", "I3", "I4"):
    n = {"I2": 2, "J2": 2, "I3": 3, "I4": 4}[fn]
    for kind, C in _bad_matrices(n):
        CASES.append((f"{fn}-cov-{kind}", "cov", lambda fn=fn, C=C: getattr(jd, fn)(jnp.asarray(C), jd.ReLU())))
for order in (0, -1):
    CASES.append((f"I4-order-{order}", "order",
                  lambda order=order: jd.I4(jnp.eye(4), jd.Tanh(), method="hermite", order=order)))
CASES.append(("I4-method", "method", lambda: jd.I4(jnp.eye(4), jd.ReLU(), method="nonsense")))
for kind, Q in _bad_matrices(2):
    CASES.append((f"eps_g-Q-{kind}", "Q", lambda Q=Q: jd.eps_g(SC, jd.OrderParams(Q=Q, R=OP.R))))
for bad in (0.0, -1.0, np.nan):
    CASES.append((f"simulate-eta-{bad}", "eta",
                  lambda bad=bad: jd.simulate(SC, OP, eta=bad, N=50, alphas=ALPHAS)))
CASES.append(("simulate-N", "N", lambda: jd.simulate(SC, OP, eta=0.5, N=3, alphas=ALPHAS)))
for kind, Q in _bad_matrices(2):
    CASES.append((f"simulate-Q-{kind}", "Q",
                  lambda Q=Q: jd.simulate(SC, jd.OrderParams(Q=Q, R=OP.R), eta=0.5, N=50, alphas=ALPHAS)))
for bad in (0.0, -1.0, np.nan):
    CASES.append((f"fixed_point-eta-{bad}", "eta", lambda bad=bad: jd.fixed_point(SC, OP, eta=bad)))
CASES.append(("fixed_point-guess-shape", "guess", lambda: jd.fixed_point(SC, jnp.zeros(5), eta=0.5)))

# words the message must contain, per argument (it names the argument or what is wrong with it)
NAMES = {"Q": ("Q", "overlap"), "R": ("R", "overlap"), "T": ("T",), "cov": ("cov",),
         "guess": ("guess", "shape"), "g": ("activation",)}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_value_error(case):
    _, arg, call = case
    with pytest.raises(ValueError) as err:
        out = call()
        # if it returned, show what came back: a number is the defect this test is for
        pytest.fail(f"returned {out!r} instead of raising")
    words = NAMES.get(arg, (arg,))
    assert any(w in str(err.value) for w in words), f"message does not name {arg!r}: {err.value}"


@st.composite
def corrupted_state(draw):
    """A random state whose covariance is made non-PSD, or gets a NaN, or the wrong shape."""
    K = draw(st.integers(1, 3))
    M = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    A = rng.normal(size=(K + M, K + M + 1))
    C = A @ A.T / (K + M + 1)
    how = draw(st.sampled_from(["nonpsd", "nan", "shape"]))
    Q, R, T = C[:K, :K].copy(), C[:K, K:].copy(), C[K:, K:]
    if how == "nonpsd":
        R = R + 3.0 * np.sqrt(np.max(np.diag(Q)) * np.max(np.diag(T))) * np.sign(R + 1e-3)
    elif how == "nan":
        Q[rng.integers(K), rng.integers(K)] = np.nan
    else:
        R = np.zeros((K, M + 1))
    return K, M, T, Q, R


@SETTINGS
@given(corrupted_state(), st.sampled_from(["integrate", "eps_g", "simulate"]))
def test_corrupted_states_are_refused(state, entry):
    K, M, T, Q, R = state
    sc = jd.Scenario(K=K, M=M, T=jnp.asarray(T + 1e-9 * np.eye(M)))
    op = jd.OrderParams(Q=jnp.asarray(Q), R=jnp.asarray(R))
    with pytest.raises(ValueError):
        if entry == "integrate":
            out = jd.integrate(sc, op, eta=0.5, alphas=ALPHAS)
        elif entry == "eps_g":
            out = jd.eps_g(sc, op)
        else:
            out = jd.simulate(sc, op, eta=0.5, N=50, alphas=ALPHAS)
        pytest.fail(f"returned {out!r}")
