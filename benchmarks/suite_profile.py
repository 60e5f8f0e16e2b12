"""Where the test suite's time goes: a pytest plugin and its summary.

Run the suite with the plugin (each xdist worker writes one JSON file), then summarise:

    PYTHONPATH=benchmarks SUITE_PROFILE_OUT=/tmp/suite-profile python -m pytest -p suite_profile
    python benchmarks/suite_profile.py /tmp/suite-profile

Per test it records the wall time and JAX's own duration events (tracing, lowering to MLIR, XLA
compilation, persistent-cache retrieval: `jax.monitoring`), and per program name the number and
total time of XLA compilations (JAX's compile log). The summary prints the phases, the test files
by wall time with their compile share, the programs that cost most to compile, and how much of the
compile time went to small programs (< 80 ms each: mostly eager `jnp` operations on new shapes).
"""

from __future__ import annotations

import collections
import glob
import json
import logging
import os
import re
import sys
import time

_cur = ["<collect>"]
_dur = collections.defaultdict(lambda: collections.defaultdict(float))
_ev = collections.defaultdict(lambda: collections.defaultdict(int))
_wall: dict = {}
_prog = collections.defaultdict(lambda: [0, 0.0])
_LOG = re.compile(r"Finished XLA compilation of (.*) in ([0-9.e-]+) sec")


def pytest_configure(config):
    import jax

    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: _dur[_cur[0]].__setitem__(event, _dur[_cur[0]][event] + duration))
    jax.monitoring.register_event_listener(
        lambda event, **kw: _ev[_cur[0]].__setitem__(event, _ev[_cur[0]][event] + 1))

    class _Handler(logging.Handler):
        def emit(self, record):
            m = _LOG.search(record.getMessage())
            if m:
                p = _prog[_cur[0].split("::")[0] + " :: " + m.group(1)]
                p[0] += 1
                p[1] += float(m.group(2))

    lg = logging.getLogger("jax._src.dispatch")
    lg.addHandler(_Handler())
    lg.setLevel(logging.DEBUG)
    lg.propagate = False
    jax.config.update("jax_log_compiles", True)


def pytest_runtest_protocol(item, nextitem):
    _cur[0] = item.nodeid
    _wall[item.nodeid] = -time.perf_counter()


def pytest_runtest_logfinish(nodeid, location):
    if nodeid in _wall and _wall[nodeid] < 0:
        _wall[nodeid] += time.perf_counter()
    _cur[0] = "<between>"


def pytest_sessionfinish(session):
    out = os.environ.get("SUITE_PROFILE_OUT", "suite-profile")
    os.makedirs(out, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(os.path.join(out, f"{worker}.json"), "w") as f:
        json.dump({"dur": _dur, "ev": _ev, "wall": _wall, "prog": _prog}, f)


def summarise(folder):
    dur = collections.defaultdict(float)
    ev = collections.defaultdict(int)
    files = collections.defaultdict(lambda: [0.0, 0.0])
    progs = collections.defaultdict(lambda: [0, 0.0])
    wall = 0.0
    for fn in glob.glob(os.path.join(folder, "*.json")):
        d = json.load(open(fn))
        for test, dd in d["dur"].items():
            key = test if "test_notebooks" in test else test.split("::")[0]
            for k, v in dd.items():
                dur[k] += v
                if k.endswith("backend_compile_duration"):
                    files[key][1] += v
        for dd in d["ev"].values():
            for k, v in dd.items():
                ev[k] += v
        for test, v in d["wall"].items():
            wall += v
            files[test if "test_notebooks" in test else test.split("::")[0]][0] += v
        for k, (c, s) in d["prog"].items():
            progs[k.split(" :: ")[1]][0] += c
            progs[k.split(" :: ")[1]][1] += s
    print(f"sum of test wall times: {wall:.0f} s")
    for k, v in sorted(dur.items(), key=lambda x: -x[1])[:6]:
        print(f"  {v:8.1f} s  {k}")
    for k in ("/jax/compilation_cache/cache_hits", "/jax/compilation_cache/cache_misses"):
        print(f"  {ev.get(k, 0):8d}    {k}")
    small = [(c, s) for c, s in progs.values() if s / c < 0.08]
    tot = sum(s for _, s in progs.values())
    print(f"compilations: {sum(c for c, _ in progs.values())} programs, {tot:.0f} s; small ones "
          f"(< 80 ms each): {sum(c for c, _ in small)}, {sum(s for _, s in small):.0f} s")
    print("\n| test file | wall s | XLA compile s |\n|---|---|---|")
    for k, (w, c) in sorted(files.items(), key=lambda x: -x[1][0])[:25]:
        print(f"| {k} | {w:.0f} | {c:.0f} |")
    print("\n| program | compilations | s |\n|---|---|---|")
    for k, (c, s) in sorted(progs.items(), key=lambda x: -x[1][1])[:15]:
        print(f"| {k} | {c} | {s:.0f} |")


if __name__ == "__main__":
    summarise(sys.argv[1] if len(sys.argv) > 1 else "suite-profile")
