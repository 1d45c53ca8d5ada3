"""The wheel is complete: every package, the migrations and the shipped configs, found outside the checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _packages_on_disk() -> set[str]:
    found = set()
    for top in ("codealign", "db", "reward", "annotation_ui", "alignment"):
        for init in (REPO / top).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(REPO).parts))
    return found


def test_the_wheel_holds_every_package_and_config_and_works_outside_the_checkout(tmp_path):
    source = tmp_path / "source"  # setuptools writes build/ next to pyproject.toml: not into the checkout
    for name in ("codealign", "db", "reward", "annotation_ui", "alignment", "configs"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path, str(source)], check=True
    )
    wheel = next(tmp_path.glob("codealign-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    listed = {"/".join(n.split("/")[:-1]).replace("/", ".") for n in names if n.endswith("__init__.py")}
    assert _packages_on_disk() - listed == set()  # a package directory missing from pyproject's list
    shipped = {p.relative_to(REPO / "configs").as_posix() for p in (REPO / "configs").rglob("*.yaml")}
    assert {
        n.removeprefix("codealign/configs/") for n in names if n.startswith("codealign/configs/")
    } >= shipped
    assert {"db/migrations/env.py", "db/migrations/script.py.mako"} <= names

    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", site, str(wheel)], check=True)
    probe = (
        f"import sys; sys.path.insert(0, {str(site)!r})\n"
        "import codealign, alignment.sft as sft\n"
        "from codealign.config import load_config, shipped_configs\n"
        "cfg = load_config(sft.SFTRecipeConfig, 'configs/sft.yaml')\n"
        "print(codealign.__file__, shipped_configs(), cfg.num_train_epochs)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0].startswith(str(site)) and out[1] == str(site / "codealign" / "configs") and out[2] == "16.0"
