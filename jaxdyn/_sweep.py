"""Parameter sweeps of the order-parameter ODEs: `jaxdyn.sweep`.

One sweep = one compiled function. The grid of swept parameters (eta, scenario fields, initial
conditions, or anything a user `transform` maps onto a scenario) is flattened, sorted by a cost proxy
(adaptive solves under `vmap` cost as much as their slowest member), cut into chunks of
`chunk_size` points, and every chunk is one call of the same jitted function:

    shard_map over a 1-D device mesh ("sweep" axis, all visible devices, all hosts)
      -> on each device: lax.map(per_point, local points, batch_size=B)   (B points per vmap)
        -> per_point: diffrax solve + per-point summaries (final eps_g, plateau, divergence, ...)

The concerns live in their own modules, composed by `sweep` here: the grid and its validation
(`_sweep_grid`), the layout (`_sweep_plan`: sort, chunk, deal batches round-robin to devices; pure
NumPy), the per-point solve (`_solution.solve`, the core of `jaxdyn.integrate`) and its summaries
(here), and the files (`_sweep_store`: fingerprint, chunk files, resume, assembly, multi-host I/O).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import pathlib
import shutil
import sys
import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from ._typing import Rates, Times
from ._checks import check_alphas
from ._model import OrderParams, Scenario, check_order_params
from ._ode import OrderParamODE, as_i4
from ._solution import DIVERGED, SUCCESSFUL, solve
from ._sweep_grid import INIT_FIELDS as INIT_FIELDS, SCENARIO_FIELDS, build_grid, validate_points
from ._sweep_plan import plan_sweep
from ._sweep_store import (
    assemble,
    atomic_write_netcdf,
    chunk_dataset,
    chunk_path,
    fingerprint,
    is_main_process,
    load_sweep as load_sweep,
    open_store,
    to_host,
)


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
    solver: object
    controller: object
    dt0: float | None
    max_steps: int
    blowup: float
    stop_tol: float | None
    batch_size: int
    devices: tuple
    names: tuple  # swept field names, in a fixed order
    save_order_params: bool
    transform: object


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
        if name in SCENARIO_FIELDS:
            sc = eqx.tree_at(lambda s, n=name: getattr(s, n), sc, p[name])
        elif name == "Q0":
            op = OrderParams(Q=p[name], R=op.R)
        elif name == "R0":
            op = OrderParams(Q=op.Q, R=p[name])
        elif name != "eta":
            custom[name] = p[name]
    if cfg.transform is not None:
        sc, op = cfg.transform(sc, op, **custom)
    # the same ODE object and solve core as jaxdyn.integrate
    ode = OrderParamODE(sc, eta=eta, eta2=cfg.eta2, i4=as_i4(cfg.i4, cfg.order))
    tr = solve(ode, op, alphas, alpha0, solver=cfg.solver, stepsize_controller=cfg.controller,
               dt0=cfg.dt0, max_steps=cfg.max_steps, blowup=cfg.blowup, stop_tol=cfg.stop_tol)
    diverged = tr.diverged
    summ = _summaries(tr.eps_g, alphas, eta, tr.alpha_end, diverged, knobs)
    status = tr.status
    regime = jnp.where(
        status == DIVERGED, 2,
        jnp.where(status == SUCCESSFUL, jnp.where(summ["nonmonotonic"], 1, 0), -1),
    ).astype(jnp.int8)
    res = dict(summ, regime=regime, status=status.astype(jnp.int8), diverged=diverged,
               alpha_end=tr.alpha_end, alpha_stop=tr.alpha_stop,
               num_steps=tr.num_steps.astype(jnp.int32), Q_final=tr.Q_end, R_final=tr.R_end,
               eps_g=tr.eps_g)
    if cfg.save_order_params:
        res["Q"], res["R"] = tr.Q, tr.R
    return res


@functools.lru_cache(maxsize=16)
def _chunk_function(cfg: _Config):
    """The jitted chunk function for a static configuration (cached: same config, no recompile)."""
    mesh = _mesh(cfg.devices)

    def local(scenario, op0, alphas, alpha0, knobs, params):
        f = functools.partial(_per_point, cfg, scenario, op0, alphas, alpha0, knobs)
        n = jax.tree.leaves(params)[0].shape[0]
        return jax.lax.map(f, params, batch_size=min(cfg.batch_size, n))

    rep, split = PartitionSpec(), PartitionSpec("sweep")
    sharded = jax.shard_map(
        local, mesh=mesh, in_specs=(rep, rep, rep, rep, rep, split), out_specs=split,
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


# --------------------------------------------------------------------------------------------
# the public entry point
# --------------------------------------------------------------------------------------------


def sweep(
    scenario: Scenario,
    op0: OrderParams,
    *,
    eta: Rates,
    alphas: Times,
    axes: dict | None = None,
    transform=None,
    path=None,
    eta2: bool = True,
    i4: str = "exact",
    order: int = 10,
    alpha0=0.0,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    solver=None,
    stepsize_controller=None,
    dt0=None,
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

    **Solver** (as `jaxdyn.integrate`, the same solve core): `eta2`, `i4`, `order`, `alpha0`, `rtol`,
    `atol`, `solver` (default `diffrax.Tsit5()`), `stepsize_controller` (default
    `diffrax.PIDController(rtol=rtol, atol=atol)`), `dt0`, `max_steps`, `blowup`. `stop_tol`: stop a solve once `max|d(Q,R)/d alpha| < stop_tol * eta` and record the
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
    if not isinstance(scenario, Scenario):
        raise ValueError(f"expected jaxdyn.Scenario, got {type(scenario).__name__}")
    check_order_params(scenario, op0)
    if i4 not in ("exact", "hermite"):
        raise ValueError(f"i4 must be 'exact' or 'hermite', got {i4!r}")
    as_i4(i4, order)  # validates the Hermite order
    dtype = jnp.result_type(float)
    check_alphas(alphas, alpha0, min_size=2)
    alphas = np.asarray(alphas, dtype=float)
    solver = diffrax.Tsit5() if solver is None else solver
    if stepsize_controller is None:
        stepsize_controller = diffrax.PIDController(rtol=float(rtol), atol=float(atol))
    if isinstance(stepsize_controller, diffrax.ConstantStepSize) and dt0 is None:
        raise ValueError("a constant step size needs dt0")
    grid = build_grid(scenario, eta, axes, transform)
    validate_points(scenario, op0, grid)
    P = grid.size

    # execution layout: sort by the cost proxy, chunk, deal batches to devices (pure NumPy)
    devices = tuple(jax.devices() if devices is None else devices)
    D = len(devices)
    if cost is None:
        c = grid.flat["eta"]
    elif callable(cost):
        c = np.asarray(cost(**grid.flat), float)
    else:
        c = np.broadcast_to(np.asarray(cost, float), grid.shape).reshape(-1)
    if c.shape != (P,):
        raise ValueError(f"cost must give one value per grid point ({P}), got shape {c.shape}")
    plan = plan_sweep(c, n_devices=D, chunk_size=chunk_size, batch_size=batch_size,
                      accelerator=devices[0].platform != "cpu")
    chunk_size, B, n_chunks, order_ = plan.chunk_size, plan.batch, plan.n_chunks, plan.order

    cfg = _Config(
        eta2=bool(eta2), i4=i4, order=int(order), rtol=float(rtol), atol=float(atol),
        solver=solver, controller=stepsize_controller, dt0=None if dt0 is None else float(dt0),
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
    fp = fingerprint(scenario, op0, alphas, alpha0, grid, cfg, knobs, chunk_size,
                      hashlib.sha256(order_.tobytes()).hexdigest())
    attrs = dict(
        fingerprint=fp, eta2=int(eta2), i4=i4, order=int(order), rtol=float(rtol), atol=float(atol),
        max_steps=int(max_steps), blowup=float(blowup), stop_tol=float(stop_tol or 0.0),
        rise_rtol=float(rise_rtol), eps_floor=float(eps_floor), plateau_rate=float(plateau_rate),
        chunk_size=chunk_size, alpha0=float(alpha0), jaxdyn_sweep_version=1,
    )

    # resume: what is already on disk? (a finished identical sweep is returned as it is)
    meta = dict(
        fingerprint=fp, dims=grid.dims, coords={k: np.asarray(v).tolist() for k, v in grid.coords.items()},
        alphas=alphas.tolist(), eps_targets=knobs["eps_targets"].tolist(), attrs=attrs,
        K=scenario.K, M=scenario.M, T=np.asarray(scenario.T).tolist(),
        Q0=np.asarray(op0.Q).tolist(), R0=np.asarray(op0.R).tolist(), n_chunks=n_chunks,
    )
    path = None if path is None else pathlib.Path(path)
    store = open_store(path, meta, overwrite=overwrite)
    if store.finished is not None:
        return store.finished
    done, parts, todo = store.done, store.parts, store.todo

    chunk_fn, mesh = _chunk_function(cfg)
    sharding = NamedSharding(mesh, PartitionSpec("sweep"))
    sc_dyn = jax.tree.map(lambda x: jnp.asarray(x, dtype) if eqx.is_inexact_array(x) else x, scenario)
    op_dyn = OrderParams(Q=jnp.asarray(op0.Q, dtype), R=jnp.asarray(op0.R, dtype))
    knobs_dyn = {k: jnp.asarray(v, dtype) for k, v in knobs.items()}
    alphas_dyn = jnp.asarray(alphas, dtype)
    alpha0_dyn = jnp.asarray(alpha0, dtype)

    def global_array(x):
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    traces0 = _TRACES[0]
    t_start = time.perf_counter()
    results = dict(done)
    show = (n_chunks > 1) if progress is None else bool(progress)
    bar = None
    if show and is_main_process():
        from tqdm.auto import tqdm

        bar = tqdm(total=P, initial=sum(min(chunk_size, P - c * chunk_size) for c in done),
                   unit="pt", desc="jaxdyn.sweep", file=sys.stderr)
    try:
        for c in todo:
            pts, dealt = plan.chunk_points(c), plan.chunk_slots(c)
            params = {k: global_array(np.asarray(v[dealt], float)) for k, v in grid.flat.items()}
            out = chunk_fn(sc_dyn, op_dyn, alphas_dyn, alpha0_dyn, knobs_dyn, params)
            out = {k: to_host(v) for k, v in out.items()}
            sel = plan.unslot(c)  # undo the dealing, drop the padding
            ds_c = chunk_dataset({k: v[sel] for k, v in out.items()}, pts)
            results[c] = ds_c
            if parts is not None and is_main_process():
                atomic_write_netcdf(ds_c, chunk_path(parts, c))
            if bar is not None:
                bar.update(pts.size)
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t_start

    ds = assemble(grid, alphas, knobs["eps_targets"], [results[c] for c in sorted(results)],
                   attrs, scenario, op0)
    if path is not None and is_main_process():
        atomic_write_netcdf(ds, path)
        shutil.rmtree(parts, ignore_errors=True)
    ds.attrs["n_traces"] = _TRACES[0] - traces0
    ds.attrs["n_computed_chunks"] = len(todo)
    ds.attrs["n_devices"] = D
    ds.attrs["batch_size"] = B
    ds.attrs["wall_time_s"] = wall
    return ds
