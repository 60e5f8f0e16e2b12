"""Registry of reproducible figures/numbers: `jaxdyn reproduce <name>` writes `<name>.png` and
`<name>.json` into the output folder.

A reproduction is a function `fn(outdir: pathlib.Path, *, fast: bool) -> dict` registered with
`@register("000-fig1", "one line of description")`; it writes its figure(s) and returns the numbers
(JSON-serialisable) that the registry writes next to them. Modules that define reproductions are
listed in `_MODULES` and imported lazily.
"""

from __future__ import annotations

import importlib
import json
import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


_MODULES = [
    "jaxdyn.figures.paper000",
    "jaxdyn.figures.paper001",
    "jaxdyn.figures.paper002",
    "jaxdyn.figures.paper003",
    "jaxdyn.figures.protocols",
    "jaxdyn.figures.readout",
    "jaxdyn.figures.simulations",
    "jaxdyn.figures.stability",
    "jaxdyn.figures.sweeps",
    "jaxdyn.figures.large_k",
    "jaxdyn.figures.finite_size",
]


@dataclass(frozen=True)
class Reproduction:
    name: str
    description: str
    fn: Callable


_REGISTRY: dict[str, Reproduction] = {}


def register(name: str, description: str):
    def deco(fn):
        _REGISTRY[name] = Reproduction(name, description, fn)
        return fn

    return deco


def _load() -> dict[str, Reproduction]:
    for mod in _MODULES:  # every listed module must import: a broken one fails loudly
        importlib.import_module(mod)
    return dict(sorted(_REGISTRY.items()))


def list_reproductions() -> list[Reproduction]:
    return list(_load().values())


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "shape") or isinstance(x, (np.generic,)):
        a = np.asarray(x)
        return a.item() if a.ndim == 0 else a.tolist()
    return x


def reproduce(name: str, outdir="out", *, fast: bool = False) -> dict:
    """Run one registered reproduction (or `"all"`); returns its numbers."""
    reg = _load()
    if name == "all":
        return {n: reproduce(n, outdir, fast=fast) for n in reg}
    if name not in reg:
        raise ValueError(f"unknown reproduction {name!r}; known: {sorted(reg)}")
    out = pathlib.Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    numbers = reg[name].fn(out, fast=fast)
    numbers = dict(numbers or {})
    numbers.setdefault("name", name)
    numbers["wall_time_s"] = round(time.perf_counter() - t0, 3)
    numbers["fast_mode"] = fast
    (out / f"{name}.json").write_text(json.dumps(_jsonable(numbers), indent=2))
    return numbers
