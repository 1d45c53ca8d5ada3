"""The accelerate launch command line and the train CLI's argument checks (the real launches are in
tests/test_distributed.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from alignment.cli import main
from alignment.launcher import build_command
from codealign.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
ZERO3 = str(ROOT / "configs" / "accelerate" / "zero3.yaml")


def test_build_command_runs_the_entry_module_under_accelerate():
    cmd = build_command("dpo", "configs/dpo.yaml", ["beta=0.3", "pairs.source=mixed"], ZERO3, 8, 29611)
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[3:11] == [
        "--config_file",
        ZERO3,
        "--num_processes",
        "8",
        "--main_process_port",
        "29611",
        "-m",
        "alignment.commands.train_entry",
    ]
    assert cmd[11:] == ["dpo", "--config", "configs/dpo.yaml", "beta=0.3", "pairs.source=mixed"]
    assert "--num_processes" not in build_command("sft", "c.yaml", [], ZERO3)  # the config file's count


def test_bad_accelerate_configs_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        build_command("dpo", "c.yaml", [], str(tmp_path / "missing.yaml"))
    not_accelerate = tmp_path / "dpo.yaml"
    not_accelerate.write_text("beta: 0.1\n")
    with pytest.raises(UserError, match="not an accelerate config"):
        build_command("dpo", "c.yaml", [], str(not_accelerate))
    with pytest.raises(UserError, match="--num-processes must be >= 1"):
        build_command("dpo", "c.yaml", [], ZERO3, 0)


def test_train_cli_checks_before_launching(capsys, tmp_path):
    dpo_yaml = str(ROOT / "configs" / "dpo.yaml")
    assert main(["train", "dpo", "--config", dpo_yaml, "--num-processes", "2"]) == 2
    assert "need --accelerate" in capsys.readouterr().err
    # a config error is reported here, before any process is started
    assert main(["train", "dpo", "--config", dpo_yaml, "bta=0.2", "--accelerate", ZERO3]) == 2
    assert "unknown key 'bta' (did you mean 'beta'?)" in capsys.readouterr().err
    assert main(["train", "dpo", "--config", dpo_yaml, "beta=0.2", "--print-config"]) == 0
    assert '"beta": 0.2' in capsys.readouterr().out


def test_every_stage_module_follows_the_protocol():
    import importlib
    import inspect

    from alignment.recipe import RecipeConfig
    from alignment.stages import STAGES

    for stage, (module, cls) in STAGES.items():
        mod = importlib.import_module(module)
        assert list(inspect.signature(mod.train).parameters)[:2] == ["cfg", "db"], stage
        assert issubclass(getattr(mod, cls), RecipeConfig), stage  # one stage protocol, PPO included


def test_the_old_stage_name_reward_still_trains_the_reward_model(capsys):
    from alignment.cli import main

    assert main(["train", "reward", "--config", "configs/reward_model.yaml", "--print-config"]) == 0
    assert '"eval_fraction"' in capsys.readouterr().out
