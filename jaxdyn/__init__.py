"""jaxdyn: differentiable order-parameter theory of online SGD in two-layer networks.

Float64: the theory code needs it (ODE tolerances ~1e-8, root finding, eigenvalues). jaxdyn does
*not* switch it on at import time behind your back; its entry points (the `jaxdyn` command, the
notebooks, the tests) call `jaxdyn.enable_x64()`, and so should your script, before creating arrays.
"""

import importlib.metadata

from ._activations import (
    AbstractActivation as AbstractActivation,
    Activation as Activation,
    Erf as Erf,
    Linear as Linear,
    ReLU as ReLU,
)
from ._gauss import I2 as I2, I3 as I3, I4 as I4, J2 as J2
from ._activations import (
    Abs as Abs,
    GELU as GELU,
    LeakyReLU as LeakyReLU,
    Sigmoid as Sigmoid,
    Swish as Swish,
    Tanh as Tanh,
)
from ._hermite import (
    HermiteConvergenceWarning as HermiteConvergenceWarning,
    hermite_coefficients as hermite_coefficients,
    hermite_in_region as hermite_in_region,
    hermite_quadrature_error as hermite_quadrature_error,
)
from ._integrate import RESULTS as RESULTS, Trajectory as Trajectory, integrate as integrate
from ._model import OrderParams as OrderParams, Scenario as Scenario, covariance as covariance
from ._ode import eps_g as eps_g, vector_field as vector_field


def enable_x64(enable: bool = True) -> None:
    """Switch JAX to float64 (call once, before creating arrays). jaxdyn never does it at import."""
    import jax

    jax.config.update("jax_enable_x64", enable)


try:
    __version__ = importlib.metadata.version("jaxdyn")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"
