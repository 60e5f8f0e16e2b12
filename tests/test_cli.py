"""The `jaxdyn` command line and the reproduction registry."""

import json
import subprocess
import sys

import pytest

from jaxdyn.cli import main
from jaxdyn._reproduce import list_reproductions


def test_list(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ["000-fig1", "000-fig2", "000-fig3", "000-fig4", "001-learning-curve"]:
        assert name in out
    assert {r.name for r in list_reproductions()} >= {"000-fig2", "001-learning-curve"}


def test_reproduce_writes_png_and_json(tmp_path):
    assert main(["reproduce", "000-fig4", "--fast", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "000-fig4.png").stat().st_size > 1000
    data = json.loads((tmp_path / "000-fig4.json").read_text())
    assert data["fast_mode"] is True and abs(data["R_final"][1][1] - data["R_final"][1][2]) < 1e-8


def test_unknown_reproduction(tmp_path):
    with pytest.raises(ValueError, match="unknown reproduction"):
        main(["reproduce", "no-such-figure", "--out", str(tmp_path)])


def test_console_script_entry_point():
    out = subprocess.run([sys.executable, "-m", "jaxdyn._cli", "reproduce", "--list"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "001-learning-curve" in out.stdout


def test_former_entry_point_still_works():
    from jaxdyn._cli import main as old_main

    assert old_main is main
    out = subprocess.run([sys.executable, "-m", "jaxdyn.cli", "reproduce", "--list"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "001-learning-curve" in out.stdout
