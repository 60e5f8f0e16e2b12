"""The geodesic-HMC sampler of the annealed Gibbs density against independent references: the exact
finite-N marginal of R for K = 1 (a one-dimensional integral), and the saddle point of beta f for
K = 2 (slow)."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

import jaxdyn as jd


def _exact_mean_R(N, alpha, g):
    # K = 1: density of R on the sphere |w|^2 = N is (1 - R^2)^((N-3)/2) exp(-N alpha eps_g(R))
    eps = lambda R: float(jd.statics_eps_g(jnp.array([[R]]), jnp.eye(1), g))
    R0 = float(jd.single_unit(alpha, g=g))
    w = lambda R: (1 - R * R) ** ((N - 3) / 2) * np.exp(-N * alpha * (eps(R) - eps(R0)))
    Z = quad(w, -1, 1, limit=200, points=[R0])[0]
    return quad(lambda R: R * w(R), -1, 1, limit=200, points=[R0])[0] / Z


def test_sampler_matches_exact_finite_N_marginal_K1():
    N, alpha, g = 60, 2.0, jd.ReLU()
    s = jd.sample_gibbs(K=1, g=g, alpha=alpha, N=N, n_chains=8, n_samples=120, n_burn=40, key=3)
    m = s.chain_means()["R"]
    se = m.std(ddof=1) / np.sqrt(m.size)
    assert float(np.mean(np.asarray(s.acceptance))) > 0.6
    assert abs(m.mean() - _exact_mean_R(N, alpha, g)) < 4 * se + 1e-3


def test_sampler_bad_input():
    with pytest.raises(ValueError, match="N"):
        jd.sample_gibbs(K=2, g=jd.ReLU(), alpha=1.0, N=4)
    with pytest.raises(ValueError, match="alpha"):
        jd.sample_gibbs(K=2, g=jd.ReLU(), alpha=-1.0, N=50)


@pytest.mark.slow
@pytest.mark.parametrize("g,alpha,guess", [(jd.ReLU(), 3.0, "unspecialised"),
                                           (jd.ReLU(), 12.0, "specialised"),
                                           (jd.Erf(), 40.0, "specialised")])
def test_sampler_approaches_saddle_point_K2(g, alpha, guess):
    """Chain means approach the saddle point as N grows; the remaining offset is O(1/N)."""
    eq = jd.equilibrium(K=2, g=g, alpha=alpha, guess=guess)
    assert eq.kind == "minimum"
    devs = []
    for N in (100, 400):
        s = jd.sample_gibbs(K=2, g=g, alpha=alpha, N=N, n_chains=12, n_samples=200, n_burn=100,
                            key=N)
        m = s.chain_means()
        # the site average (R + S)/2 is label-free; R - S uses the per-chain labelling
        mid = (m["R"] + m["S"]) / 2
        se = mid.std(ddof=1) / np.sqrt(mid.size)
        devs.append(abs(mid.mean() - float(eq.R + eq.S) / 2))
        # finite-N mode of the exact marginal: the saddle at alpha N / (N - 2K - 1)
        eqN = jd.equilibrium(K=2, g=g, alpha=alpha * N / (N - 5), guess=guess, full=False)
        assert abs(mid.mean() - float(eqN.R + eqN.S) / 2) < 4 * se + 2.0 / N
        assert abs(m["C"].mean() - float(eq.C)) < 4 * m["C"].std(ddof=1) / np.sqrt(12) + 3.0 / N
    assert devs[1] < devs[0] + 1e-3
