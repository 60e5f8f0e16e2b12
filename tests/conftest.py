import os

os.environ.setdefault("MPLBACKEND", "Agg")
# the CLI switches on the persistent compilation cache (and compiles out equinox's runtime checks
# for it); tests that call it in-process must not change the rest of the session: tests/test_cache.py
# checks the cache in subprocesses
os.environ["JAXDYN_NO_CACHE"] = "1"

import jax


jax.config.update("jax_enable_x64", True)
# no implicit promotion between array dtypes (e.g. int32 + float32 -> float64 surprises): jaxdyn
# must say what it means; Python scalars stay weakly typed
jax.config.update("jax_numpy_dtype_promotion", "strict")

import numpy as np
import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Work units for pytest-xdist (`--dist loadgroup`): a whole test file per worker, so that a
    module's compiled programs are shared by its tests, except the notebooks, which are long
    and independent: one unit each."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            path, _, rest = item.nodeid.partition("::")
            group = item.nodeid if path.endswith("test_notebooks.py") else path
            item.add_marker(pytest.mark.xdist_group(group.replace("/", ".").replace("@", "_")))


@pytest.fixture
def rng():
    return np.random.default_rng(20261124)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's in-memory compilation caches after each test module: the whole suite compiles
    thousands of programs, and keeping them all grew the process past 6 GB (two whole-suite runs
    aborted inside XLA late in the run; every module passes on its own)."""
    yield
    import gc

    jax.clear_caches()
    gc.collect()
