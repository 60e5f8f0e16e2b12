"""The one argument dialect of the `jaxdyn` command, shared by every subcommand.

- A matrix (`--T`, `--Q0`, `--R0`): a number `x` (`x * I`), a comma list `1,2` (a diagonal) or a
  JSON nested list `'[[1, 0.5], [0.5, 2]]'` (the full matrix).
- A grid (`--eta` of `jaxdyn sweep`, `--alphas`): `start:stop:num` (linspace), `geom:start:stop:num`
  (geomspace) or a comma list `a,b,c`.
- Options are named after the library's arguments: `--K --M --T --g --g-teacher --noise
  --weight-decay --minibatch` (the `Scenario`), `--Q0 --R0` (the `OrderParams`), `--eta`,
  `--no-eta2 --i4 --order` (the `OrderParamODE`).

Older spellings (`--T-diag 1 2`, `--T 1 2`, `--Q0-diag`, `--activation`, `--teacher-activation`,
`--small-eta`, `--batch-size` of `simulate`) still work, hidden from `--help`, with a
`FutureWarning` naming the new spelling.
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np

# values of the options that are not given; a config file (`jaxdyn sweep --config`) fills them
DEFAULTS = {"K": 2, "g": "relu", "R0": 1e-3, "noise": 0.0, "weight_decay": 0.0, "minibatch": 1,
            "i4": "exact", "order": 10}


def _warn(old: str, new: str) -> None:
    warnings.warn(f"jaxdyn: `{old}` is deprecated; write `{new}`", FutureWarning, stacklevel=3)


class _ListValue(argparse.Action):
    """A matrix option: one token (`1,2`, a number or JSON). Several tokens (`--T 1 2`, the old
    spelling) are joined into the comma list, with a warning."""

    def __call__(self, parser, namespace, values, option_string=None):
        if len(values) > 1:
            _warn(f"{option_string} {' '.join(values)}", f"{option_string} {','.join(values)}")
        setattr(namespace, self.dest, ",".join(values))


class _Renamed(argparse.Action):
    """A hidden old option name: stores into the new option's `dest`, with a warning."""

    def __init__(self, option_strings, dest, *, new: str, nargs=None, const=None, **kw):
        self.new = new
        super().__init__(option_strings, dest, nargs=nargs, const=const, help=argparse.SUPPRESS,
                         **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        if self.nargs == 0:
            _warn(option_string, self.new)
            setattr(namespace, self.dest, self.const)
            return
        if isinstance(values, list):
            values = ",".join(values)
        shown = str(values)
        _warn(f"{option_string} {shown.replace(',', ' ')}", f"{self.new} {shown}")
        setattr(namespace, self.dest, values)


def renamed(p, old: str, new: str, dest: str, *, flag: bool = False, many: bool = False,
            type=None) -> None:
    """Register the hidden deprecated spelling `old` of the option `new` (stored in `dest`)."""
    if flag:
        p.add_argument(old, dest=dest, action=_Renamed, new=new, nargs=0, const=True)
    else:
        p.add_argument(old, dest=dest, action=_Renamed, new=new, nargs="+" if many else None,
                       type=type)


def scenario_arguments(p, *, extras: bool = True, K: int | None = None) -> None:
    """`--K --M --T --g --g-teacher` (and, with `extras`, `--noise --weight-decay --minibatch`)."""
    p.add_argument("--K", type=int, default=K, help="student hidden units (default 2)")
    p.add_argument("--M", type=int, help="teacher hidden units (default: K)")
    p.add_argument("--T", nargs="+", action=_ListValue, metavar="MATRIX",
                   help="teacher overlaps: diagonal '1,2' or JSON matrix (default identity)")
    p.add_argument("--g", help="activation: relu, erf, linear, tanh, ... (default relu)")
    p.add_argument("--g-teacher", help="teacher activation (default: the student's)")
    renamed(p, "--T-diag", "--T", "T", many=True)
    renamed(p, "--activation", "--g", "g")
    renamed(p, "--teacher-activation", "--g-teacher", "g_teacher")
    if extras:
        p.add_argument("--noise", type=float, help="teacher output noise std (default 0)")
        p.add_argument("--weight-decay", type=float, help="L2 coefficient (default 0)")
        p.add_argument("--minibatch", type=int, help="SGD minibatch size B (default 1)")


def init_arguments(p) -> None:
    """`--Q0 --R0`: the initial order parameters."""
    p.add_argument("--Q0", nargs="+", action=_ListValue, metavar="MATRIX",
                   help="initial Q: diagonal '0.1,0.2' or JSON matrix (default 0.1*(1..K))")
    p.add_argument("--R0", nargs="+", action=_ListValue, metavar="MATRIX",
                   help="initial R: a number x (x * I, K x M) or JSON matrix (default 1e-3)")
    renamed(p, "--Q0-diag", "--Q0", "Q0", many=True)


def ode_arguments(p, *, hermite_help: str = "") -> None:
    """`--no-eta2 --i4 --order`: the options of `jaxdyn.OrderParamODE`."""
    p.add_argument("--no-eta2", action="store_true", default=None,
                   help="drop the eta^2 term (the small-eta ODE)")
    p.add_argument("--i4", choices=["exact", "hermite"],
                   help="eta^2 averages: exact (default) or the Hermite series" + hermite_help)
    p.add_argument("--order", type=int, help="order of the Hermite series (default 10)")
    renamed(p, "--small-eta", "--no-eta2", "no_eta2", flag=True)


def get(args, name):
    """`args.<name>`, or its default when the option was not given."""
    v = getattr(args, name, None)
    return DEFAULTS.get(name) if v is None else v


def parse_matrix(spec, n: int, m: int | None = None, *, name: str):
    """A matrix option (see the module docstring) as an `n x m` NumPy array, or None."""
    m = n if m is None else m
    if spec is None:
        return None
    try:
        if isinstance(spec, str) and spec.strip().startswith("["):
            spec = json.loads(spec)
        if isinstance(spec, (int, float)) or (isinstance(spec, str) and "," not in spec):
            return float(spec) * np.eye(n, m)
        vals = [float(v) for v in spec.split(",")] if isinstance(spec, str) else spec
        a = np.asarray(vals, float)
    except (ValueError, TypeError) as e:
        raise SystemExit(f"jaxdyn: cannot read {name} {spec!r} ({e}): write a number, a comma "
                         "list (diagonal) or a JSON nested list") from None
    if a.ndim == 1:
        if len(a) != min(n, m):
            raise SystemExit(f"jaxdyn: {name} needs {min(n, m)} diagonal values, got {len(a)}")
        out = np.zeros((n, m))
        out[np.arange(len(a)), np.arange(len(a))] = a
        return out
    if a.shape != (n, m):
        raise SystemExit(f"jaxdyn: {name} must be {n} x {m}, got shape {a.shape}")
    return a


def parse_grid(spec, *, name: str = "grid"):
    """A grid option (see the module docstring) as a 1-D NumPy array."""
    if isinstance(spec, (int, float)):
        return np.array([float(spec)])
    if isinstance(spec, (list, tuple)):
        return np.asarray(spec, float)
    if isinstance(spec, dict):
        fn = np.geomspace if spec.get("scale", "linear") in ("log", "geom") else np.linspace
        return fn(float(spec["start"]), float(spec["stop"]), int(spec["num"]))
    s = str(spec).strip()
    try:
        if s.startswith("geom:"):
            a, b, n = s[5:].split(":")
            return np.geomspace(float(a), float(b), int(n))
        if ":" in s:
            a, b, n = s.split(":")
            return np.linspace(float(a), float(b), int(n))
        return np.asarray([float(x) for x in s.split(",")], float)
    except ValueError:
        raise SystemExit(f"jaxdyn: cannot read {name} {spec!r}: write start:stop:num, "
                         "geom:start:stop:num or a,b,c") from None


def scenario_from_args(args):
    """The `jaxdyn.Scenario` of the parsed options (defaults for those not given)."""
    import jax.numpy as jnp  # deferred: the command switches x64 on before jaxdyn is imported

    import jaxdyn as jd

    K = int(get(args, "K"))
    M = int(getattr(args, "M", None) or K)
    T = parse_matrix(getattr(args, "T", None), M, name="--T")
    kw = {}
    for name in ("noise", "weight_decay"):
        if hasattr(args, name):
            kw[name] = float(get(args, name))
    if hasattr(args, "minibatch"):
        kw["batch_size"] = int(get(args, "minibatch"))
    return jd.Scenario(K=K, M=M, T=None if T is None else jnp.asarray(T), g=get(args, "g"),
                       g_teacher=getattr(args, "g_teacher", None), **kw)


def init_from_args(args, sc):
    """The initial `jaxdyn.OrderParams` of `--Q0 --R0` for the scenario `sc`."""
    import jax.numpy as jnp

    import jaxdyn as jd

    Q0 = parse_matrix(getattr(args, "Q0", None), sc.K, name="--Q0")
    if Q0 is None:
        Q0 = np.diag(0.1 * np.arange(1, sc.K + 1))
    R0 = parse_matrix(get(args, "R0"), sc.K, sc.M, name="--R0")
    return jd.OrderParams(Q=jnp.asarray(Q0), R=jnp.asarray(R0))


def ode_options(args) -> dict:
    """`eta2=, i4=, order=` of the parsed `--no-eta2 --i4 --order`, as keyword arguments."""
    eta2 = not getattr(args, "no_eta2", None)
    if getattr(args, "eta2", None) is False:  # `eta2 = false` in a config file
        eta2 = False
    return dict(eta2=eta2, i4=get(args, "i4"), order=int(get(args, "order")))


def ode_from_args(args, sc):
    """The `jaxdyn.OrderParamODE` of the parsed options for the scenario `sc`."""
    import jaxdyn as jd

    return jd.OrderParamODE(sc, **ode_options(args))
