"""Every YAML shipped under configs/ loads against the code that reads it (litgpt-style).

Add a row to CONFIG_CLASSES when you ship a YAML; a YAML without a row fails here.
"""

from __future__ import annotations

import fnmatch
import importlib
from pathlib import Path

import pytest
import yaml

from codealign.config import load_config, shipped_configs

CONFIGS = shipped_configs()  # the repository's configs/, found as an installed package finds it

# glob relative to configs/  ->  "module:Class" (a config dataclass) or "accelerate" (accelerate's own schema)
CONFIG_CLASSES: dict[str, str] = {
    "accelerate/*.yaml": "accelerate",
    "model/*.yaml": "alignment.model_init:ModelPreset",
    "quickstart.yaml": "alignment.quickstart:QuickstartConfig",
    "benchmark.yaml": "alignment.benchmark:BenchmarkConfig",
    "reward_weights.yaml": "reward.rewards:RewardFunctionConfig",
    "sft.yaml": "alignment.sft:SFTRecipeConfig",
    "reward_model.yaml": "alignment.reward_model:RewardModelRecipeConfig",
    "dpo.yaml": "alignment.dpo:DPORecipeConfig",
    "grpo.yaml": "alignment.grpo:GRPORecipeConfig",
    "ppo.yaml": "alignment.ppo:PPORecipeConfig",
    "reward_pass_ratio.yaml": "reward.rewards:RewardFunctionConfig",
    "reward_binary.yaml": "reward.rewards:RewardFunctionConfig",
    "reward_rlhf.yaml": "reward.rewards:RewardFunctionConfig",
    "annotate.yaml": "annotation_ui.config:AnnotateConfig",
    "panel.yaml": "annotation_ui.panel:PanelConfig",
    "export_preferences.yaml": "annotation_ui.export:ExportConfig",
    "serve.yaml": "alignment.serve.config:ServeConfig",
}

# How many YAMLs configs/ ships: update it with the table, so a YAML that silently stops being found fails.
EXPECTED_COUNT = 22


def _all_yamls() -> list[Path]:
    return sorted(p for p in CONFIGS.rglob("*") if p.suffix in (".yaml", ".yml"))


def _target(path: Path) -> str | None:
    rel = path.relative_to(CONFIGS).as_posix()
    return next((t for pattern, t in CONFIG_CLASSES.items() if fnmatch.fnmatch(rel, pattern)), None)


def _load_accelerate(path: Path) -> None:
    from accelerate.commands.config.config_args import ClusterConfig

    data = yaml.safe_load(path.read_text())
    ClusterConfig(**data)  # unknown keys raise TypeError


@pytest.mark.parametrize("path", _all_yamls(), ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_shipped_yaml_loads(path):
    target = _target(path)
    assert target, f"{path.relative_to(CONFIGS)} has no entry in tests/test_configs.py CONFIG_CLASSES"
    if target == "accelerate":
        _load_accelerate(path)
        return
    module, cls = target.split(":")
    load_config(getattr(importlib.import_module(module), cls), path)


def test_count_of_shipped_yamls():
    found = _all_yamls()
    assert all(_target(p) for p in found)
    # Every pattern in the table must match at least one file, so a renamed YAML cannot slip out of the test.
    for pattern in CONFIG_CLASSES:
        assert any(fnmatch.fnmatch(p.relative_to(CONFIGS).as_posix(), pattern) for p in found), pattern
    assert len(found) == EXPECTED_COUNT, [p.relative_to(CONFIGS).as_posix() for p in found]
