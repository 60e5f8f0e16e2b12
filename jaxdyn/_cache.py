"""JAX's persistent compilation cache for jaxdyn: where it lives and how to switch it on.

Compiling a vector field and its adaptive solver costs seconds (tens of seconds for a ReLU field at
K = M = 10); with the cache a new process loads the compiled program from disk instead. The `jaxdyn`
command switches it on by default (`jaxdyn --no-cache ...` or `JAXDYN_NO_CACHE=1` turn it off);
in a notebook or script call `jaxdyn.enable_compilation_cache()` once, before the first solve.
"""

from __future__ import annotations

import os
import pathlib

import jax


def default_cache_dir() -> pathlib.Path:
    """`$JAXDYN_CACHE_DIR`, else `$XDG_CACHE_HOME/jaxdyn/jax`, else `~/.cache/jaxdyn/jax`.

    Example:
        >>> jaxdyn.default_cache_dir().name
        'jax'
    """
    if os.environ.get("JAXDYN_CACHE_DIR"):
        return pathlib.Path(os.environ["JAXDYN_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base).expanduser() / "jaxdyn" / "jax"


def enable_compilation_cache(path=None, *, min_compile_time_secs: float = 0.0,
                             traces: bool = False) -> pathlib.Path:
    """Switch on JAX's persistent compilation cache (for this process) and return its folder.

    **Arguments:**
    - `path`: the cache folder (created if missing); default `default_cache_dir()`.
    - `min_compile_time_secs`: programs that compile faster than this are not written.
    - `traces`: also keep `integrate`'s traced solves (serialised with `jax.export`, in
      `path/traces`), so that a new process skips tracing too (about a second for a ReLU solve).
      An entry is keyed on everything static in the call, the package versions and a hash of
      jaxdyn's source; calls with user functions in their static part are never cached. The
      `jaxdyn` command switches it on.

    Programs that contain host callbacks are never cached by JAX. Equinox's runtime checks
    (`eqx.error_if`, e.g. diffrax's checks of `SaveAt` times) are such callbacks, so a solve is only
    cached when they are compiled out (`EQX_ON_ERROR=nan` in the environment before equinox is
    imported; the `jaxdyn` command does this itself while the cache is on — jaxdyn checks its inputs
    on the host before compiling, so the in-graph checks it loses are redundant there).

    Example (once per process, before the first solve; not run by the docstring tests because it
    would switch the cache on for the whole test session):

        import jaxdyn as jd
        jd.enable_x64()
        jd.enable_compilation_cache()          # ~/.cache/jaxdyn/jax, or a folder of your choice
    """
    folder = pathlib.Path(path).expanduser() if path is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    if traces:
        from . import _trace_cache

        _trace_cache.enable(folder / "traces")
    return folder
