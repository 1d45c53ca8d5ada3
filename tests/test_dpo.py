"""DPO for real at tiny size on pairs from the DB, and a killed DPO run that resumes from its checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from _train_helpers import TINY_RUN, max_weight_change, seed_scored_tasks
from sqlalchemy import select

from alignment.dpo import DPORecipeConfig, train
from alignment.runs import last_checkpoint
from codealign.config import ConfigError, load_config
from codealign.errors import UserError
from db.models import Policy, TrainingRun
from db.session import session_scope

ROOT = Path(__file__).resolve().parent.parent


def _overrides(model_dir, out, **extra):
    return {
        **TINY_RUN,
        "model_name_or_path": str(model_dir),
        "output_dir": str(out),
        "learning_rate": 1e-2,
        "pairs": {"splits": ["train"]},
        **extra,
    }


def test_dpo_trains_on_db_pairs_with_precomputed_reference(db, db_url, tiny_model_dir, tmp_path):
    seed_scored_tasks(db_url, n_tasks=8)
    out = tmp_path / "dpo"
    cfg = load_config(
        DPORecipeConfig,
        None,
        _overrides(
            tiny_model_dir,
            out,
            precompute_ref_log_probs=True,
            loss_type=["sigmoid", "sft"],
            loss_weights=[1.0, 0.5],
        ),
    )
    outcome = train(cfg, db)

    assert outcome.metrics["num_pairs"] == 8 and outcome.metrics["pair_sources"] == ["execution"]
    logged = [e for e in outcome.metrics["log_history"] if "rewards/accuracies" in e]
    assert logged  # TRL's DPO metrics reach the run row (the report plots them)
    assert max_weight_change(tiny_model_dir, out) > 0
    with session_scope(db_url) as s:
        policy = s.get(Policy, outcome.policy_id)
        assert policy.stage == "dpo" and policy.config["loss_weights"] == [1.0, 0.5]
        assert s.get(Policy, policy.parent_id).checkpoint_path == str(Path(tiny_model_dir).resolve())


def test_no_pairs_is_one_line_error_and_no_run_row(db, db_url, tiny_model_dir, tmp_path):
    with pytest.raises(UserError, match="no execution preference pairs"):
        train(load_config(DPORecipeConfig, None, _overrides(tiny_model_dir, tmp_path / "o")), db)
    with session_scope(db_url) as s:
        assert s.scalars(select(TrainingRun)).all() == []


def test_trl_errors_are_one_line_config_errors(db, db_url, tiny_model_dir, tmp_path):
    seed_scored_tasks(db_url, n_tasks=2)
    with pytest.raises(ConfigError, match="trl_extra: 'max_prompt_length' is not a DPOConfig field"):
        train(
            load_config(
                DPORecipeConfig,
                None,
                _overrides(tiny_model_dir, tmp_path / "o", trl_extra={"max_prompt_length": 10}),
            ),
            db,
        )


def test_shipped_yaml_builds_trl_config():
    from trl import DPOConfig

    from alignment.recipe import trainer_args

    args = trainer_args(load_config(DPORecipeConfig, ROOT / "configs" / "dpo.yaml"), DPOConfig)
    assert (args.beta, args.loss_type, args.loss_weights) == (0.5, ["sigmoid", "sft"], [1.0, 1.0])


def test_killed_run_resumes_from_its_last_checkpoint(db, db_url, tiny_model_dir, tmp_path):
    seed_scored_tasks(db_url, n_tasks=8)
    out = tmp_path / "dpo"
    config = tmp_path / "dpo.yaml"
    settings = _overrides(
        tiny_model_dir,
        out,
        max_steps=500,
        save_strategy="steps",
        save_steps=1,
        save_total_limit=None,
        per_device_train_batch_size=2,
    )
    config.write_text(yaml.safe_dump(settings))
    child = subprocess.Popen(
        [sys.executable, "-m", "alignment.commands.train_entry", "dpo", "--config", str(config)],
        cwd=ROOT,
        env={**os.environ, "CODEALIGN_DB_URL": db_url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while last_checkpoint(out) is None and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert child.poll() is None, "the training process ended before its first checkpoint"
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # no clean-up code runs: like a lost node or OOM kill
        child.wait()
    with session_scope(db_url) as s:
        killed = s.scalars(select(TrainingRun)).one()
        assert killed.status == "running"

    checkpoint = last_checkpoint(out)
    step = int(checkpoint.rsplit("-", 1)[1])
    outcome = train(load_config(DPORecipeConfig, config, [f"max_steps={step + 1}"]), db)

    assert outcome.resumed_from == checkpoint
    # one more step on top of the checkpoint; a fresh start would stop at global step 1
    assert outcome.metrics["global_step"] == step + 1
    with session_scope(db_url) as s:
        run = s.scalars(select(TrainingRun)).one()
        assert (run.id, run.status, run.metrics["resumed_from"]) == (killed.id, "completed", checkpoint)


def test_pairs_are_tokenized_as_the_sampler_sees_them(tiny_model_dir):
    """prompt ids = the sampler's prompt ids (its final newline kept), answers on their own + EOS.

    TRL tokenizes prompt + answer jointly: the BPE merges the prompt's last "\\n" into the body's indentation,
    and the pair was trained on a prompt without it (TRL's "not a prefix" warning on every run)."""
    from datasets import Dataset
    from trl import DPOConfig

    from alignment.dpo import tokenize_pairs
    from alignment.recipe import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    prompt = 'def f(x: int) -> int:\n    """Add one."""\n'
    rows = Dataset.from_list(
        [{"prompt": prompt, "chosen": "    return x + 1\n", "rejected": "    return x\n"}]
    )
    args = DPOConfig(output_dir="unused", max_length=512, report_to=[], use_cpu=True, bf16=False)
    row = tokenize_pairs(rows, tokenizer, args)[0]
    sampler_prompt = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert row["prompt_ids"] == sampler_prompt
    assert tokenizer.decode(row["prompt_ids"]) == prompt
    assert row["chosen_ids"][-1] == tokenizer.eos_token_id == row["rejected_ids"][-1]
    assert tokenizer.decode(row["chosen_ids"][:-1]) == "    return x + 1\n"
    joint = tokenizer(prompt + "    return x + 1\n", add_special_tokens=False)["input_ids"]
    assert joint[: len(sampler_prompt)] != sampler_prompt  # why TRL's joint tokenization was wrong here
