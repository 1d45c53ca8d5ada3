"""The layering of docs/architecture.md holds, checked by import-linter (the contracts are in pyproject.toml).

A lower layer importing a higher one fails the check: shown on a copy of the tree with one such import added.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("codealign", "db", "reward", "annotation_ui", "alignment")
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LINT_IMPORTS, "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_import_contracts_hold():
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 kept, 0 broken" in result.stdout


def _copy_tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    root.mkdir()
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_a_lower_layer_importing_a_higher_one_is_refused(tmp_path):
    root = _copy_tree(tmp_path)
    session = root / "db" / "session.py"
    session.write_text(session.read_text() + "\n\ndef _upward():\n    import alignment.cli  # noqa: F401\n")
    result = _lint(root)
    assert result.returncode != 0
    assert "Layers: alignment > annotation_ui > reward > db > codealign" in result.stdout
    assert "db.session -> alignment.cli" in result.stdout


def test_torch_below_the_training_package_is_refused(tmp_path):
    root = _copy_tree(tmp_path)
    scoring = root / "reward" / "scoring.py"
    scoring.write_text(scoring.read_text() + "\n\ndef _heavy():\n    import torch  # noqa: F401\n")
    result = _lint(root)
    assert result.returncode != 0 and "reward.scoring -> torch" in result.stdout
