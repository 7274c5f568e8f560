"""The layers of docs/architecture.md, as import-linter contracts ([tool.importlinter] in
pyproject.toml): the source keeps them, and a copy of the source that breaks one on
purpose fails the check with a message naming both modules."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import PYTHON, REPO, subprocess_env

SRC = REPO / "src" / "raylake"
CONFIG = REPO / "pyproject.toml"


def lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the project's contracts on the `raylake` found on `pythonpath`."""
    exe = Path(PYTHON).with_name("lint-imports")
    cmd = [str(exe)] if exe.exists() else [shutil.which("lint-imports") or "lint-imports"]
    env = subprocess_env()
    env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([*cmd, "--no-cache", "--no-logo", str(CONFIG)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120)


def test_source_keeps_the_contracts(tmp_path):
    res = lint_imports(tmp_path, REPO / "src")
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout and "Analyzed" in res.stdout


# A planted module and the import it makes, and the message the check must print.
PLANTED = {
    "sideways-domain": ("features/planted.py", "from raylake.train import metrics",
                        "raylake.features is not allowed to import raylake.train"),
    "domain-not-on-an-edge": ("serve/planted.py", "import raylake.train.metrics",
                              "raylake.serve is not allowed to import raylake.train"),
    "lake-imports-a-domain": ("lake/planted.py", "from raylake.features import definitions",
                              "raylake.lake is not allowed to import raylake.features"),
    "config-imports-the-lake": ("config/planted.py", "import raylake.lake",
                                "raylake.config is not allowed to import raylake.lake"),
    "flavor-outside-models": ("serve/planted.py", "import xgboost",
                              "raylake.serve is not allowed to import xgboost"),
}


@pytest.mark.parametrize("case", PLANTED, ids=list(PLANTED))
def test_a_contract_broken_on_purpose_fails_naming_both_modules(tmp_path, case):
    path, line, message = PLANTED[case]
    copy = tmp_path / "src" / "raylake"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__", "conf"))
    (copy / path).write_text(f'"""Planted by test_layers."""\n\n{line}\n')
    planted = "raylake." + path.removesuffix(".py").replace("/", ".")

    res = lint_imports(tmp_path, tmp_path / "src")
    assert res.returncode != 0, res.stdout[-3000:]
    # The contract's message names the two packages, the chain names the planted module.
    out = " ".join(res.stdout.split())  # import-linter wraps long lines
    assert message in out, res.stdout[-6000:]
    assert f"{planted} -> {line.split()[1]}" in out, res.stdout[-6000:]


def test_import_has_no_side_effects():
    code = "import raylake, raylake.lake, raylake.ingest, ray; print(ray.is_initialized())"
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True,
                         env=subprocess_env(), check=True)
    assert out.stdout.strip() == "False"
