"""The suite runs under strict dtype promotion (tests/conftest.py): here, in the notebooks (run in
this process) and in the subprocesses that tests start (JAX reads `JAX_NUMPY_DTYPE_PROMOTION`
from their inherited environment)."""

import os

import jax
import jax.numpy as jnp
import pytest


def test_strict_in_this_process_and_its_subprocesses():
    assert jax.config.jax_numpy_dtype_promotion == "strict"
    assert os.environ["JAX_NUMPY_DTYPE_PROMOTION"] == "strict"
    with pytest.raises(jax.dtypes.TypePromotionError):
        jnp.ones(2, jnp.int32) + jnp.ones(2, jnp.float64)
    # Python scalars stay weakly typed
    assert (jnp.ones(2, jnp.int32) * 2).dtype == jnp.int32
