"""A persistent cache of traced solves (`jax.export`), beside JAX's compilation cache.

JAX's persistent cache stores compiled programs, but a new process still pays for tracing: for a
diffrax solve of a ReLU field that is about a second, as much as a cached run's whole compute. This
module serialises the traced solve (StableHLO, via `jax.export`) the first time and deserialises it
in later processes; compiling the deserialised module then hits JAX's compilation cache.

Safety: an entry's key is the repr of everything static in the call (the pytree structure, the
scenario's activation, solver, controller and options), the shapes and dtypes of the arrays, the
versions of jax/jaxlib/diffrax/equinox, the backend and a hash of jaxdyn's own source files; a call
whose static part has no stable repr (e.g. a user function, whose repr holds its address) is never
cached. Only `integrate` on concrete inputs uses it, and only when switched on
(`jaxdyn.enable_compilation_cache(traces=True)`; the `jaxdyn` command does).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import logging
import pathlib
import re

import equinox as eqx
import jax

from ._solution import Trajectory


_folder: pathlib.Path | None = None
stats = {"loaded": 0, "stored": 0}  # counts of this process (for tests and diagnostics)
# key -> (jitted call of the deserialised program, field names): a process reads and lowers each
# entry once, later calls with the same key go straight to the compiled program
_calls: dict = {}
_ADDRESS = re.compile(r" at 0x[0-9a-f]+|object at|<function|<lambda>")


def enable(folder) -> None:
    """Store traced solves under `folder` (None switches the trace cache off)."""
    global _folder
    _folder = None if folder is None else pathlib.Path(folder)
    if _folder is not None:
        _folder.mkdir(parents=True, exist_ok=True)


def enabled() -> bool:
    return _folder is not None


@functools.cache
def _environment() -> str:
    src = pathlib.Path(__file__).parent
    h = hashlib.sha256()
    for p in sorted(src.rglob("*.py")):
        h.update(p.relative_to(src).as_posix().encode())
        h.update(p.read_bytes())
    versions = []
    for pkg in ("jax", "jaxlib", "diffrax", "equinox", "optimistix", "lineax"):
        try:
            versions.append(f"{pkg}={importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{pkg}=?")
    return f"{h.hexdigest()}|{','.join(versions)}|{jax.default_backend()}"


def _key(static, dyn_leaves, dyn_def) -> str | None:
    text = repr((static, str(dyn_def), [(x.shape, str(x.dtype)) for x in dyn_leaves]))
    if _ADDRESS.search(text):  # no stable identity across processes: never cache
        return None
    return hashlib.sha256((text + "|" + _environment()).encode()).hexdigest()[:32]


def cached_solve(fn, args: tuple, static_kwargs: dict):
    """`fn(*args, **static_kwargs)` (a jaxdyn solve returning a `Trajectory`), traced at most once
    per key across processes. Returns None where the call cannot be cached (tracers among the
    inputs, no stable key, an export failure): the caller then runs `fn` itself."""
    if _folder is None:
        return None
    dyn, static = eqx.partition(args, eqx.is_array)
    dyn_leaves, dyn_def = jax.tree.flatten(dyn)
    if any(isinstance(x, jax.core.Tracer) for x in dyn_leaves):
        return None
    key = _key((static, sorted(static_kwargs.items(), key=lambda kv: kv[0])), dyn_leaves, dyn_def)
    if key is None:
        return None
    if key in _calls:
        call, present = _calls[key]
        return Trajectory(**dict(zip(present, call(*dyn_leaves))))
    names = [f.name for f in dataclasses.fields(Trajectory)]
    path = _folder / f"solve-{key}.jaxexport"
    meta = _folder / f"solve-{key}.fields"
    if path.exists() and meta.exists():
        try:
            exported = jax.export.deserialize(bytearray(path.read_bytes()))
            present = meta.read_text().split()
            call = jax.jit(exported.call)
            out = call(*dyn_leaves)
            stats["loaded"] += 1
            _calls[key] = (call, present)
            return Trajectory(**dict(zip(present, out)))
        except Exception:  # a corrupt or incompatible entry: trace anew (and overwrite it)
            pass

    present: list[str] = []

    def flat(*leaves):
        traj = fn(*eqx.combine(jax.tree.unflatten(dyn_def, leaves), static), **static_kwargs)
        present[:] = [n for n in names if getattr(traj, n) is not None]
        return tuple(getattr(traj, n) for n in present)

    try:
        specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in dyn_leaves]
        exported = jax.export.export(jax.jit(flat))(*specs)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(exported.serialize())
        meta.write_text(" ".join(present))
        tmp.replace(path)  # atomic: a concurrent reader sees the whole entry or none
        stats["stored"] += 1
        _calls[key] = (jax.jit(exported.call), present)
    except Exception as err:  # e.g. a host callback in the graph (not exportable): no trace cache
        logging.getLogger("jaxdyn").debug("trace cache: not stored (%s)", err)
        return None
    call, present = _calls[key]
    return Trajectory(**dict(zip(present, call(*dyn_leaves))))
