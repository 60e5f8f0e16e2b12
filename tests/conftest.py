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

# One persistent compilation cache per test session, shared by the xdist workers. About a third of
# the suite's compile time is ~13,000 small programs (eager jnp operations on new shapes, ~35 ms
# each), compiled again in the other worker and after `_release_compiled_programs`; a cache hit
# loads one in ~3 ms. Big programs shared by test files in different workers (e.g. the statics
# scans, whose K is an argument) hit too. JAX's key is the program with its compile options, so a
# hit is the same executable; the folder is new for every session (made by the process that loads
# this file first, inherited by the workers through the environment, removed at exit), so a run
# never reads programs of an earlier run. `JAXDYN_TEST_SESSION_CACHE=0` turns it off
# (docs/testing.md has the measurements).
if os.environ.get("JAXDYN_TEST_SESSION_CACHE", "1") != "0":
    if not os.environ.get("JAXDYN_TEST_SESSION_CACHE_DIR"):
        import atexit
        import shutil
        import tempfile

        _folder = tempfile.mkdtemp(prefix="jaxdyn-test-jax-cache-")
        os.environ["JAXDYN_TEST_SESSION_CACHE_DIR"] = _folder
        atexit.register(shutil.rmtree, _folder, ignore_errors=True)
    jax.config.update("jax_compilation_cache_dir", os.environ["JAXDYN_TEST_SESSION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

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
