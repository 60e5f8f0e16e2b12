import os

os.environ.setdefault("MPLBACKEND", "Agg")
# the CLI switches on the persistent compilation cache (and compiles out equinox's runtime checks
# for it); tests that call it in-process must not change the rest of the session: tests/test_cache.py
# checks the cache in subprocesses
os.environ["JAXDYN_NO_CACHE"] = "1"
# Strict dtype promotion for the whole suite (no implicit int32 + int64, float64 + complex128,
# bool + float, ...; Python scalars stay weakly typed): theory code must say which dtype it means
# rather than let JAX promote silently. The environment variable carries it into the subprocesses
# that tests start (CLI, multi-host, sweep workers); the notebooks run in this process (runpy).
os.environ["JAX_NUMPY_DTYPE_PROMOTION"] = "strict"

import jax


jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")

import numpy as np
import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Work units for pytest-xdist (`--dist loadgroup`): a whole test file per worker, so that a
    module's compiled programs are shared by its tests, except the notebooks, which are long
    and independent: one unit each."""
    # the notebooks are the longest units: first, so that the short ones fill in at the end
    items.sort(key=lambda it: not it.nodeid.startswith("tests/test_notebooks.py"))
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            path, _, rest = item.nodeid.partition("::")
            group = item.nodeid if path.endswith("test_notebooks.py") else path
            item.add_marker(pytest.mark.xdist_group(group.replace("/", ".").replace("@", "_")))


@pytest.fixture
def rng():
    return np.random.default_rng(20261124)


def _rss_bytes() -> int:
    """Resident memory of this process (Linux `/proc`; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


# above this a worker drops its compiled programs after the module (bytes; JAXDYN_TEST_RSS_LIMIT_GB)
_RSS_LIMIT = float(os.environ.get("JAXDYN_TEST_RSS_LIMIT_GB", "2.5")) * 2**30


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's in-memory compilation caches after a test module once the process holds more
    than `_RSS_LIMIT`: the whole suite compiles thousands of programs, and keeping them all grew
    one process past 6 GB (two whole-suite runs aborted inside XLA late in the run), while
    clearing after every module recompiled the programs that modules share (the paper 001
    fixed-point analyses alone cost ~70 s of CPU per compilation set). Where `/proc` is missing
    the caches are dropped after every module."""
    yield
    import gc

    rss = _rss_bytes()
    if rss and rss < _RSS_LIMIT:
        return
    jax.clear_caches()
    gc.collect()
