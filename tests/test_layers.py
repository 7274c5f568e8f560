"""The layers of docs/architecture.md, checked on the source (like import-linter)."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

from conftest import PYTHON, subprocess_env

SRC = Path(__file__).resolve().parents[1] / "src" / "raylake"


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def raylake_imports(folder: str) -> dict[str, set[str]]:
    base = SRC / folder if (SRC / folder).is_dir() else SRC
    files = list(base.rglob("*.py")) if base != SRC else [SRC / f"{folder}.py"]
    return {str(f.relative_to(SRC)): {m for m in imports(f) if m.startswith("raylake")} for f in files}


def test_errors_imports_no_raylake_module():
    assert raylake_imports("errors") == {"errors.py": set()}


def test_config_imports_only_errors():
    for path, mods in raylake_imports("config").items():
        assert all(m.startswith(("raylake.config", "raylake.errors")) for m in mods), (path, mods)


def test_lake_imports_no_other_domain():
    for path, mods in raylake_imports("lake").items():
        assert all(m.startswith(("raylake.lake", "raylake.errors", "raylake.config")) or m == "raylake"
                   for m in mods), (path, mods)


def test_nothing_imports_jobs():
    for path in SRC.rglob("*.py"):
        assert not any(m.startswith("jobs") for m in imports(path)), path


def test_import_has_no_side_effects():
    code = "import raylake, raylake.lake, raylake.ingest, ray; print(ray.is_initialized())"
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True,
                         env=subprocess_env(), check=True)
    assert out.stdout.strip() == "False"
