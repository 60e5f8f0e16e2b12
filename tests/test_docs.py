"""The documentation builds from the repository alone, with `--strict` (a broken docstring, a dead
link or a missing page fails), and no file of the repository points outside it."""

import os
import pathlib
import re
import subprocess
import sys



ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_docs_build_strict(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", JAXDYN_DOCS_EXECUTE="false")
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    warnings = [ln for ln in out.stderr.splitlines() if "WARNING" in ln]
    assert not warnings, "\n".join(warnings)
    site = tmp_path / "site"
    for page in ("index.html", "conventions/index.html", "api/dynamics/index.html"):
        assert (site / page).is_file(), page
    # every notebook is rendered as an example page
    for nb in (ROOT / "notebooks").glob("*.py"):
        assert (site / "examples" / nb.stem / "index.html").is_file(), nb.name
    # the API reference is generated from the docstrings, not empty stubs
    api = (site / "api" / "dynamics" / "index.html").read_text()
    assert "Integrate the order-parameter ODEs" in api


def test_every_public_name_is_in_the_api_reference():
    import inspect

    import jaxdyn

    documented = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        documented |= set(re.findall(r"::: jaxdyn\.(\w+)", page.read_text()))
    public = [n for n in dir(jaxdyn) if not n.startswith("_")
              and (inspect.isfunction(getattr(jaxdyn, n)) or inspect.isclass(getattr(jaxdyn, n)))]
    missing = sorted(set(public) - documented)
    assert not missing, f"public names missing from docs/api/*.md: {missing}"


def _tracked_files():
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / p for p in out.stdout.split() if (ROOT / p).is_file()]


def test_no_file_points_outside_the_repository():
    pattern = re.compile(r"\.\./shared|/work/|shared/(SPEC|papers|golden)|\bSPEC\b")
    bad = []
    for path in _tracked_files():
        if path.suffix not in {".py", ".md", ".toml", ".yml", ".yaml", ".txt", ".cfg", ""}:
            continue
        if path.resolve() == pathlib.Path(__file__).resolve():
            continue
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if pattern.search(line):
                bad.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()[:100]}")
    assert not bad, "files refer to material outside the repository:\n" + "\n".join(bad)
