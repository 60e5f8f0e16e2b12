"""Parameter sweeps of the order-parameter ODEs: `jaxdyn.sweep`.

One sweep = one compiled function. The grid of swept parameters (eta, scenario fields, initial
conditions, or anything a user `transform` maps onto a scenario) is flattened, sorted by a cost proxy
(adaptive solves under `vmap` cost as much as their slowest member), cut into chunks of
`chunk_size` points, and every chunk is one call of the same jitted function:

    shard_map over a 1-D device mesh ("sweep" axis, all visible devices, all hosts)
      -> on each device: lax.map(per_point, local points, batch_size=B)   (B points per vmap)
        -> per_point: diffrax solve + per-point summaries (final eps_g, plateau, divergence, ...)

Batches of B consecutive sorted points are dealt round-robin to the devices, so every device gets
the same mix of cheap and expensive batches, and a batch has the same members whatever the number
of devices (vectorised math rounds differently with different batch companions). Each finished chunk is written to `<path>.parts/chunk_XXXXX.nc`
(temporary file + atomic rename); an interrupted sweep finds them and computes only what is missing.
When all chunks are there, the labeled dataset is assembled and written to `path` (NetCDF), and the
parts folder is removed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import shutil
import sys

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._integrate import RESULTS, _blowup_cond
from ._model import OrderParams, Scenario, check_eta, check_order_params
from ._ode import eps_g as _eps_g, vector_field


# Scenario fields that can be swept directly (name -> per-point shape as a function of (K, M))
_SCENARIO_FIELDS = {
    "T": lambda K, M: (M, M),
    "v": lambda K, M: (K,),
    "w": lambda K, M: (M,),
    "noise": lambda K, M: (),
    "weight_decay": lambda K, M: (),
    "batch_size": lambda K, M: (),
}
_INIT_FIELDS = {"Q0": lambda K, M: (K, K), "R0": lambda K, M: (K, M)}
_FIELD_DIMS = {"T": ("n", "m"), "v": ("i",), "w": ("n",), "Q0": ("i", "k"), "R0": ("i", "n")}

REGIMES = {-1: "failed", 0: "monotonic", 1: "non-monotonic", 2: "divergent"}

_TRACES = [0]  # incremented each time a sweep's chunk function is traced (i.e. compiled)


def trace_count() -> int:
    """How many times a sweep chunk function has been traced in this process (one per compile)."""
    return _TRACES[0]


# --------------------------------------------------------------------------------------------
# the per-point solve and its summaries (traced once per sweep)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Config:
    """Static configuration of the compiled chunk function (hashable: the jit cache key)."""

    eta2: bool
    i4: str
    order: int
    rtol: float
    atol: float
    max_steps: int
    blowup: float
    stop_tol: float | None
    batch_size: int
    devices: tuple
    names: tuple  # swept field names, in a fixed order
    save_order_params: bool
    transform: object


def _steady_cond(scenario, eta2, i4, order, stop_tol):
    def cond(t, y, args, **kwargs):
        f = vector_field(scenario, y, args, eta2=eta2, i4=i4, order=order)
        fmax = jnp.maximum(jnp.max(jnp.abs(f.Q)), jnp.max(jnp.abs(f.R)))
        return fmax < stop_tol * args

    return cond


def _solve_point(scenario, op0, eta, alphas, alpha0, cfg: _Config):
    """The solve of `jaxdyn.integrate` (same solver, controller, blow-up event), plus an optional
    steady-state stop: once `max |d(Q, R)/d alpha| < stop_tol * eta` the solve ends and the remaining
    recorded times get the final state (the tail of a converged run costs steps, not information)."""

    def rhs(t, y, args):
        return vector_field(scenario, y, args, eta2=cfg.eta2, i4=cfg.i4, order=cfg.order)

    scale = cfg.blowup * jnp.maximum(1.0, jnp.max(jnp.abs(scenario.T)))
    conds = [_blowup_cond(scale)]
    if cfg.stop_tol:
        conds.append(_steady_cond(scenario, cfg.eta2, cfg.i4, cfg.order, cfg.stop_tol))
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(rhs),
        diffrax.Tsit5(),
        t0=alpha0,
        t1=alphas[-1],
        dt0=None,
        y0=op0,
        args=eta,
        saveat=diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=alphas), diffrax.SubSaveAt(t1=True)]),
        stepsize_controller=diffrax.PIDController(rtol=cfg.rtol, atol=cfg.atol),
        max_steps=cfg.max_steps,
        event=diffrax.Event(conds),
        throw=False,
    )
    ys, yend = sol.ys
    yend = jax.tree.map(lambda x: x[-1], yend)
    alpha_end = sol.ts[1][-1]
    res = sol.result
    event = res == diffrax.RESULTS.event_occurred
    if cfg.stop_tol:
        blew, steady = sol.event_mask
        diverged = event & blew
        stopped = event & steady & ~blew
    else:
        diverged = event
        stopped = jnp.asarray(False)
    status = jnp.where(
        res == diffrax.RESULTS.successful,
        RESULTS.successful,
        jnp.where(
            diverged,
            RESULTS.diverged,
            jnp.where(stopped, RESULTS.successful,
                      jnp.where(res == diffrax.RESULTS.max_steps_reached,
                                RESULTS.max_steps_reached, RESULTS.failed)),
        ),
    )
    # after a steady-state stop, the recorded times beyond it get the final state
    fill = stopped & (alphas > alpha_end)
    Q = jnp.where(fill[:, None, None], yend.Q, ys.Q)
    R = jnp.where(fill[:, None, None], yend.R, ys.R)
    reached = jnp.all(jnp.isfinite(Q), axis=(-1, -2)) & jnp.all(jnp.isfinite(R), axis=(-1, -2))
    safe = OrderParams(
        Q=jnp.where(reached[:, None, None], Q, jnp.eye(scenario.K)),
        R=jnp.where(reached[:, None, None], R, 0.0),
    )
    eg = jnp.where(reached, _eps_g(scenario, safe), jnp.inf)
    return dict(
        Q=Q, R=R, eps_g=eg, status=status, diverged=diverged,
        alpha_end=alpha_end, alpha_stop=jnp.where(stopped, alpha_end, jnp.nan),
        num_steps=sol.stats["num_steps"], Q_final=yend.Q, R_final=yend.R,
    )


def _summaries(eg, alphas, eta, alpha_end, diverged, knobs):
    """Per-point numbers for phase diagrams, from the recorded curve `eg` (inf after a blow-up)."""
    floor = knobs["eps_floor"]
    fin = jnp.isfinite(eg)
    big = jnp.where(fin, eg, jnp.inf)
    # non-monotonic: eps_g rises above its running minimum by more than rise_rtol (relative), on
    # the finite part of the curve and where the running minimum lies above the noise floor
    cm = jax.lax.cummin(big)
    valid = fin & (cm > floor)
    rel = jnp.where(valid, (eg - cm) / jnp.where(valid, cm, 1.0), 0.0)
    rise = jnp.max(rel)
    above = rel > knobs["rise_rtol"]
    nonmono = jnp.any(above)
    alpha_nonmono = jnp.where(nonmono, alphas[jnp.argmax(above)], jnp.nan)

    # plateau: the longest stretch (in alpha) where |d ln eps_g / d(eta alpha)| < plateau_rate
    le = jnp.log(jnp.where(fin & (eg > floor), eg, 1.0))
    okseg = fin[1:] & fin[:-1] & (eg[1:] > floor) & (eg[:-1] > floor)
    da = jnp.diff(alphas)
    rate = jnp.abs(jnp.diff(le)) / jnp.where(da > 0, eta * da, 1.0)
    flat = okseg & (da > 0) & (rate < knobs["plateau_rate"])

    def step(carry, x):
        cur_len, cur_start, best_len, best_start, best_end = carry
        j, f, d = x
        cur_len = jnp.where(f, cur_len + d, 0.0)
        cur_start = jnp.where(f & (cur_len == d), j, cur_start)
        better = f & (cur_len > best_len)
        best_len = jnp.where(better, cur_len, best_len)
        best_start = jnp.where(better, cur_start, best_start)
        best_end = jnp.where(better, j + 1, best_end)
        return (cur_len, cur_start, best_len, best_start, best_end), None

    z = jnp.zeros((), alphas.dtype)
    i0 = jnp.zeros((), jnp.int32)
    (_, _, plen, ps, pe), _ = jax.lax.scan(
        step, (z, i0, z, i0, i0), (jnp.arange(da.shape[0], dtype=jnp.int32), flat, da)
    )
    has = plen > 0
    mid = (ps + pe) // 2
    pheight = jnp.where(has, eg[mid], jnp.nan)

    # alpha at which eps_g first reaches each target (log-linear interpolation between records)
    tg = knobs["eps_targets"]

    def reach(t):
        hit = fin & (eg <= t)
        j = jnp.argmax(hit)
        jm = jnp.maximum(j - 1, 0)
        l0, l1 = jnp.log(jnp.maximum(eg[jm], 1e-300)), jnp.log(jnp.maximum(eg[j], 1e-300))
        frac = jnp.where((j > 0) & (l0 > l1), (l0 - jnp.log(t)) / jnp.where(l0 > l1, l0 - l1, 1.0), 1.0)
        a = alphas[jm] + jnp.clip(frac, 0.0, 1.0) * (alphas[j] - alphas[jm])
        return jnp.where(jnp.any(hit), a, jnp.nan)

    alpha_to_eps = jax.vmap(reach)(tg)
    return dict(
        eps_g_final=eg[-1],
        eps_g_min=jnp.min(big),
        nonmonotonic=nonmono,
        eps_rise=rise,
        alpha_nonmonotonic=alpha_nonmono,
        plateau_height=pheight,
        plateau_length=jnp.where(has, plen, 0.0),
        plateau_start=jnp.where(has, alphas[ps], jnp.nan),
        plateau_end=jnp.where(has, alphas[pe], jnp.nan),
        alpha_to_eps=alpha_to_eps,
        alpha_diverged=jnp.where(diverged, alpha_end, jnp.nan),
    )


def _per_point(cfg: _Config, scenario, op0, alphas, alpha0, knobs, p):
    eta = p["eta"]
    sc, op = scenario, op0
    custom = {}
    for name in cfg.names:
        if name in _SCENARIO_FIELDS:
            sc = eqx.tree_at(lambda s, n=name: getattr(s, n), sc, p[name])
        elif name == "Q0":
            op = OrderParams(Q=p[name], R=op.R)
        elif name == "R0":
            op = OrderParams(Q=op.Q, R=p[name])
        elif name != "eta":
            custom[name] = p[name]
    if cfg.transform is not None:
        sc, op = cfg.transform(sc, op, **custom)
    out = _solve_point(sc, op, eta, alphas, alpha0, cfg)
    summ = _summaries(out["eps_g"], alphas, eta, out["alpha_end"], out["diverged"], knobs)
    status = out["status"]
    regime = jnp.where(
        status == RESULTS.diverged, 2,
        jnp.where(status == RESULTS.successful, jnp.where(summ["nonmonotonic"], 1, 0), -1),
    ).astype(jnp.int8)
    res = dict(summ, regime=regime, status=status.astype(jnp.int8), diverged=out["diverged"],
               alpha_end=out["alpha_end"], alpha_stop=out["alpha_stop"],
               num_steps=out["num_steps"].astype(jnp.int32), Q_final=out["Q_final"],
               R_final=out["R_final"], eps_g=out["eps_g"])
    if cfg.save_order_params:
        res["Q"], res["R"] = out["Q"], out["R"]
    return res


@functools.lru_cache(maxsize=16)
def _chunk_function(cfg: _Config):
    """The jitted chunk function for a static configuration (cached: same config, no recompile)."""
    from jax.sharding import PartitionSpec as P

    mesh = _mesh(cfg.devices)

    def local(scenario, op0, alphas, alpha0, knobs, params):
        f = functools.partial(_per_point, cfg, scenario, op0, alphas, alpha0, knobs)
        n = jax.tree.leaves(params)[0].shape[0]
        return jax.lax.map(f, params, batch_size=min(cfg.batch_size, n))

    sharded = jax.shard_map(
        local, mesh=mesh, in_specs=(P(), P(), P(), P(), P(), P("sweep")), out_specs=P("sweep"),
        check_vma=False,
    )

    @eqx.filter_jit
    def chunk(scenario, op0, alphas, alpha0, knobs, params):
        _TRACES[0] += 1
        return sharded(scenario, op0, alphas, alpha0, knobs, params)

    return chunk, mesh


@functools.lru_cache(maxsize=8)
def _mesh(devices: tuple):
    return jax.make_mesh((len(devices),), ("sweep",), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=list(devices))


# --------------------------------------------------------------------------------------------
# the grid
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Grid:
    dims: list  # [(dim name, size)]
    fields: dict  # field name -> (dim name, values array (size, *shape))
    coords: dict  # dim name -> 1-D coordinate values
    flat: dict  # field name -> (P, *shape) per-point values (C order over dims)

    @property
    def shape(self):
        return tuple(n for _, n in self.dims)

    @property
    def size(self):
        return int(np.prod(self.shape)) if self.dims else 1


def _build_grid(scenario: Scenario, eta, axes, transform) -> _Grid:
    K, M = scenario.K, scenario.M
    eta = np.atleast_1d(np.asarray(eta, dtype=float))
    if eta.ndim != 1:
        raise ValueError(f"eta must be a scalar or a 1-D array, got shape {eta.shape}")
    check_eta(eta)
    dims = [("eta", eta.size)]
    fields = {"eta": ("eta", eta)}
    coords = {"eta": eta}
    for dim, val in (axes or {}).items():
        if dim in ("eta", "alpha", "eps_target", "point"):
            raise ValueError(f"axis name {dim!r} is reserved")
        group = val if isinstance(val, dict) else {dim: val}
        n = None
        for name, arr in group.items():
            if name in fields:
                raise ValueError(f"field {name!r} swept twice")
            arr = np.asarray(arr, dtype=float)
            if name in _SCENARIO_FIELDS or name in _INIT_FIELDS:
                shape = {**_SCENARIO_FIELDS, **_INIT_FIELDS}[name](K, M)
            elif transform is None:
                raise ValueError(
                    f"cannot sweep {name!r}: not one of {sorted(_SCENARIO_FIELDS) + sorted(_INIT_FIELDS)}"
                    " (pass transform=fn(scenario, op0, **values) -> (scenario, op0) for custom axes)")
            else:
                shape = arr.shape[1:]
            if arr.ndim == 0:
                arr = arr[None]
            if arr.shape[1:] != shape:
                raise ValueError(f"values of {name!r} must have shape (n,) + {shape}, got {arr.shape}")
            if not isinstance(val, dict) and arr.ndim > 1:
                raise ValueError(
                    f"array-valued field {name!r}: give it as axes={{'{dim}': {{'{name}': values}}}} "
                    "(the axis is then labelled by an index)")
            if n is not None and arr.shape[0] != n:
                raise ValueError(f"fields of axis {dim!r} have different lengths")
            n = arr.shape[0]
            fields[name] = (dim, arr)
        if n is None:
            raise ValueError(f"axis {dim!r} has no fields")
        dims.append((dim, n))
        coords[dim] = np.asarray(val, float) if not isinstance(val, dict) else np.arange(n)
    shape = tuple(n for _, n in dims)
    idx = np.indices(shape).reshape(len(shape), -1)
    pos = {d: i for i, (d, _) in enumerate(dims)}
    flat = {name: arr[idx[pos[d]]] for name, (d, arr) in fields.items()}
    return _Grid(dims=dims, fields=fields, coords=coords, flat=flat)


def _validate_points(scenario, op0, grid: _Grid):
    """PSD checks of every distinct swept scenario / initial condition against the base ones."""
    for name, (dim, arr) in grid.fields.items():
        if name == "T":
            for t in arr:
                Scenario(K=scenario.K, M=scenario.M, T=t)
        elif name in ("noise", "weight_decay") and np.any(arr < 0):
            raise ValueError(f"{name} must be >= 0")
        elif name == "batch_size" and np.any(arr < 1):
            raise ValueError("batch_size must be >= 1")
    Qs = grid.fields.get("Q0", (None, np.asarray(op0.Q)[None]))[1]
    Rs = grid.fields.get("R0", (None, np.asarray(op0.R)[None]))[1]
    if "Q0" in grid.fields and "R0" in grid.fields and grid.fields["Q0"][0] == grid.fields["R0"][0]:
        check_order_params(scenario, OrderParams(Q=Qs, R=Rs))
    else:
        for q in Qs:
            for r in Rs:
                check_order_params(scenario, OrderParams(Q=q, R=r))


# --------------------------------------------------------------------------------------------
# chunk files, fingerprint, assembly
# --------------------------------------------------------------------------------------------


def _fingerprint(scenario, op0, alphas, alpha0, grid, cfg, knobs, chunk_size, cost_order) -> str:
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
    add(int(chunk_size))
    add(cost_order)
    return h.hexdigest()[:32]


def _atomic_write_netcdf(ds, path: pathlib.Path):
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    ds.to_netcdf(tmp, engine="netcdf4")
    os.replace(tmp, path)


def _chunk_path(parts: pathlib.Path, c: int) -> pathlib.Path:
    return parts / f"chunk_{c:05d}.nc"


def _parts_dir(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(path.name + ".parts")


_POINT_VARS_DIMS = {
    "eps_g": ("alpha",), "Q": ("alpha", "i", "k"), "R": ("alpha", "i", "n"),
    "Q_final": ("i", "k"), "R_final": ("i", "n"), "alpha_to_eps": ("eps_target",),
}


def _chunk_dataset(out: dict, points: np.ndarray):
    import xarray as xr

    data = {k: (("point",) + _POINT_VARS_DIMS.get(k, ()), np.asarray(v)) for k, v in out.items()}
    return xr.Dataset(data, coords={"point": points})


_ATTRS = {
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


def _assemble(grid: _Grid, alphas, eps_targets, chunks: list, attrs: dict, scenario, op0):
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
        extra = _POINT_VARS_DIMS.get(k, ())
        data[k] = (gdims + extra, v.reshape(grid.shape + v.shape[1:]), {"description": _ATTRS.get(k, "")})
    coords = {d: grid.coords[d] for d in gdims}
    coords["alpha"] = np.asarray(alphas)
    coords["eps_target"] = np.asarray(eps_targets, float)
    for name, (dim, arr) in grid.fields.items():
        if name != "eta" and name != dim:
            coords[name] = ((dim,) + _FIELD_DIMS.get(name, tuple(f"{name}_{j}" for j in range(arr.ndim - 1))), arr)
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
    parts = _parts_dir(path)
    meta_f = parts / "meta.json"
    if not meta_f.exists():
        raise FileNotFoundError(f"no sweep at {path} (nor {parts})")
    meta = json.loads(meta_f.read_text())
    grid = _Grid(dims=[tuple(d) for d in meta["dims"]], fields={}, coords={
        d: np.asarray(c) for d, c in meta["coords"].items()}, flat={})
    chunks = [xr.load_dataset(f, engine="netcdf4") for f in sorted(parts.glob("chunk_*.nc"))]
    if not chunks:
        raise FileNotFoundError(f"{parts} holds no finished chunk yet")
    sc = Scenario(K=meta["K"], M=meta["M"], T=np.asarray(meta["T"]))
    op0 = OrderParams(Q=np.asarray(meta["Q0"]), R=np.asarray(meta["R0"]))
    return _assemble(grid, meta["alphas"], meta["eps_targets"], chunks, meta["attrs"], sc, op0)


# --------------------------------------------------------------------------------------------
# the public entry point
# --------------------------------------------------------------------------------------------


def _is_main_process() -> bool:
    return jax.process_index() == 0


def _to_host(x):
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def sweep(
    scenario: Scenario,
    op0: OrderParams,
    *,
    eta,
    alphas,
    axes: dict | None = None,
    transform=None,
    path=None,
    eta2: bool = True,
    i4: str = "exact",
    order: int = 10,
    alpha0=0.0,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = 100_000,
    blowup: float = 1e4,
    stop_tol: float | None = None,
    eps_targets=(1e-2, 1e-4, 1e-6),
    rise_rtol: float = 1e-5,
    eps_floor: float = 1e-7,
    plateau_rate: float = 5e-3,
    cost=None,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    devices=None,
    save_order_params: bool = False,
    progress: bool | None = None,
    overwrite: bool = False,
):
    """Integrate the order-parameter ODEs over a grid of parameters; return an `xarray.Dataset`.

    The grid is the outer product of `eta` and the `axes`; the dataset's dimensions are named after
    them (`eps_g` has dimensions `(eta, *axes, alpha)`). One compilation serves the whole sweep.

    **Main arguments:**
    - `scenario`, `op0`: the base `jaxdyn.Scenario` and initial `jaxdyn.OrderParams`.
    - `eta`: learning rates (scalar or 1-D array): the first dimension.
    - `alphas`: increasing 1-D array of recording times (log-spaced is best for the summaries).
    - `axes`: more swept dimensions, `{name: values}`. A name is a scenario field (`noise`,
      `weight_decay`, `batch_size` with scalar values; `T`, `v`, `w`) or an initial condition
      (`Q0`, `R0`); `{name: {field: values, field2: values2}}` zips several fields into one dimension
      labelled by an index (e.g. `{"init": {"Q0": Qs, "R0": Rs}}`, `{"teacher": {"T": Ts}}`).
      Other names are passed to `transform`.
    - `transform`: `fn(scenario, op0, **custom_values) -> (scenario, op0)`, traced per point (for
      axes that are not fields, e.g. a scale of the initial overlaps).
    - `path`: write the dataset there (NetCDF); chunks go to `<path>.parts/` as they finish, and a
      rerun after an interruption computes only the missing chunks. If `path` already holds this
      very sweep it is loaded, not recomputed. A different sweep at `path` raises unless `overwrite`.

    **Solver** (as `jaxdyn.integrate`): `eta2`, `i4`, `order`, `alpha0`, `rtol`, `atol`, `max_steps`,
    `blowup`. `stop_tol`: stop a solve once `max|d(Q,R)/d alpha| < stop_tol * eta` and record the
    final state for the remaining alphas (the stiff tail of a converged run otherwise dominates the
    cost); `None` gives exactly `integrate`'s trajectory.

    **Summaries** (per point, computed inside the compiled function): `eps_g_final`, `eps_g_min`,
    `diverged`, `alpha_diverged`, `nonmonotonic` (rise above the running minimum > `rise_rtol`,
    ignoring eps_g below `eps_floor`), `eps_rise`, `alpha_nonmonotonic`, `plateau_height`,
    `plateau_length`, `plateau_start`, `plateau_end` (the longest stretch with
    `|d ln eps_g / d(eta alpha)| < plateau_rate`), `alpha_to_eps` (dimension `eps_target`,
    from `eps_targets`), `regime` (-1 failed, 0 monotonic, 1 non-monotonic, 2 divergent),
    `status`, `num_steps`, `alpha_end`, `alpha_stop`, `Q_final`, `R_final`; with
    `save_order_params` also the curves `Q`, `R`.

    **Execution:**
    - `cost`: cost proxy used to sort the points (array broadcastable to the grid, or
      `fn(**per_point_values) -> array`); default: eta. Sorted points are batched, so each vmapped
      batch holds solves of similar length; results are un-permuted.
    - `batch_size`: points per vmapped batch on each device (default 32 on CPU, the whole local
      chunk on GPU/TPU). `chunk_size`: points per chunk = per compiled call, per file and per
      progress-bar update (default 256 on CPU, 1024 on GPU/TPU).
    - `devices`: the devices to shard over (default `jax.devices()`: every device of every process;
      after `jax.distributed.initialize()` that spans all hosts, process 0 writes the files).
    - `progress`: a tqdm progress bar over chunks (default: when there is more than one chunk).

    Example:
        >>> sc = jaxdyn.Scenario(K=2, M=2, T=jnp.diag(jnp.array([1.0, 2.0])))
        >>> op0 = jaxdyn.OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=1e-3 * jnp.eye(2))
        >>> ds = jaxdyn.sweep(sc, op0, eta=np.linspace(0.1, 1.3, 16),   # 1024 in the benchmark
        ...                   alphas=np.geomspace(1e-2, 1e3, 100), path="eta_sweep.nc")
        >>> ds.regime.plot()
    """
    import time

    if not isinstance(scenario, Scenario):
        raise ValueError(f"expected jaxdyn.Scenario, got {type(scenario).__name__}")
    check_order_params(scenario, op0)
    if i4 not in ("exact", "hermite"):
        raise ValueError(f"i4 must be 'exact' or 'hermite', got {i4!r}")
    dtype = jnp.result_type(float)
    alphas = np.asarray(alphas, dtype=float)
    if alphas.ndim != 1 or alphas.size < 2:
        raise ValueError("alphas must be a 1-D array with at least 2 entries")
    if np.any(np.diff(alphas) < 0) or alphas[0] < alpha0:
        raise ValueError("alphas must be non-decreasing and start at or after alpha0")
    grid = _build_grid(scenario, eta, axes, transform)
    _validate_points(scenario, op0, grid)
    P = grid.size

    # execution layout
    devices = tuple(jax.devices() if devices is None else devices)
    D = len(devices)
    on_accel = devices[0].platform != "cpu"
    chunk_size = int(chunk_size or (1024 if on_accel else 256))
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    chunk_size = min(chunk_size, P)
    if batch_size is None:
        batch_size = -(-chunk_size // D) if on_accel else 32
    B = max(1, min(int(batch_size), -(-chunk_size // D)))
    padded = -(-chunk_size // (D * B)) * (D * B)
    n_chunks = -(-P // chunk_size)

    # sort by the cost proxy (stable), then deal the sorted points to chunks
    if cost is None:
        c = grid.flat["eta"]
    elif callable(cost):
        c = np.asarray(cost(**grid.flat), float)
    else:
        c = np.broadcast_to(np.asarray(cost, float), grid.shape).reshape(-1)
    if c.shape != (P,):
        raise ValueError(f"cost must give one value per grid point ({P}), got shape {c.shape}")
    order_ = np.argsort(c, kind="stable")

    cfg = _Config(
        eta2=bool(eta2), i4=i4, order=int(order), rtol=float(rtol), atol=float(atol),
        max_steps=int(max_steps), blowup=float(blowup),
        stop_tol=None if not stop_tol else float(stop_tol), batch_size=B, devices=devices,
        names=tuple(n for n in grid.flat if n != "eta"), save_order_params=bool(save_order_params),
        transform=transform,
    )
    knobs = dict(
        rise_rtol=np.asarray(rise_rtol, float), eps_floor=np.asarray(eps_floor, float),
        plateau_rate=np.asarray(plateau_rate, float),
        eps_targets=np.atleast_1d(np.asarray(eps_targets, float)),
    )
    fp = _fingerprint(scenario, op0, alphas, alpha0, grid, cfg, knobs, chunk_size,
                      hashlib.sha256(order_.tobytes()).hexdigest())
    attrs = dict(
        fingerprint=fp, eta2=int(eta2), i4=i4, order=int(order), rtol=float(rtol), atol=float(atol),
        max_steps=int(max_steps), blowup=float(blowup), stop_tol=float(stop_tol or 0.0),
        rise_rtol=float(rise_rtol), eps_floor=float(eps_floor), plateau_rate=float(plateau_rate),
        chunk_size=chunk_size, alpha0=float(alpha0), jaxdyn_sweep_version=1,
    )

    # resume: what is already on disk?
    done: dict[int, object] = {}
    parts = None
    if path is not None:
        import xarray as xr

        path = pathlib.Path(path)
        parts = _parts_dir(path)
        if path.exists():
            old = xr.load_dataset(path, engine="netcdf4")
            if old.attrs.get("fingerprint") == fp and old.attrs.get("complete", 0):
                old.attrs["n_traces"] = 0
                old.attrs["n_computed_chunks"] = 0
                return old
            if not overwrite:
                raise FileExistsError(f"{path} holds a different sweep; pass overwrite=True or another path")
        meta_f = parts / "meta.json"
        if parts.exists():
            meta = json.loads(meta_f.read_text()) if meta_f.exists() else {}
            if meta.get("fingerprint") != fp:
                if not overwrite and meta:
                    raise FileExistsError(
                        f"{parts} holds chunks of a different sweep; pass overwrite=True or another path")
                if _is_main_process():
                    shutil.rmtree(parts)
        if _is_main_process():
            parts.mkdir(parents=True, exist_ok=True)
            if not meta_f.exists():
                meta = dict(
                    fingerprint=fp, dims=grid.dims, coords={k: np.asarray(v).tolist() for k, v in grid.coords.items()},
                    alphas=alphas.tolist(), eps_targets=knobs["eps_targets"].tolist(), attrs=attrs,
                    K=scenario.K, M=scenario.M, T=np.asarray(scenario.T).tolist(),
                    Q0=np.asarray(op0.Q).tolist(), R0=np.asarray(op0.R).tolist(), n_chunks=n_chunks,
                )
                tmp = meta_f.with_name(".meta.json.tmp")
                tmp.write_text(json.dumps(meta))
                os.replace(tmp, meta_f)
            for c in range(n_chunks):
                f = _chunk_path(parts, c)
                if f.exists():
                    try:
                        done[c] = xr.load_dataset(f, engine="netcdf4")
                    except Exception:  # a damaged file (should not happen: writes are atomic)
                        f.unlink()
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            mask = np.zeros(n_chunks, np.int32)
            mask[list(done)] = 1
            mask = np.asarray(multihost_utils.broadcast_one_to_all(mask))
            todo = [c for c in range(n_chunks) if not mask[c]]
        else:
            todo = [c for c in range(n_chunks) if c not in done]
    else:
        todo = list(range(n_chunks))

    chunk_fn, mesh = _chunk_function(cfg)
    from jax.sharding import NamedSharding, PartitionSpec

    sharding = NamedSharding(mesh, PartitionSpec("sweep"))
    sc_dyn = jax.tree.map(lambda x: jnp.asarray(x, dtype) if eqx.is_inexact_array(x) else x, scenario)
    op_dyn = OrderParams(Q=jnp.asarray(op0.Q, dtype), R=jnp.asarray(op0.R, dtype))
    knobs_dyn = {k: jnp.asarray(v, dtype) for k, v in knobs.items()}
    alphas_dyn = jnp.asarray(alphas, dtype)
    alpha0_dyn = jnp.asarray(alpha0, dtype)
    local_len = padded // D

    def layout(c):
        """Grid indices of chunk c, padded, in device-slot order: device d gets the sorted
        batches d, d + D, d + 2D, ... of the chunk (the same cost mix on every device)."""
        pts = order_[c * chunk_size:(c + 1) * chunk_size]
        pad = np.concatenate([pts, np.full(padded - pts.size, pts[-1])])
        return pts, pad[deal]

    # slot -> position in the sorted chunk: batches of B consecutive sorted points, dealt
    # round-robin to the devices; every batch has the same members whatever the device count
    deal = np.arange(padded).reshape(local_len // B, D, B).transpose(1, 0, 2).reshape(-1)
    inv = np.argsort(deal)  # position in chunk -> slot

    def global_array(x):
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    traces0 = _TRACES[0]
    t_start = time.perf_counter()
    results = dict(done)
    show = (n_chunks > 1) if progress is None else bool(progress)
    bar = None
    if show and _is_main_process():
        from tqdm.auto import tqdm

        bar = tqdm(total=P, initial=sum(min(chunk_size, P - c * chunk_size) for c in done),
                   unit="pt", desc="jaxdyn.sweep", file=sys.stderr)
    try:
        for c in todo:
            pts, dealt = layout(c)
            params = {k: global_array(np.asarray(v[dealt], float)) for k, v in grid.flat.items()}
            out = chunk_fn(sc_dyn, op_dyn, alphas_dyn, alpha0_dyn, knobs_dyn, params)
            out = {k: _to_host(v) for k, v in out.items()}
            sel = inv[:pts.size]  # undo the dealing, drop the padding
            ds_c = _chunk_dataset({k: v[sel] for k, v in out.items()}, pts)
            results[c] = ds_c
            if parts is not None and _is_main_process():
                _atomic_write_netcdf(ds_c, _chunk_path(parts, c))
            if bar is not None:
                bar.update(pts.size)
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t_start

    ds = _assemble(grid, alphas, knobs["eps_targets"], [results[c] for c in sorted(results)],
                   attrs, scenario, op0)
    if path is not None and _is_main_process():
        _atomic_write_netcdf(ds, path)
        shutil.rmtree(parts, ignore_errors=True)
    ds.attrs["n_traces"] = _TRACES[0] - traces0
    ds.attrs["n_computed_chunks"] = len(todo)
    ds.attrs["n_devices"] = D
    ds.attrs["batch_size"] = B
    ds.attrs["wall_time_s"] = wall
    return ds
