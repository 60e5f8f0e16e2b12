"""Execute every notebook (jupytext percent-format .py files) in fast mode."""

import os
import pathlib
import runpy

import jax
import pytest


NB = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.py"))
# Notebooks whose fast mode takes > 30 s on 2 cores (mostly compilation: fixed points,
# continuation and thresholds of the ReLU field, the statics transitions, gradients through
# diffrax; docs/testing.md) run in the slow set, which CI runs after the default suite
# (`.ci/run`); the physics they show is checked by the unit tests of the default run.
SLOW = {"paper001", "paper002", "protocols", "simulations", "paper003"}


@pytest.mark.parametrize(
    "path", [pytest.param(p, marks=[pytest.mark.slow] if p.stem in SLOW else []) for p in NB],
    ids=[p.stem for p in NB])
def test_notebook_runs(path, monkeypatch, tmp_path):
    monkeypatch.setenv("JAXDYN_FAST_NB", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        runpy.run_path(str(path), run_name="__main__")
    finally:
        plt.close("all")
    assert os.environ["JAXDYN_FAST_NB"] == "1"
    # the notebook ran under the suite's strict dtype promotion and left it on
    assert jax.config.jax_numpy_dtype_promotion == "strict"
