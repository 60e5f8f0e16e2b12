"""jaxdyn: differentiable order-parameter theory of online SGD in two-layer networks.

Float64: the theory code needs it (ODE tolerances ~1e-8, root finding, eigenvalues). jaxdyn does
*not* switch it on at import time behind your back; its entry points (the `jaxdyn` command, the
notebooks, the tests) call `jaxdyn.enable_x64()`, and so should your script, before creating arrays.
"""

import importlib.metadata

import jax

from ._activations import (
    AbstractActivation as AbstractActivation,
    AbstractPiecewiseLinear as AbstractPiecewiseLinear,
    Activation as Activation,
    Erf as Erf,
    Linear as Linear,
    ReLU as ReLU,
)
from ._cache import (
    default_cache_dir as default_cache_dir,
    enable_compilation_cache as enable_compilation_cache,
)
from ._averages import I2 as I2, I3 as I3, I4 as I4, J2 as J2
from ._activations import (
    Abs as Abs,
    GELU as GELU,
    LeakyReLU as LeakyReLU,
    Sigmoid as Sigmoid,
    Swish as Swish,
    Tanh as Tanh,
)
from ._averages import (
    HermiteConvergenceWarning as HermiteConvergenceWarning,
    hermite_coefficients as hermite_coefficients,
    hermite_in_region as hermite_in_region,
    hermite_quadrature_error as hermite_quadrature_error,
)
from ._integrate import RESULTS as RESULTS, Trajectory as Trajectory, integrate as integrate
from ._model import OrderParams as OrderParams, Scenario as Scenario, covariance as covariance
from ._ode import (
    ExactI4 as ExactI4,
    HermiteI4 as HermiteI4,
    OrderParamODE as OrderParamODE,
    eps_g as eps_g,
    vector_field as vector_field,
)
# second-layer learning (issue 15): Scenario(eta_v=...), OrderParams(v=...)
from ._ode import readout_field as readout_field
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
    MatchedTheory as MatchedTheory,
    SGDInit as SGDInit,
    SGDStep as SGDStep,
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
from ._overlap_chain import simulate_overlaps as simulate_overlaps


from . import papers as papers

from ._statics import (
    Equilibrium as Equilibrium,
    LargeKTransition as LargeKTransition,
    StaticsBranch as StaticsBranch,
    Transition as Transition,
    alpha_instability as alpha_instability,
    entropy as entropy,
    entropy_ss as entropy_ss,
    equilibrium as equilibrium,
    flatten_statics as flatten_statics,
    free_energy as free_energy,
    free_energy_ss as free_energy_ss,
    full_hessian as full_hessian,
    large_K_eps_g as large_K_eps_g,
    large_K_transition as large_K_transition,
    pair_correlation as pair_correlation,
    pair_correlation_error as pair_correlation_error,
    single_unit as single_unit,
    single_unit_alpha as single_unit_alpha,
    site_symmetric_state as site_symmetric_state,
    specialisation_transition as specialisation_transition,
    specialised_branch as specialised_branch,
    statics_eps_g as statics_eps_g,
    statics_eps_g_ss as statics_eps_g_ss,
    unflatten_statics as unflatten_statics,
    unspecialised_branch as unspecialised_branch,
)
from ._gibbs_sampling import GibbsSamples as GibbsSamples, sample_gibbs as sample_gibbs
from ._population import (
    flow_jacobian as flow_jacobian,
    population_gating as population_gating,
    population_gradient as population_gradient,
    population_loss as population_loss,
    relu_correlation as relu_correlation,
    vector_angle as vector_angle,
)
from ._weight_flow import (
    WeightTrajectory as WeightTrajectory,
    gradient_flow as gradient_flow,
    population_descent as population_descent,
    population_scenario as population_scenario,
    weight_order_params as weight_order_params,
)
from ._single_relu import (
    antiparallel_escape_time as antiparallel_escape_time,
    init_success_probability as init_success_probability,
    lyapunov_critical_angle as lyapunov_critical_angle,
    lyapunov_rate as lyapunov_rate,
    tian_probability_bound as tian_probability_bound,
)
from ._ssb import (
    CyclicTrajectory as CyclicTrajectory,
    SaddleSpectrum as SaddleSpectrum,
    cyclic_field as cyclic_field,
    cyclic_fixed_point as cyclic_fixed_point,
    cyclic_flow as cyclic_flow,
    cyclic_jacobian as cyclic_jacobian,
    cyclic_weights as cyclic_weights,
    saddle_spectrum as saddle_spectrum,
    symmetric_saddle as symmetric_saddle,
)

# learning-rate protocols (issue 13)
from ._schedules import (
    AbstractSchedule as AbstractSchedule,
    Chebyshev as Chebyshev,
    Constant as Constant,
    FunctionSchedule as FunctionSchedule,
    PiecewiseConstant as PiecewiseConstant,
)
from ._protocols import (
    FinalError as FinalError,
    IntegratedError as IntegratedError,
    OptimizedSchedule as OptimizedSchedule,
    PontryaginCheck as PontryaginCheck,
    ProtocolValue as ProtocolValue,
    SGDObjective as SGDObjective,
    TimeToTarget as TimeToTarget,
    best_constant_eta as best_constant_eta,
    evaluate_schedule as evaluate_schedule,
    optimize_schedule as optimize_schedule,
    pontryagin as pontryagin,
    schedule_gradient as schedule_gradient,
    simulate_objective as simulate_objective,
)


def enable_x64(enable: bool = True) -> None:
    """Switch JAX to float64 (call once, before creating arrays). jaxdyn never does it at import."""
    jax.config.update("jax_enable_x64", enable)


try:
    __version__ = importlib.metadata.version("jaxdyn")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"
