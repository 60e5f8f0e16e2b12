"""The persistent compilation cache: a second process loads the compiled solve from disk."""

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    hits = []
    jax.monitoring.register_event_listener(
        lambda event, **kw: hits.append(event) if event == "/jax/compilation_cache/cache_hits" else None)
    import jax.numpy as jnp
    import jaxdyn as jd
    jd.enable_x64()
    jd.enable_compilation_cache(sys.argv[1], traces=sys.argv[2] == "1")
    sc = jd.Scenario(K=2, M=2, g=jd.Erf())
    op0 = jd.OrderParams(Q=0.3 * jnp.eye(2), R=0.01 * jnp.eye(2))
    tr = jd.integrate(sc, op0, eta=0.5, alphas=jnp.linspace(0.0, 5.0, 6))
    from jaxdyn import _trace_cache
    print(json.dumps({"hits": len(hits), "eps_g": float(tr.eps_g[-1]), **_trace_cache.stats}))
""")


def _run(folder, traces=False):
    env = dict(os.environ, EQX_ON_ERROR="nan")
    env.pop("JAXDYN_NO_CACHE", None)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(folder), "1" if traces else "0"], env=env, capture_output=True, cwd=root,
                         text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_hits_the_cache(tmp_path):
    first = _run(tmp_path)
    assert any(tmp_path.iterdir()), "nothing was written to the cache"
    second = _run(tmp_path)
    assert second["hits"] > first["hits"]
    assert second["eps_g"] == first["eps_g"]  # the same program gives the same numbers


def test_second_process_loads_the_traced_solve(tmp_path):
    first = _run(tmp_path, traces=True)
    assert (first["stored"], first["loaded"]) == (1, 0)
    assert len(list((tmp_path / "traces").glob("*.jaxexport"))) == 1
    second = _run(tmp_path, traces=True)
    assert (second["stored"], second["loaded"]) == (0, 1)  # not traced again
    assert second["hits"] > first["hits"]  # and its compiled program came from the cache
    assert second["eps_g"] == first["eps_g"]


def test_trace_cache_refuses_calls_without_a_stable_key(tmp_path, monkeypatch):
    """A user's activation function has no identity across processes (its repr holds an address):
    such a call is never stored, so a later process can never load a different function's trace."""
    import jax.numpy as jnp

    import jaxdyn as jd
    from jaxdyn import _trace_cache

    monkeypatch.setattr(_trace_cache, "_folder", tmp_path)
    sc = jd.Scenario(K=1, M=1, g=jd.Activation(lambda x: jnp.tanh(x)))
    op0 = jd.OrderParams(Q=0.3 * jnp.eye(1), R=0.01 * jnp.eye(1))
    tr = jd.integrate(sc, op0, eta=0.5, alphas=jnp.linspace(0.0, 1.0, 3), i4="hermite", order=4)
    assert bool(tr.ok)
    assert not list(tmp_path.iterdir())
