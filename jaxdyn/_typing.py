"""Shape-annotated array types of the public signatures (jaxtyping; documentation, not checked
at run time). Dimension names: `K` student units, `M` teacher units, `n` recorded times, `*batch`
any leading axes (`OrderParams` and `Scenario` annotate their fields with `K`, `M` directly)."""

from __future__ import annotations

from jaxtyping import Array, ArrayLike, Float

Scalar = Float[ArrayLike, ""]
"""A real number (Python float, NumPy or JAX 0-d array)."""
Times = Float[ArrayLike, "n"]
"""An increasing 1-D array of times alpha (examples / N)."""
Cov2 = Float[ArrayLike, "*batch 2 2"]
Cov3 = Float[ArrayLike, "*batch 3 3"]
Cov4 = Float[ArrayLike, "*batch 4 4"]
"""Covariances of 2, 3, 4 jointly Gaussian fields, batched over leading axes."""
Average = Float[Array, "*batch"]
"""A Gaussian average per covariance of the batch."""
Rates = Float[ArrayLike, "n_eta"]
"""A 1-D array of learning rates (a sweep axis)."""
