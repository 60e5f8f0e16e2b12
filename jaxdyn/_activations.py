"""Activation functions as small, hashable objects.

An activation is an `eqx.Module` with `__call__(x)` (the function g) and `deriv(x)` (g').
The Gaussian averages (`jaxdyn.I2`, `I3`, `I4`) dispatch on the activation's type: closed forms
where they exist (ReLU, erf, linear), a generic route otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp


class AbstractActivation(eqx.Module):
    """Base class of all activations. Subclasses implement `__call__` and may override `deriv`."""

    def __call__(self, x):
        raise NotImplementedError

    def deriv(self, x):
        """g'(x), elementwise (autodiff unless overridden)."""
        x = jnp.asarray(x)
        return jnp.vectorize(jax.grad(lambda s: self(s)))(x)

    @property
    def name(self) -> str:
        return type(self).__name__.lower()


class AbstractPiecewiseLinear(AbstractActivation):
    """Activations `g(x) = slope_pos * x` for x > 0 and `slope_neg * x` for x < 0 (ReLU, LeakyReLU,
    Abs, Linear). Then `g = slope_pos relu(x) - slope_neg relu(-x)`, so every Gaussian average of
    such units is an exact signed sum of ReLU averages: the two slopes are all the averages need."""

    @property
    def slope_pos(self) -> float:
        raise NotImplementedError

    @property
    def slope_neg(self) -> float:
        raise NotImplementedError

    def __call__(self, x):
        x = jnp.asarray(x)
        return jnp.where(x > 0, self.slope_pos * x, self.slope_neg * x)

    def deriv(self, x):
        x = jnp.asarray(x)
        return jnp.where(x > 0, self.slope_pos, jnp.where(x < 0, self.slope_neg, 0.0)).astype(x.dtype)


class ReLU(AbstractPiecewiseLinear):
    """g(x) = max(0, x); g'(x) = theta(x) (with theta(0) = 0).

    Example: `jaxdyn.ReLU()(jnp.array([-1.0, 2.0]))` gives `[0., 2.]`.
    """

    slope_pos = 1.0
    slope_neg = 0.0

    def __call__(self, x):
        return jnp.maximum(x, 0.0)

    def deriv(self, x):
        x = jnp.asarray(x)
        return (x > 0).astype(x.dtype)


class Erf(AbstractActivation):
    """g(x) = erf(x / sqrt 2), the sigmoidal unit of Saad & Solla (1995) and Biehl & Schwarze (1995).

    Example: `jaxdyn.Erf()(0.0)` gives `0.0`.
    """

    def __call__(self, x):
        return jax.scipy.special.erf(jnp.asarray(x) / jnp.sqrt(2.0))

    def deriv(self, x):
        x = jnp.asarray(x)
        return jnp.sqrt(2.0 / jnp.pi) * jnp.exp(-0.5 * x**2)


class Linear(AbstractPiecewiseLinear):
    """g(x) = x. Example: `jaxdyn.Linear()(3.0)` gives `3.0`."""

    slope_pos = 1.0
    slope_neg = 1.0

    def __call__(self, x):
        return jnp.asarray(x)

    def deriv(self, x):
        return jnp.ones_like(jnp.asarray(x))


class Activation(AbstractActivation):
    """Any user activation `fn` (a JAX-traceable scalar function); g' by autodiff.

    Example: `jaxdyn.Activation(jnp.tanh, name="tanh")`. Averages of such activations use the
    generic (quadrature / Hermite-series) route.
    """

    fn: Callable = eqx.field(static=True)
    label: str = eqx.field(static=True, default="custom")

    def __init__(self, fn: Callable, name: str = "custom"):
        if not callable(fn):
            raise ValueError(f"Activation expects a callable, got {fn!r}")
        self.fn = fn
        self.label = name

    def __call__(self, x):
        return self.fn(jnp.asarray(x))

    @property
    def name(self) -> str:
        return self.label


def as_activation(g) -> AbstractActivation:
    """Validate (and normalise) an activation argument; strings name the built-ins."""
    if isinstance(g, AbstractActivation):
        return g
    if isinstance(g, str):
        table = _registry()
        key = g.lower()
        if key not in table:
            raise ValueError(f"unknown activation {g!r}; known: {sorted(table)}")
        return table[key]()
    raise ValueError(
        f"unknown activation {g!r}: pass an activation object such as jaxdyn.ReLU(), "
        "jaxdyn.Erf(), jaxdyn.Linear() or jaxdyn.Activation(fn)"
    )


def _registry() -> dict[str, type]:
    out = {}
    todo = list(AbstractActivation.__subclasses__())
    while todo:  # all concrete subclasses, also those below an abstract base
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls is not Activation and not cls.__name__.startswith("Abstract"):
            out[cls.__name__.lower()] = cls
    return out


# ------------------------------------------------------------------ more activations (issue 3)
# Averages of these use the generic route (`jaxdyn._averages.generic`): exact ReLU reductions for the
# piecewise-linear ones (LeakyReLU, Abs), Gauss-Hermite quadrature for I2/I3/J2 and the Hermite
# series for I4 otherwise.


class Tanh(AbstractActivation):
    """g(x) = tanh(x); g'(x) = 1 - tanh(x)^2.

    Example: `jaxdyn.I2(jnp.eye(2), jaxdyn.Tanh())` gives `0.0` (odd activation, independent units).
    """

    def __call__(self, x):
        return jnp.tanh(jnp.asarray(x))

    def deriv(self, x):
        t = jnp.tanh(jnp.asarray(x))
        return 1.0 - t * t


class Sigmoid(AbstractActivation):
    """g(x) = 1 / (1 + exp(-x)) (logistic); g'(x) = g(x) (1 - g(x)).

    Example: `jaxdyn.Sigmoid()(0.0)` gives `0.5`.
    """

    def __call__(self, x):
        return jax.nn.sigmoid(jnp.asarray(x))

    def deriv(self, x):
        s = jax.nn.sigmoid(jnp.asarray(x))
        return s * (1.0 - s)


class GELU(AbstractActivation):
    """g(x) = x Phi(x) (exact GELU, Phi the standard normal CDF); g'(x) = Phi(x) + x phi(x).

    Example: `jaxdyn.GELU()(1.0)` gives `0.8413...`.
    """

    def __call__(self, x):
        x = jnp.asarray(x)
        return 0.5 * x * (1.0 + jax.scipy.special.erf(x / jnp.sqrt(2.0)))

    def deriv(self, x):
        x = jnp.asarray(x)
        cdf = 0.5 * (1.0 + jax.scipy.special.erf(x / jnp.sqrt(2.0)))
        return cdf + x * jnp.exp(-0.5 * x * x) / jnp.sqrt(2.0 * jnp.pi)


class Swish(AbstractActivation):
    """g(x) = x sigmoid(x) (swish / SiLU); g'(x) = s + x s (1 - s) with s = sigmoid(x).

    Example: `jaxdyn.Swish()(0.0)` gives `0.0`.
    """

    def __call__(self, x):
        x = jnp.asarray(x)
        return x * jax.nn.sigmoid(x)

    def deriv(self, x):
        x = jnp.asarray(x)
        s = jax.nn.sigmoid(x)
        return s + x * s * (1.0 - s)


class LeakyReLU(AbstractPiecewiseLinear):
    """g(x) = x for x > 0, `slope * x` otherwise; g'(x) = 1 or `slope`.

    `slope` is static (part of the activation's identity: a new slope compiles anew). Since
    `g = relu(x) - slope relu(-x)`, its averages reduce exactly to ReLU ones (no truncation).

    Example: `jaxdyn.LeakyReLU(0.1)(jnp.array([-1.0, 2.0]))` gives `[-0.1, 2.]`.
    """

    slope: float = eqx.field(static=True, default=0.01)

    def __init__(self, slope: float = 0.01):
        self.slope = float(slope)

    @property
    def slope_pos(self) -> float:
        return 1.0

    @property
    def slope_neg(self) -> float:
        return self.slope

    def __call__(self, x):
        x = jnp.asarray(x)
        return jnp.where(x > 0, x, self.slope * x)

    def deriv(self, x):
        x = jnp.asarray(x)
        return jnp.where(x > 0, 1.0, self.slope).astype(x.dtype)


class Abs(AbstractPiecewiseLinear):
    """g(x) = |x|; g'(x) = sign(x). Since `|x| = relu(x) + relu(-x)`, averages are exact ReLU ones.

    Example: `jaxdyn.Abs()(-2.0)` gives `2.0`.
    """

    slope_pos = 1.0
    slope_neg = -1.0

    def __call__(self, x):
        return jnp.abs(jnp.asarray(x))

    def deriv(self, x):
        return jnp.sign(jnp.asarray(x))
