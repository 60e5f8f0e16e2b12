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
from ._cache import (
    default_cache_dir as default_cache_dir,
    enable_compilation_cache as enable_compilation_cache,
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
from ._fixed_points import (
    Branch as Branch,
    FixedPoint as FixedPoint,
    continuation as continuation,
    fixed_point as fixed_point,
    flat_labels as flat_labels,
    flatten_op as flatten_op,
    symmetric_fixed_point as symmetric_fixed_point,
    symmetry_basis as symmetry_basis,
    symmetry_patterns as symmetry_patterns,
    unflatten_op as unflatten_op,
)
from ._thresholds import (
    Threshold as Threshold,
    divergence_eta as divergence_eta,
    fold_eta as fold_eta,
    nonmonotonic_eta as nonmonotonic_eta,
    stability_threshold as stability_threshold,
)
from ._sweep import REGIMES as SWEEP_REGIMES, load_sweep as load_sweep, sweep as sweep
from ._simulate import (
    SGDState as SGDState,
    SimResult as SimResult,
    align_units as align_units,
    init_weights as init_weights,
    make_sgd as make_sgd,
    matched_theory as matched_theory,
    permute_units as permute_units,
    sim_order_params as sim_order_params,
    simulate as simulate,
)


def enable_x64(enable: bool = True) -> None:
    """Switch JAX to float64 (call once, before creating arrays). jaxdyn never does it at import."""
    import jax

    jax.config.update("jax_enable_x64", enable)


try:
    __version__ = importlib.metadata.version("jaxdyn")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"
