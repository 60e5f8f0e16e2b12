"""jaxdyn.sweep: agreement with integrate, one compilation, summaries, chunked resume, sharding."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd
from jaxdyn import _sweep


ALPHAS = np.geomspace(0.1, 60.0, 30)
ETAS = np.linspace(0.5, 4.0, 10)


def _erf():
    sc = jd.Scenario(K=2, M=2, g=jd.Erf())
    op0 = jd.OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=1e-3 * jnp.eye(2))
    return sc, op0


def assert_same(ds, ref, keys=("eps_g", "regime", "num_steps", "diverged", "nonmonotonic",
                                 "plateau_height", "plateau_length", "alpha_to_eps", "Q_final", "R_final")):
    """Same results: integer and boolean summaries exactly, floats to a few ulp (a vmapped batch
    may round differently in the last bit depending on its companions (SIMD lanes vs tail), and
    the adaptive solver carries such differences to ~1e-12 relative, far below its tolerance)."""
    for k in keys:
        a, b = ds[k].values, ref[k].values
        if a.dtype.kind in "biu":
            np.testing.assert_array_equal(a, b, err_msg=k)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-15, err_msg=k)


def _sweep_erf(**kw):
    sc, op0 = _erf()
    kw.setdefault("eta", ETAS)
    kw.setdefault("alphas", ALPHAS)
    kw.setdefault("batch_size", 2)
    kw.setdefault("chunk_size", 4)
    kw.setdefault("progress", False)
    return jd.sweep(sc, op0, **kw)


def test_matches_integrate_and_compiles_once():
    sc, op0 = _erf()
    ds = _sweep_erf()
    assert ds["eps_g"].dims == ("eta", "alpha")
    assert ds.attrs["n_traces"] == 1  # three chunks, one compilation
    assert ds.attrs["n_computed_chunks"] == 3
    for e in ETAS[[0, 4, 9]]:
        tr = jd.integrate(sc, op0, eta=e, alphas=ALPHAS, throw=False)
        np.testing.assert_allclose(ds["eps_g"].sel(eta=e).values, np.asarray(tr.eps_g),
                                   rtol=1e-12, atol=1e-14)
        assert int(ds["num_steps"].sel(eta=e)) == int(tr.num_steps)
    # same static configuration, new values: the compiled function is reused
    ds2 = _sweep_erf(eta=ETAS * 0.9)
    assert ds2.attrs["n_traces"] == 0
    # sorting by a cost proxy must not change the results
    assert_same(_sweep_erf(cost=-ETAS), ds)


def test_summaries_on_synthetic_curves():
    a = jnp.linspace(0.0, 100.0, 101)
    knobs = dict(rise_rtol=jnp.asarray(1e-3), eps_floor=jnp.asarray(1e-7),
                 plateau_rate=jnp.asarray(5e-3), eps_targets=jnp.asarray([0.3, 1e-3]))
    # drop to a plateau at 0.25 on [20, 60], then exponential decay
    eg = jnp.where(a < 20, 0.25 + 0.5 * jnp.exp(-a / 3.0), 0.25 * jnp.exp(-jnp.maximum(a - 60, 0) / 5.0))
    s = _sweep._summaries(eg, a, jnp.asarray(1.0), a[-1], jnp.asarray(False), knobs)
    assert not bool(s["nonmonotonic"])
    assert abs(float(s["plateau_height"]) - 0.25) < 1e-3
    assert 38 <= float(s["plateau_length"]) <= 55 and float(s["plateau_end"]) == 60.0
    # alpha where 0.25 exp(-(a - 60)/5) = 1e-3
    np.testing.assert_allclose(float(s["alpha_to_eps"][1]), 60 + 5 * np.log(250), rtol=2e-3)
    # a bump: eps_g rises by 10% at alpha 30
    eg2 = eg * (1 + 0.1 * jnp.exp(-((a - 30) / 4.0) ** 2) * (a > 25).astype(a.dtype))
    s2 = _sweep._summaries(eg2, a, jnp.asarray(1.0), a[-1], jnp.asarray(False), knobs)
    assert bool(s2["nonmonotonic"]) and 0.05 < float(s2["eps_rise"]) < 0.11
    assert 25 < float(s2["alpha_nonmonotonic"]) < 31
    # noise below the floor is not a rise
    eg3 = jnp.where(a > 80, 1e-9 * (1 + jnp.sin(a)), eg)
    assert not bool(_sweep._summaries(eg3, a, jnp.asarray(1.0), a[-1], jnp.asarray(False), knobs)["nonmonotonic"])


def test_paper001_regimes():
    """K=M=2 ReLU, T=diag(1,2), full eta^2 ODE: monotonic, non-monotonic, divergent (paper 001)."""
    sc = jd.Scenario(K=2, M=2, T=jnp.diag(jnp.array([1.0, 2.0])))
    op0 = jd.OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=1e-3 * jnp.eye(2))
    ds = jd.sweep(sc, op0, eta=[1.0, 1.21, 1.24, 1.256, 1.26], alphas=np.geomspace(1e-2, 400, 120),
                  progress=False, batch_size=5)
    assert ds["regime"].values.tolist() == [0, 0, 1, 1, 2]
    assert bool(ds["diverged"].sel(eta=1.26)) and 80 < float(ds["alpha_diverged"].sel(eta=1.26)) < 130
    h = ds["plateau_height"].values[:4]
    assert np.all(np.diff(h) > 0)  # the plateau rises with eta
    assert float(ds["eps_g_final"].sel(eta=1.0)) < 1e-8


def test_axes_and_transform():
    sc, op0 = _erf()
    Qs = np.stack([np.diag([0.1, 0.2]), np.diag([0.3, 0.1])])
    Rs = np.stack([1e-3 * np.eye(2), 2e-3 * np.eye(2)])
    ds = _sweep_erf(eta=[1.0, 2.0], axes={"noise": [0.0, 0.2], "init": {"Q0": Qs, "R0": Rs}},
                    chunk_size=8)
    assert ds["eps_g"].dims == ("eta", "noise", "init", "alpha")
    assert ds["Q0"].dims == ("init", "i", "k")
    sc2 = jd.Scenario(K=2, M=2, g=jd.Erf(), noise=0.2)
    tr = jd.integrate(sc2, jd.OrderParams(Q=Qs[1], R=Rs[1]), eta=2.0, alphas=ALPHAS)
    np.testing.assert_allclose(ds["eps_g"].sel(eta=2.0, noise=0.2, init=1).values,
                               np.asarray(tr.eps_g), rtol=1e-12, atol=1e-14)

    def scale_init(scenario, op, q_scale):
        return scenario, jd.OrderParams(Q=op.Q * q_scale, R=op.R)

    dt = _sweep_erf(eta=[1.0], axes={"q_scale": [1.0, 2.0]}, transform=scale_init)
    tr = jd.integrate(sc, jd.OrderParams(Q=2 * op0.Q, R=op0.R), eta=1.0, alphas=ALPHAS)
    np.testing.assert_allclose(dt["eps_g"].sel(eta=1.0, q_scale=2.0).values, np.asarray(tr.eps_g),
                               rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="cannot sweep"):
        _sweep_erf(axes={"bogus": [1.0]})


class _Killed(Exception):
    pass


def test_resume_after_interruption(tmp_path, monkeypatch):
    path = tmp_path / "s.nc"
    ref = _sweep_erf()
    real = _sweep._chunk_function

    def dying(cfg):  # the third chunk call "kills" the sweep
        fn, mesh = real(cfg)
        calls = [0]

        def wrapped(*args):
            calls[0] += 1
            if calls[0] == 3:
                raise _Killed
            return fn(*args)

        return wrapped, mesh

    monkeypatch.setattr(_sweep, "_chunk_function", dying)
    with pytest.raises(_Killed):
        _sweep_erf(path=path)
    monkeypatch.setattr(_sweep, "_chunk_function", real)
    parts = tmp_path / "s.nc.parts"
    done = sorted(parts.glob("chunk_*.nc"))
    assert [p.name for p in done] == ["chunk_00000.nc", "chunk_00001.nc"] and not path.exists()
    partial = jd.load_sweep(path)  # what is there so far
    assert partial.attrs["complete"] == 0 and partial.attrs["n_missing"] == 2
    mtimes = {p: p.stat().st_mtime_ns for p in done}
    # a different sweep may not reuse these chunks
    with pytest.raises(FileExistsError):
        _sweep_erf(path=path, rtol=1e-7)
    assert {p: p.stat().st_mtime_ns for p in done} == mtimes
    ds = _sweep_erf(path=path)
    assert ds.attrs["n_computed_chunks"] == 1  # only the missing chunk
    assert path.exists() and not parts.exists()
    assert_same(ds, ref)
    again = _sweep_erf(path=path)  # finished: loaded, nothing computed
    assert again.attrs["n_computed_chunks"] == 0
    assert_same(jd.load_sweep(path), ref)


_SUB = textwrap.dedent("""
    import sys, json
    import jax
    jax.config.update("jax_num_cpu_devices", int(sys.argv[1]))
    jax.config.update("jax_enable_x64", True)
    import numpy as np, jax.numpy as jnp
    import jaxdyn as jd
    assert len(jax.devices()) == int(sys.argv[1])
    sc = jd.Scenario(K=2, M=2, g=jd.Erf())
    op0 = jd.OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=1e-3 * jnp.eye(2))
    ds = jd.sweep(sc, op0, eta=np.linspace(0.5, 4.0, 10), alphas=np.geomspace(0.1, 60.0, 30),
                  batch_size=2, chunk_size=4, progress=False, path=sys.argv[2])
    print(json.dumps(dict(n_devices=ds.attrs["n_devices"], n_traces=ds.attrs["n_traces"])))
""")


@pytest.mark.parametrize("n_dev", [2, pytest.param(4, marks=pytest.mark.extended)])
def test_sharded_equals_single_device(tmp_path, n_dev):
    ref = _sweep_erf()
    out = tmp_path / f"d{n_dev}.nc"
    env = dict(os.environ, EQX_ON_ERROR="nan", JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", _SUB, str(n_dev), str(out)], capture_output=True,
                       text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info == {"n_devices": n_dev, "n_traces": 1}
    ds = jd.load_sweep(out)
    assert_same(ds, ref)


# extended (a subprocess that imports jax and compiles the sweep again, 16 s); default run: the same
# sweep in-process (test_matches_integrate_and_compiles_once) and the command line in test_cli.py
@pytest.mark.extended
def test_cli_sweep(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text('K = 2\nM = 2\ng = "erf"\nQ0 = "0.1,0.2"\neta = "0.5:4:6"\n'
                   'alphas = "geom:0.1:60:30"\nbatch_size = 2\n')
    out = tmp_path / "s.nc"
    env = dict(os.environ, EQX_ON_ERROR="nan", JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, "-m", "jaxdyn.cli", "sweep", "--config", str(cfg),
                        "--out", str(out), "--no-progress", "--cpu-devices", "2"],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["points"] == 6 and summary["devices"] == 2
    assert out.exists() and (tmp_path / "s.png").stat().st_size > 5000
    ds = jd.load_sweep(out)
    ref = _sweep_erf(eta=np.linspace(0.5, 4, 6), chunk_size=None)
    np.testing.assert_allclose(ds["eps_g"].values, ref["eps_g"].values, rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
    """A real kill (SIGKILL) in the middle of a sweep: the rerun computes only what is missing."""
    script = textwrap.dedent("""
        import sys, jax
        jax.config.update("jax_enable_x64", True)
        import numpy as np, jax.numpy as jnp, jaxdyn as jd
        sc = jd.Scenario(K=2, M=2, g=jd.Erf())
        op0 = jd.OrderParams(Q=jnp.diag(jnp.array([0.1, 0.2])), R=1e-3 * jnp.eye(2))
        ds = jd.sweep(sc, op0, eta=np.linspace(0.5, 4.0, 64), alphas=np.geomspace(0.1, 60.0, 30),
                      batch_size=2, chunk_size=4, progress=False, path=sys.argv[1])
        print(ds.attrs["n_computed_chunks"])
    """)
    out = tmp_path / "k.nc"
    env = dict(os.environ, EQX_ON_ERROR="nan", JAX_PLATFORMS="cpu")
    p = subprocess.Popen([sys.executable, "-c", script, str(out)], env=env,
                         stdout=subprocess.PIPE, text=True)
    parts = pathlib.Path(str(out) + ".parts")
    import time

    t0 = time.time()
    while len(list(parts.glob("chunk_*.nc"))) < 3 and time.time() - t0 < 300:
        time.sleep(0.05)
    p.kill()
    p.wait()
    n_done = len(list(parts.glob("chunk_*.nc")))
    assert 3 <= n_done < 16
    r = subprocess.run([sys.executable, "-c", script, str(out)], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.strip().splitlines()[-1]) == 16 - n_done
    ref = _sweep_erf(eta=np.linspace(0.5, 4.0, 64))
    assert_same(jd.load_sweep(out), ref)
