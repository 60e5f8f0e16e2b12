import os

os.environ.setdefault("MPLBACKEND", "Agg")

import jax


jax.config.update("jax_enable_x64", True)

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(20261124)
