"""The grid of a sweep: which fields can be swept, the outer product of the axes, validation.

Value checks run on the concrete grid values with NumPy, before anything is traced.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ._checks import check_eta
from ._model import OrderParams, Scenario, check_order_params


# Scenario fields that can be swept directly (name -> per-point shape as a function of (K, M))
SCENARIO_FIELDS = {
    "T": lambda K, M: (M, M),
    "v": lambda K, M: (K,),
    "w": lambda K, M: (M,),
    "noise": lambda K, M: (),
    "weight_decay": lambda K, M: (),
    "batch_size": lambda K, M: (),
}
INIT_FIELDS = {"Q0": lambda K, M: (K, K), "R0": lambda K, M: (K, M)}
FIELD_DIMS = {"T": ("n", "m"), "v": ("i",), "w": ("n",), "Q0": ("i", "k"), "R0": ("i", "n")}


@dataclasses.dataclass
class Grid:
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


def build_grid(scenario: Scenario, eta, axes, transform) -> Grid:
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
            if name in SCENARIO_FIELDS or name in INIT_FIELDS:
                shape = {**SCENARIO_FIELDS, **INIT_FIELDS}[name](K, M)
            elif transform is None:
                raise ValueError(
                    f"cannot sweep {name!r}: not one of {sorted(SCENARIO_FIELDS) + sorted(INIT_FIELDS)}"
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
    return Grid(dims=dims, fields=fields, coords=coords, flat=flat)


def validate_points(scenario, op0, grid: Grid):
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
