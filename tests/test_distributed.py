"""DPO and GRPO for real under DeepSpeed ZeRO-3 with 2 CPU processes (gloo), through `codealign train`.

Each launch takes ~45 s on 2 cores (two processes importing torch + DeepSpeed); the very first one on a machine
also JIT-compiles a DeepSpeed op into ~/.cache/torch_extensions (~90 s).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from _train_helpers import TINY_RUN, max_weight_change, seed_scored_tasks
from sqlalchemy import select

from db.models import Policy, TrainingRun
from db.session import session_scope

pytestmark = pytest.mark.distributed

ROOT = Path(__file__).resolve().parent.parent
ZERO3_CPU = ROOT / "configs" / "accelerate" / "zero3_cpu.yaml"

REWARD_MODULE = """
def length_reward(prompts, completions, **columns):
    assert columns["tests"] and columns["entry_point"]
    return [min(len(c), 40) / 40 for c in completions]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_zero3(stage: str, settings: dict, tmp_path: Path, db_url: str, env: dict | None = None):
    config = tmp_path / f"{stage}.yaml"
    config.write_text(yaml.safe_dump(settings))
    command = [
        sys.executable,
        "-m",
        "alignment.cli",
        "--db",
        db_url,
        "train",
        stage,
        "--config",
        str(config),
        "--accelerate",
        str(ZERO3_CPU),
        "--num-processes",
        "2",
        "--main-process-port",
        str(_free_port()),
    ]
    done = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=500,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _assert_trained_and_registered_once(db_url: str, start: Path, out: Path, stage: str) -> None:
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out)  # the gathered ZeRO-3 weights form a plain HF checkpoint
    assert max_weight_change(start, out) > 0
    with session_scope(db_url) as s:
        runs = s.scalars(select(TrainingRun)).all()
        policies = s.scalars(select(Policy).where(Policy.stage == stage)).all()
        # both ranks trained, rank 0 alone wrote: one run, one policy
        assert [(r.stage, r.status) for r in runs] == [(stage, "completed")]
        assert [p.checkpoint_path for p in policies] == [str(out.resolve())]


def test_dpo_under_zero3_with_two_processes(db_url, tiny_model_dir, tmp_path):
    seed_scored_tasks(db_url, n_tasks=8)
    out = tmp_path / "dpo"
    _train_zero3(
        "dpo",
        {
            **TINY_RUN,
            "model_name_or_path": str(tiny_model_dir),
            "output_dir": str(out),
            "learning_rate": 1e-2,
            "per_device_train_batch_size": 2,
            "pairs": {"splits": ["train"]},
        },
        tmp_path,
        db_url,
    )
    _assert_trained_and_registered_once(db_url, tiny_model_dir, out, "dpo")


def test_grpo_under_zero3_with_two_processes(db_url, tiny_model_dir, tmp_path):
    (tmp_path / "zero3_rewards.py").write_text(REWARD_MODULE)
    out = tmp_path / "grpo"
    run = {k: v for k, v in TINY_RUN.items() if k != "max_length"}
    _train_zero3(
        "grpo",
        {
            **run,
            "model_name_or_path": str(tiny_model_dir),
            "output_dir": str(out),
            "learning_rate": 1e-2,
            "num_generations": 4,
            "max_completion_length": 12,
            "reward_funcs": ["execution", "zero3_rewards:length_reward"],
            "reward_weights": [1.0, 1.0],
            "tasks": {"load_from": "generator", "limit": 8},
        },
        tmp_path,
        db_url,
        env={"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])},
    )
    _assert_trained_and_registered_once(db_url, tiny_model_dir, out, "grpo")


@pytest.mark.slow
def test_lora_dpo_under_zero3_merges_on_rank_zero(db_url, tiny_model_dir, tmp_path):
    """LoRA + gradient checkpointing under ZeRO-3: rank 0 merges the adapter while rank 1 waits (a plain
    from_pretrained on one rank would deadlock in zero.Init)."""
    seed_scored_tasks(db_url, n_tasks=8)
    out = tmp_path / "dpo_lora"
    _train_zero3(
        "dpo",
        {
            **TINY_RUN,
            "model_name_or_path": str(tiny_model_dir),
            "output_dir": str(out),
            "learning_rate": 5e-2,
            "per_device_train_batch_size": 2,
            "pairs": {"splits": ["train"]},
            "gradient_checkpointing": True,
            "lora": {"enabled": True, "r": 4},
        },
        tmp_path,
        db_url,
    )
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    _assert_trained_and_registered_once(db_url, tiny_model_dir, out, "dpo")
