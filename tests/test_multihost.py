"""The multi-host path of `jaxdyn.sweep` (docs/sweeps.md), exercised: two processes on localhost
joined by `jax.distributed.initialize` (CPU collectives over gloo), one device each, run one sweep
across both; the dataset equals the single-process one, also after one process was killed in the
middle and both were restarted (only the missing chunks are computed)."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap
import time

import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd


_WORKER = textwrap.dedent("""
    import sys, json
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address="localhost:" + sys.argv[1], num_processes=2,
                               process_id=int(sys.argv[2]), initialization_timeout=120)
    import numpy as np, jax.numpy as jnp
    import jaxdyn as jd
    assert jax.process_count() == 2 and len(jax.devices()) == 2
    sc = jd.Scenario(K=2, M=2, g=jd.Erf())
    op0 = jd.OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=1e-3 * jnp.eye(2))
    ds = jd.sweep(sc, op0, eta=np.linspace(0.5, 4.0, int(sys.argv[4])),
                  alphas=np.geomspace(0.1, 60.0, 30), batch_size=2, chunk_size=4,
                  progress=False, path=sys.argv[3])
    print(json.dumps(dict(process=jax.process_index(), n_devices=ds.attrs["n_devices"],
                          n_computed_chunks=ds.attrs["n_computed_chunks"])), flush=True)
    jax.distributed.shutdown()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(path, n_eta):
    port = str(_free_port())
    env = dict(os.environ, EQX_ON_ERROR="nan", JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    return [subprocess.Popen([sys.executable, "-c", _WORKER, port, str(i), str(path), str(n_eta)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(2)]


def _finish(procs, timeout=600):
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return outs


def _reference(n_eta):
    sc = jd.Scenario(K=2, M=2, g=jd.Erf())
    op0 = jd.OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=1e-3 * jnp.eye(2))
    return jd.sweep(sc, op0, eta=np.linspace(0.5, 4.0, n_eta), alphas=np.geomspace(0.1, 60.0, 30),
                    batch_size=2, chunk_size=4, progress=False)


def _assert_same(ds, ref):
    for k in ("eps_g", "regime", "num_steps", "diverged", "Q_final", "R_final", "alpha_to_eps"):
        a, b = ds[k].values, ref[k].values
        if a.dtype.kind in "biu":
            np.testing.assert_array_equal(a, b, err_msg=k)
        else:  # batches have the same members on 1 or 2 devices: equal up to last-bit rounding
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-15, err_msg=k)


@pytest.mark.slow
def test_two_processes_one_sweep_and_resume_after_a_kill(tmp_path):
    n_eta = 16  # 4 chunks of 4 points
    ref = _reference(n_eta)

    # 1. a clean two-process run equals the single-process dataset
    out = tmp_path / "mh.nc"
    info = _finish(_start(out, n_eta))
    assert [i["process"] for i in info] == [0, 1]
    assert all(i["n_devices"] == 2 and i["n_computed_chunks"] == 4 for i in info)
    _assert_same(jd.load_sweep(out), ref)

    # 2. kill process 1 once chunks are on disk; process 0 then cannot finish (it waits in a
    #    collective or fails): stop it too, as a job scheduler would, and restart both
    out2 = tmp_path / "mh2.nc"
    parts = pathlib.Path(str(out2) + ".parts")
    procs = _start(out2, n_eta)
    t0 = time.time()
    while len(list(parts.glob("chunk_*.nc"))) < 1 and time.time() - t0 < 600:
        time.sleep(0.05)
    procs[1].kill()
    procs[1].wait()
    try:
        procs[0].wait(timeout=20)
    except subprocess.TimeoutExpired:
        procs[0].kill()
        procs[0].wait()
    n_done = len(list(parts.glob("chunk_*.nc")))
    assert 1 <= n_done < 4 and not out2.exists()
    info = _finish(_start(out2, n_eta))
    assert all(i["n_computed_chunks"] == 4 - n_done for i in info)
    _assert_same(jd.load_sweep(out2), ref)
