"""Execute every notebook (jupytext percent-format .py files) in fast mode."""

import os
import pathlib
import runpy

import jax
import pytest


NB = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.py"))
# The notebooks (13-70 s each in fast mode on 2 cores, mostly compilation) are in the extended set,
# which CI runs after the default suite (`.ci/run`, docs/testing.md); the physics they show is
# checked by the unit tests of the default run, and their code by the docstring examples.
@pytest.mark.extended
@pytest.mark.parametrize("path", NB, ids=[p.stem for p in NB])
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
