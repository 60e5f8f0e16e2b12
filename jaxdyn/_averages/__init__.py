"""The Gaussian averages behind the order-parameter ODEs, as one acyclic family.

Layers, each importing only those above it:

- `numerics`: safe square roots and Gauss-Legendre rules (shared by all);
- `closed_forms`: ReLU I2/I3/J2 and erf I2/I3/I4/J2 in closed form (a leaf);
- `hermite`: paper 001's Hermite (Kibble-Slepian) series of I4 and Hermite coefficients;
- `generic`: activations without a closed form and mixtures (exact ReLU reduction of piecewise-
  linear units, 2-D quadrature, the series as the last resort);
- `dispatch`: the public `I2`, `I3`, `I4`, `J2` and their unchecked hot-path versions
  `gauss_i2` ... used by the vector field; one dispatch on the activations.

- `relu_moments`: the exact ReLU moments E[z_p z_q prod theta(z_k)] and the exact ReLU I4 (orthant
  probabilities by a Plackett path), with `relu_i4_terms` for the vector field's batched terms;
  it sits beside `closed_forms` (both below `generic` and `dispatch`).
"""

from .closed_forms import erf_i3_entries as erf_i3_entries, relu_moment_small as relu_moment_small
from .dispatch import (
    I2 as I2,
    I3 as I3,
    I4 as I4,
    J2 as J2,
    gauss_i2 as gauss_i2,
    gauss_i3 as gauss_i3,
    gauss_i4 as gauss_i4,
    gauss_j2 as gauss_j2,
)
from .hermite import (
    HermiteConvergenceWarning as HermiteConvergenceWarning,
    hermite_quadrature_error as hermite_quadrature_error,
    hermite_coefficients as hermite_coefficients,
    hermite_in_region as hermite_in_region,
    split_rule as split_rule,
)
from .relu_moments import (
    relu_i4 as relu_i4,
    relu_i4_terms as relu_i4_terms,
    relu_theta_moment as relu_theta_moment,
)
from .numerics import gauss_legendre as gauss_legendre, safe_sqrt as safe_sqrt, sqrt_pos as sqrt_pos
