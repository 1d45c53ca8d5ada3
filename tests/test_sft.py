"""SFT for real at tiny size: completion-only data, a trained checkpoint, its DB rows; LoRA merges on save."""

from __future__ import annotations

from pathlib import Path

import pytest
from _train_helpers import TINY_RUN, max_weight_change

from alignment.sft import SFTRecipeConfig, build_dataset, train
from codealign.config import load_config
from codealign.errors import UserError
from db.models import Policy, TrainingRun
from db.session import session_scope

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _cfg(model_dir, out, **extra):
    return load_config(
        SFTRecipeConfig,
        None,
        {
            **TINY_RUN,
            "model_name_or_path": str(model_dir),
            "output_dir": str(out),
            "learning_rate": 1e-2,
            "tasks": {"load_from": "generator", "limit": 16},
            **extra,
        },
    )


def test_dataset_is_prompt_completion_from_reference_solutions(db):
    cfg = load_config(
        SFTRecipeConfig, None, {"tasks": {"load_from": "generator", "splits": ["train", "test"]}}
    )
    data = build_dataset(cfg, db)
    assert data.column_names == ["prompt", "completion"]
    row = data[0]
    assert row["prompt"].startswith("def ") and row["completion"].startswith("    ")
    # pool tasks keep a reference for the suite's own tests only; SFT must not train on them
    with pytest.raises(UserError, match="pool"):
        build_dataset(
            load_config(SFTRecipeConfig, None, {"tasks": {"load_from": "generator", "splits": ["pool"]}}), db
        )


def test_sft_trains_saves_and_registers(db, db_url, tiny_model_dir, tmp_path):
    out = tmp_path / "sft"
    outcome = train(_cfg(tiny_model_dir, out), db)

    assert outcome.metrics["global_step"] == 2 and outcome.metrics["num_examples"] == 16
    assert [e["loss"] for e in outcome.metrics["log_history"] if "loss" in e]  # curves for the report
    assert max_weight_change(tiny_model_dir, out) > 0
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(out)
    assert (
        AutoTokenizer.from_pretrained(out).eos_token
        == AutoTokenizer.from_pretrained(tiny_model_dir).eos_token
    )
    with session_scope(db_url) as s:
        policy = s.get(Policy, outcome.policy_id)
        run = s.get(TrainingRun, outcome.run_id)
        assert (policy.stage, policy.name, policy.checkpoint_path) == ("sft", "sft", str(out.resolve()))
        assert s.get(Policy, policy.parent_id).checkpoint_path == str(Path(tiny_model_dir).resolve())
        assert run.status == "completed" and run.metrics["global_step"] == 2


def test_prompt_and_completion_are_tokenized_as_generation_sees_them(db, tiny_model_dir, tmp_path):
    from trl import SFTConfig, SFTTrainer

    from alignment.recipe import load_tokenizer, trainer_args
    from alignment.sft import tokenize_separately

    cfg = _cfg(tiny_model_dir, tmp_path / "x")
    tokenizer = load_tokenizer(cfg.model_name_or_path)
    rows = build_dataset(cfg, db)
    trainer = SFTTrainer(
        model=cfg.model_name_or_path,
        args=trainer_args(cfg, SFTConfig),
        train_dataset=tokenize_separately(rows, tokenizer),
        processing_class=tokenizer,
    )
    batch = trainer.data_collator([trainer.train_dataset[0]])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    prompt_ids = tokenizer(rows[0]["prompt"], add_special_tokens=False)[
        "input_ids"
    ]  # as alignment.generation
    # the sequence starts with exactly the ids a sampler feeds the model, and only what follows is trained
    assert ids[: len(prompt_ids)] == prompt_ids
    assert (
        labels[: len(prompt_ids)] == [-100] * len(prompt_ids)
        and labels[len(prompt_ids) :] == ids[len(prompt_ids) :]
    )
    assert tokenizer.decode(ids[len(prompt_ids) :], skip_special_tokens=True) == rows[0]["completion"]
    assert labels[-1] == tokenizer.eos_token_id  # the policy learns to stop after the body


def test_lora_saves_adapter_and_a_merged_full_model(db, db_url, tiny_model_dir, tmp_path):
    out = tmp_path / "sft_lora"
    train(_cfg(tiny_model_dir, out, lora={"enabled": True, "r": 4, "lora_alpha": 8}, learning_rate=5e-2), db)
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert not (out / "adapter_config.json").exists()  # output_dir itself loads as a plain model
    assert max_weight_change(tiny_model_dir, out) > 0


def test_missing_model_is_one_line_error(db, db_url, tmp_path):
    with pytest.raises(UserError, match="model_name_or_path: .*nothing-here is not a directory"):
        train(_cfg(tmp_path / "nothing-here", tmp_path / "out"), db)
    with pytest.raises(UserError, match="model_name_or_path is not set"):
        train(load_config(SFTRecipeConfig, None, {"output_dir": str(tmp_path)}), db)


def test_shipped_yaml_builds_trl_config():
    from trl import SFTConfig

    from alignment.recipe import trainer_args

    args = trainer_args(load_config(SFTRecipeConfig, CONFIGS / "sft.yaml"), SFTConfig)
    assert args.num_train_epochs == 16 and args.max_length == 384 and args.report_to == ["tensorboard"]


def test_mlflow_without_mlflow_installed_is_one_line_error(db, tmp_path, tiny_model_dir, monkeypatch):
    """mlflow is a dependency, but an install that left it out gets a one-line error before anything runs."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    with pytest.raises(UserError, match="report_to: mlflow is not installed"):
        train(_cfg(tiny_model_dir, tmp_path / "out", report_to=["mlflow"]), db)
    assert not (tmp_path / "out").exists()


def test_length_grouped_batches_cut_padding(db, tiny_model_dir, tmp_path):
    from trl import SFTConfig, SFTTrainer

    from alignment.recipe import load_tokenizer, trainer_args
    from alignment.sft import tokenize_separately

    padded = {}
    for strategy in ("random", "group_by_length"):
        cfg = _cfg(
            tiny_model_dir,
            tmp_path,
            per_device_train_batch_size=16,
            tasks={"load_from": "generator", "limit": 320},
        )
        cfg.train_sampling_strategy = strategy
        tokenizer = load_tokenizer(cfg.model_name_or_path)
        trainer = SFTTrainer(
            model=cfg.model_name_or_path,
            args=trainer_args(cfg, SFTConfig),
            train_dataset=tokenize_separately(build_dataset(cfg, db), tokenizer),
            processing_class=tokenizer,
        )
        padded[strategy] = sum(batch["input_ids"].numel() for batch in trainer.get_train_dataloader())
    assert SFTRecipeConfig().train_sampling_strategy == "group_by_length"
    assert padded["group_by_length"] < 0.85 * padded["random"]  # ~40 % padding -> ~10 % on this suite
