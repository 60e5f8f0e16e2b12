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
    jd.enable_compilation_cache(sys.argv[1])
    sc = jd.Scenario(K=2, M=2, g=jd.Erf())
    op0 = jd.OrderParams(Q=0.3 * jnp.eye(2), R=0.01 * jnp.eye(2))
    tr = jd.integrate(sc, op0, eta=0.5, alphas=jnp.linspace(0.0, 5.0, 6))
    print(json.dumps({"hits": len(hits), "eps_g": float(tr.eps_g[-1])}))
""")


def _run(folder):
    env = dict(os.environ, EQX_ON_ERROR="nan")
    env.pop("JAXDYN_NO_CACHE", None)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(folder)], env=env, capture_output=True, cwd=root,
                         text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_hits_the_cache(tmp_path):
    first = _run(tmp_path)
    assert any(tmp_path.iterdir()), "nothing was written to the cache"
    second = _run(tmp_path)
    assert second["hits"] > first["hits"]
    assert second["eps_g"] == first["eps_g"]  # the same program gives the same numbers
