"""Every `>>>` example in the docstrings of the public API runs (outputs are not compared: the
numbers they quote are checked by the physics tests)."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn


def _examples():
    out = []
    for name in sorted(dir(jaxdyn)):
        obj = getattr(jaxdyn, name)
        if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        doc = inspect.getdoc(obj) or ""
        lines = [ln.strip() for ln in doc.splitlines()]
        code = [ln[4:] for ln in lines if ln.startswith(">>> ") or ln.startswith("... ")]
        if code:
            out.append((name, "\n".join(code)))
    return out


EXAMPLES = _examples()
SLOW = {"fold_eta"}  # a continuation to the fold with its refinement: ~1 min on 2 cores
# gradients through diffrax: each example compiles a reverse-mode solve (~10-60 s on 2 cores)
SLOW |= {"schedule_gradient", "optimize_schedule", "best_constant_eta", "pontryagin"}
# paper 002 statics: transition finders and the sampler compile for ~1 min on 2 cores
SLOW |= {"specialisation_transition", "specialised_branch", "equilibrium", "sample_gibbs",
         "large_K_transition", "unspecialised_branch", "single_unit", "full_hessian"}
# 5-10 s each on 2 cores (a solve, sweep or SGD program each): run by CI after the default set
# (docs/testing.md); the default run makes the same calls in test_solve_core, test_simulate,
# test_overlap_chain, test_sweep and test_fixed_points. simulate_objective and nonmonotonic_eta
# stay in the default run although as slow: their examples are its only calls of them.
EXTENDED = {"integrate", "simulate", "simulate_overlaps", "sweep", "Branch"}


def test_public_api_has_examples():
    for fn in ("I2", "I3", "I4", "integrate", "vector_field", "fixed_point", "simulate", "sweep"):
        assert fn in dict(EXAMPLES), f"jaxdyn.{fn} has no runnable example"


@pytest.mark.parametrize(
    "name,code",
    [pytest.param(n, c, marks=[pytest.mark.slow] if n in SLOW else
                  [pytest.mark.extended] if n in EXTENDED else []) for n, c in EXAMPLES],
    ids=[n for n, _ in EXAMPLES],
)
def test_docstring_example_runs(name, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import matplotlib

    matplotlib.use("Agg")
    exec(compile(code, f"<jaxdyn.{name} docstring>", "exec"),
         {"jaxdyn": jaxdyn, "jnp": jnp, "np": np, "jax": jax})
