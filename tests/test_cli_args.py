"""The one argument dialect of the `jaxdyn` command (`jaxdyn.cli._args`) and its deprecated aliases.

Parsing only (no solves), except one short `jaxdyn stability` run in both spellings."""

import json

import numpy as np
import pytest

import jaxdyn.cli as cli
from jaxdyn.cli import build_parser, scenario_from_args
from jaxdyn.cli._args import init_from_args, ode_options, parse_grid, parse_matrix


def parse(*argv):
    return build_parser().parse_args(list(argv))


def test_every_subcommand_is_registered():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == {"reproduce", "simulate", "stability", "statics", "sweep"}
    assert len(cli.SUBCOMMANDS) == len(sub.choices)


@pytest.mark.parametrize("command", ["simulate", "stability", "sweep"])
def test_one_dialect(command):
    a = parse(command, "--K", "2", "--M", "2", "--T", "1,2", "--g", "erf", "--no-eta2",
              "--i4", "hermite", "--order", "6")
    sc = scenario_from_args(a)
    np.testing.assert_array_equal(np.asarray(sc.T), np.diag([1.0, 2.0]))
    assert type(sc.g).__name__ == "Erf" and sc.K == sc.M == 2
    assert ode_options(a) == dict(eta2=False, i4="hermite", order=6)


def test_defaults():
    a = parse("simulate")
    sc = scenario_from_args(a)
    op0 = init_from_args(a, sc)
    assert sc.K == sc.M == 2 and type(sc.g).__name__ == "ReLU"
    np.testing.assert_array_equal(np.asarray(sc.T), np.eye(2))
    np.testing.assert_array_equal(np.asarray(op0.Q), np.diag([0.1, 0.2]))
    np.testing.assert_array_equal(np.asarray(op0.R), 1e-3 * np.eye(2))
    assert ode_options(a) == dict(eta2=True, i4="exact", order=10)


def test_matrices_and_grids():
    np.testing.assert_array_equal(parse_matrix("1e-3", 3, 2, name="--R0"), 1e-3 * np.eye(3, 2))
    np.testing.assert_array_equal(parse_matrix("[[1, 0.5], [0.5, 2]]", 2, name="--T"),
                                  [[1, 0.5], [0.5, 2]])
    np.testing.assert_array_equal(parse_matrix([1, 2], 2, name="--T"), np.diag([1.0, 2.0]))
    np.testing.assert_allclose(parse_grid("0.1:1.3:7"), np.linspace(0.1, 1.3, 7))
    np.testing.assert_allclose(parse_grid("geom:1e-2:10:4"), np.geomspace(1e-2, 10, 4))
    np.testing.assert_array_equal(parse_grid("1,2.5"), [1.0, 2.5])
    with pytest.raises(SystemExit, match="--T needs 2 diagonal values"):
        parse_matrix("1,2,3", 2, name="--T")
    with pytest.raises(SystemExit, match="--Q0 must be 2 x 2"):
        parse_matrix("[[1, 2, 3]]", 2, name="--Q0")
    with pytest.raises(SystemExit, match="cannot read --eta"):
        parse_grid("0.1:x:3", name="--eta")


@pytest.mark.parametrize("old,new,hint", [
    (["simulate", "--T-diag", "1", "2"], ["simulate", "--T", "1,2"], "--T 1,2"),
    (["stability", "--T", "1", "2"], ["stability", "--T", "1,2"], "--T 1,2"),
    (["simulate", "--Q0-diag", "0.3", "0.4"], ["simulate", "--Q0", "0.3,0.4"], "--Q0 0.3,0.4"),
    (["simulate", "--activation", "erf"], ["simulate", "--g", "erf"], "--g erf"),
    (["statics", "--activation", "erf"], ["statics", "--g", "erf"], "--g erf"),
    (["simulate", "--teacher-activation", "linear"], ["simulate", "--g-teacher", "linear"],
     "--g-teacher linear"),
    (["stability", "--small-eta"], ["stability", "--no-eta2"], "--no-eta2"),
    (["simulate", "--batch-size", "4"], ["simulate", "--minibatch", "4"], "--minibatch 4"),
])
def test_deprecated_spellings_warn_and_mean_the_same(old, new, hint):
    with pytest.warns(FutureWarning, match=f"write `{hint}`"):
        a = parse(*old)
    assert vars(a) == vars(parse(*new))


def test_new_spellings_do_not_warn(recwarn):
    parse("simulate", "--T", "1,2", "--Q0", "0.1,0.2", "--g", "erf", "--minibatch", "2",
          "--no-eta2")
    assert not [w for w in recwarn if issubclass(w.category, FutureWarning)]


@pytest.mark.parametrize("command", ["simulate", "stability", "statics", "sweep"])
def test_help_shows_only_the_new_spellings(command, capsys):
    with pytest.raises(SystemExit):
        parse(command, "--help")
    out = capsys.readouterr().out
    for old in ("--T-diag", "--Q0-diag", "--activation", "--teacher-activation", "--small-eta"):
        assert old not in out
    assert "--g" in out


def test_stability_old_and_new_spellings_give_the_same_numbers(tmp_path):
    new, old = tmp_path / "new.json", tmp_path / "old.json"
    assert cli.main(["--no-cache", "stability", "--preset", "000-kmm1", "--eta", "0.5",
                     "--no-eta2", "--json", str(new)]) == 0
    with pytest.warns(FutureWarning):
        assert cli.main(["--no-cache", "stability", "--preset", "000-kmm1", "--eta", "0.5",
                         "--small-eta", "--json", str(old)]) == 0
    a, b = json.loads(new.read_text()), json.loads(old.read_text())
    assert a == b
    # the small-eta K = M = 1 field at (R, Q) = (1, 1): eigenvalues -eta/2 and -eta (paper 000)
    ev = sorted(a["fixed_points"][0]["eigenvalues_real"])
    np.testing.assert_allclose(ev, [-0.5, -0.25], atol=1e-12)
