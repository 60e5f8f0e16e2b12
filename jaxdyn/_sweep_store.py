"""Storage of a sweep: fingerprint, chunk files (atomic writes), resume, assembly, multi-host I/O.

Each finished chunk is written to `<path>.parts/chunk_XXXXX.nc` (temporary file + atomic rename);
an interrupted sweep finds them and computes only what is missing. When all chunks are there, the
labeled dataset is assembled and written to `path` (NetCDF), and the parts folder is removed.
With several processes (`jax.distributed.initialize`), process 0 reads and writes the files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil

import equinox as eqx
import jax
import numpy as np
from jax.experimental import multihost_utils

from ._model import OrderParams, Scenario
from ._sweep_grid import FIELD_DIMS, Grid


def is_main_process() -> bool:
    return jax.process_index() == 0


def to_host(x):
    if jax.process_count() > 1:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)




def fingerprint(scenario, op0, alphas, alpha0, grid, cfg, knobs, chunk_size, cost_order) -> str:
    h = hashlib.sha256()

    def add(x):
        if isinstance(x, (np.ndarray, jax.Array)):
            a = np.ascontiguousarray(np.asarray(x))
            h.update(str((a.dtype, a.shape)).encode())
            h.update(a.tobytes())
        else:
            h.update(repr(x).encode())

    leaves, tdef = jax.tree.flatten(eqx.filter((scenario, op0), eqx.is_array))
    add(str(tdef))
    add(str(jax.tree.structure(eqx.filter((scenario, op0), eqx.is_array, inverse=True))))
    add(repr(eqx.filter((scenario, op0), eqx.is_array, inverse=True)))
    for leaf in leaves:
        add(leaf)
    add(alphas)
    add(float(alpha0))
    for name in sorted(grid.flat):
        add(name)
        add(grid.flat[name])
    add(grid.dims)
    for k in sorted(knobs):
        add(k)
        add(knobs[k])
    add((cfg.eta2, cfg.i4, cfg.order, cfg.rtol, cfg.atol, cfg.max_steps, cfg.blowup, cfg.stop_tol,
         cfg.save_order_params, getattr(cfg.transform, "__qualname__", None)))
    add((repr(cfg.solver), repr(cfg.controller), cfg.dt0))
    add(int(chunk_size))
    add(cost_order)
    return h.hexdigest()[:32]


def atomic_write_netcdf(ds, path: pathlib.Path):
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    ds.to_netcdf(tmp, engine="netcdf4")
    os.replace(tmp, path)


def chunk_path(parts: pathlib.Path, c: int) -> pathlib.Path:
    return parts / f"chunk_{c:05d}.nc"


def parts_dir(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(path.name + ".parts")


POINT_VARS_DIMS = {
    "eps_g": ("alpha",), "Q": ("alpha", "i", "k"), "R": ("alpha", "i", "n"),
    "Q_final": ("i", "k"), "R_final": ("i", "n"), "alpha_to_eps": ("eps_target",),
}


def chunk_dataset(out: dict, points: np.ndarray):
    import xarray as xr

    data = {k: (("point",) + POINT_VARS_DIMS.get(k, ()), np.asarray(v)) for k, v in out.items()}
    return xr.Dataset(data, coords={"point": points})


VAR_DESCRIPTIONS = {
    "eps_g": "generalisation error at the recorded alphas (inf after a divergence)",
    "eps_g_final": "eps_g at the last recorded alpha",
    "eps_g_min": "smallest recorded eps_g",
    "nonmonotonic": "eps_g rises above its running minimum by more than rise_rtol (finite part, "
                    "above eps_floor); diverged curves usually have it too: use `regime`",
    "eps_rise": "largest relative rise of eps_g above its running minimum",
    "alpha_nonmonotonic": "first recorded alpha at which the rise exceeds rise_rtol",
    "plateau_height": "eps_g in the middle of the longest flat stretch (|d ln eps_g/d(eta alpha)| < plateau_rate)",
    "plateau_length": "alpha-length of that stretch (0: none)",
    "plateau_start": "alpha where the plateau starts",
    "plateau_end": "alpha where the plateau ends",
    "alpha_to_eps": "first alpha with eps_g <= eps_target (log-linear interpolation; nan: never)",
    "alpha_diverged": "alpha at which the blow-up event fired (nan: no divergence)",
    "diverged": "the order parameters blew up",
    "regime": "-1 failed, 0 monotonic, 1 non-monotonic, 2 divergent",
    "status": "jaxdyn.RESULTS code",
    "alpha_end": "last alpha reached by the solver (blow-up, steady-state stop or alphas[-1])",
    "alpha_stop": "alpha of the steady-state stop (nan: none)",
    "num_steps": "accepted + rejected solver steps",
    "Q_final": "Q where the solve ended", "R_final": "R where the solve ended",
}


def assemble(grid: Grid, alphas, eps_targets, chunks: list, attrs: dict, scenario, op0):
    import xarray as xr

    P = grid.size
    merged: dict = {}
    have = np.zeros(P, bool)
    for ds in chunks:
        pts = ds["point"].values
        have[pts] = True
        for k, da in ds.data_vars.items():
            if k not in merged:
                shape = (P,) + da.shape[1:]
                if da.dtype == bool:
                    merged[k] = np.zeros(shape, bool)
                elif np.issubdtype(da.dtype, np.integer):
                    merged[k] = np.full(shape, -1, da.dtype)
                else:
                    merged[k] = np.full(shape, np.nan, da.dtype)
            merged[k][pts] = da.values
    gdims = tuple(d for d, _ in grid.dims)
    data = {}
    for k, v in merged.items():
        extra = POINT_VARS_DIMS.get(k, ())
        data[k] = (gdims + extra, v.reshape(grid.shape + v.shape[1:]), {"description": VAR_DESCRIPTIONS.get(k, "")})
    coords = {d: grid.coords[d] for d in gdims}
    coords["alpha"] = np.asarray(alphas)
    coords["eps_target"] = np.asarray(eps_targets, float)
    for name, (dim, arr) in grid.fields.items():
        if name != "eta" and name != dim:
            coords[name] = ((dim,) + FIELD_DIMS.get(name, tuple(f"{name}_{j}" for j in range(arr.ndim - 1))), arr)
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    ds["eps_g"].attrs["long_name"] = "generalisation error"
    ds["regime"].attrs["flag_values"] = np.array([-1, 0, 1, 2], np.int8)
    ds["regime"].attrs["flag_meanings"] = "failed monotonic non_monotonic divergent"
    ds.attrs["complete"] = int(have.all())
    ds.attrs["n_missing"] = int((~have).sum())
    ds.attrs["K"], ds.attrs["M"] = scenario.K, scenario.M
    ds.attrs["T"] = json.dumps(np.asarray(scenario.T).tolist())
    ds.attrs["Q0"] = json.dumps(np.asarray(op0.Q).tolist())
    ds.attrs["R0"] = json.dumps(np.asarray(op0.R).tolist())
    ds.attrs["g"] = type(scenario.g).__name__
    ds.attrs["g_teacher"] = type(scenario.g_teacher).__name__
    return ds


def load_sweep(path):
    """Open a sweep written by `jaxdyn.sweep(..., path=path)`. If the sweep is unfinished (only its
    `<path>.parts/` folder exists), the finished chunks are assembled with NaN (ints: -1) for the
    points still missing, and `ds.attrs["complete"] == 0`."""
    import xarray as xr

    path = pathlib.Path(path)
    if path.exists():
        return xr.load_dataset(path, engine="netcdf4")
    parts = parts_dir(path)
    meta_f = parts / "meta.json"
    if not meta_f.exists():
        raise FileNotFoundError(f"no sweep at {path} (nor {parts})")
    meta = json.loads(meta_f.read_text())
    grid = Grid(dims=[tuple(d) for d in meta["dims"]], fields={}, coords={
        d: np.asarray(c) for d, c in meta["coords"].items()}, flat={})
    chunks = [xr.load_dataset(f, engine="netcdf4") for f in sorted(parts.glob("chunk_*.nc"))]
    if not chunks:
        raise FileNotFoundError(f"{parts} holds no finished chunk yet")
    sc = Scenario(K=meta["K"], M=meta["M"], T=np.asarray(meta["T"]))
    op0 = OrderParams(Q=np.asarray(meta["Q0"]), R=np.asarray(meta["R0"]))
    return assemble(grid, meta["alphas"], meta["eps_targets"], chunks, meta["attrs"], sc, op0)


@dataclasses.dataclass
class Store:
    """What a sweep finds at its path: a finished identical dataset, or the finished chunks
    (`done`: index -> dataset), the parts folder and the chunks still to compute."""

    finished: object
    done: dict
    parts: pathlib.Path | None
    todo: list


def open_store(path, meta: dict, *, overwrite: bool) -> Store:
    """Prepare `path` for the sweep described by `meta` (its fingerprint, grid and attributes):
    load a finished identical sweep, or set up `<path>.parts/` and find the finished chunks. Only
    process 0 touches files; with several processes the list of finished chunks is broadcast."""
    fp, n_chunks = meta["fingerprint"], meta["n_chunks"]
    done: dict[int, object] = {}
    parts = None
    if path is not None:
        import xarray as xr

        path = pathlib.Path(path)
        parts = parts_dir(path)
        if path.exists():
            old = xr.load_dataset(path, engine="netcdf4")
            if old.attrs.get("fingerprint") == fp and old.attrs.get("complete", 0):
                old.attrs["n_traces"] = 0
                old.attrs["n_computed_chunks"] = 0
                return Store(finished=old, done={}, parts=parts, todo=[])
            if not overwrite:
                raise FileExistsError(f"{path} holds a different sweep; pass overwrite=True or another path")
        meta_f = parts / "meta.json"
        if parts.exists():
            old_meta = json.loads(meta_f.read_text()) if meta_f.exists() else {}
            if old_meta.get("fingerprint") != fp:
                if not overwrite and old_meta:
                    raise FileExistsError(
                        f"{parts} holds chunks of a different sweep; pass overwrite=True or another path")
                if is_main_process():
                    shutil.rmtree(parts)
        if is_main_process():
            parts.mkdir(parents=True, exist_ok=True)
            if not meta_f.exists():
                tmp = meta_f.with_name(".meta.json.tmp")
                tmp.write_text(json.dumps(meta))
                os.replace(tmp, meta_f)
            for c in range(n_chunks):
                f = chunk_path(parts, c)
                if f.exists():
                    try:
                        done[c] = xr.load_dataset(f, engine="netcdf4")
                    except Exception:  # a damaged file (should not happen: writes are atomic)
                        f.unlink()
        if jax.process_count() > 1:
            mask = np.zeros(n_chunks, np.int32)
            mask[list(done)] = 1
            mask = np.asarray(multihost_utils.broadcast_one_to_all(mask))
            todo = [c for c in range(n_chunks) if not mask[c]]
        else:
            todo = [c for c in range(n_chunks) if c not in done]
    else:
        todo = list(range(n_chunks))
    return Store(finished=None, done=done, parts=parts, todo=todo)
