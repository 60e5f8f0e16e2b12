"""Bad input gets a ValueError naming the argument and the fix, never a silent number."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd


SC = jd.Scenario(K=2, M=2, g=jd.Erf())
OP0 = jd.OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=1e-3 * jnp.eye(2))


def test_integrate_refuses_vector_eta():
    # it used to broadcast the two rates against the overlap matrices: an eps_g of neither
    with pytest.raises(ValueError, match="eta must be a scalar.*sweep.*vmap"):
        jd.integrate(SC, OP0, eta=[0.5, 0.6], alphas=jnp.linspace(0, 1, 3))


@pytest.mark.parametrize("bad", [[0.0, np.nan, 1.0], [0.0, np.inf], [np.nan]])
def test_integrate_refuses_nonfinite_alphas(bad):
    with pytest.raises(ValueError, match="alphas.*finite"):
        jd.integrate(SC, OP0, eta=0.5, alphas=jnp.asarray(bad))


def test_averages_refuse_concrete_non_psd_cov():
    bad4 = jnp.eye(4).at[0, 1].set(1.5).at[1, 0].set(1.5)  # |corr| > 1
    for g in (jd.ReLU(), jd.Erf(), jd.Tanh()):
        with pytest.raises(ValueError, match="cov.*positive semi-definite"):
            jd.I4(bad4, g)
    with pytest.raises(ValueError, match="cov.*positive semi-definite"):
        jd.I2(jnp.array([[1.0, 2.0], [2.0, 1.0]]), jd.ReLU())
    with pytest.raises(ValueError, match="cov.*positive semi-definite"):
        jd.I3(jnp.diag(jnp.array([1.0, -1.0, 1.0])), jd.ReLU())
    # a batch with one bad member is refused too; singular (rank-deficient) PSD is accepted
    good = 0.2 * jnp.ones((4, 4)) + 0.8 * jnp.eye(4)
    with pytest.raises(ValueError, match="positive semi-definite"):
        jd.I4(jnp.stack([good, bad4]), jd.ReLU())
    u = jnp.array([1.0, 0.5, -0.3, 2.0])
    assert np.isfinite(float(jd.I4(jnp.outer(u, u), jd.ReLU())))


@pytest.mark.parametrize("order", [0, -3, 2.5])
def test_hermite_order_must_be_positive(order):
    C = 0.15 * jnp.ones((4, 4)) + 0.85 * jnp.eye(4)
    with pytest.raises(ValueError, match="order.*integer >= 1"):
        jd.I4(C, jd.ReLU(), method="hermite", order=order)
    with pytest.raises(ValueError, match="order.*integer >= 1"):
        jd.integrate(SC, OP0, eta=0.5, alphas=jnp.array([1.0]), i4="hermite", order=order)
    with pytest.raises(ValueError, match="order.*integer >= 1"):
        jd.HermiteI4(order)
