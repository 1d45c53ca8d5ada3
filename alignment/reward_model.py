"""Reward model: TRL ``RewardTrainer`` (a one-output sequence classifier on the policy backbone) on pairs.

Examples::

    codealign train reward --config configs/reward_model.yaml model_name_or_path=runs/quickstart/sft output_dir=runs/reward
    codealign train reward --config configs/reward_model.yaml pairs.source=human pairs.human_export_dir=exports/p
    codealign train reward --config configs/reward_model.yaml lora.enabled=true   # score head in modules_to_save

Pairs come from :mod:`alignment.pairs`; whole tasks are held out (``eval_fraction``) and the saved model's
pairwise accuracy on them (share of pairs where r(chosen) > r(rejected)) is the run's headline metric,
measured with the same :class:`RewardModelScorer` the GRPO stage and the reward engine use.

``RewardModelScorer(path)`` is the scorer: ``scorer(prompts, completions) -> list[float]``; its
``reward_function()`` is a TRL/reward-engine compatible callable ``fn(prompts, completions, **columns)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from alignment.pairs import PairSettings, PreferencePair, build_pairs, split_by_task, to_dataset
from alignment.recipe import (
    RecipeConfig,
    check_common,
    load_tokenizer,
    peft_config,
    save_final,
    single_process_loading,
    train_metrics,
    trainer_args,
)
from alignment.runs import TrainOutcome, is_main_process, registered_run
from codealign.config import ConfigError


@dataclass
class RewardModelRecipeConfig(RecipeConfig):
    learning_rate: float = 1e-4
    num_train_epochs: float = 2.0
    max_length: int | None = 512
    eval_fraction: float = 0.2  # share of tasks held out for pairwise accuracy
    margin_scale: float = 1.0  # loss margin = scale * pair margin (pass-rate or rank gap); 0 disables
    center_rewards_coefficient: float | None = None
    pairs: PairSettings = field(default_factory=PairSettings)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ConfigError(f"eval_fraction: must be in [0, 1), got {self.eval_fraction}")


class RewardModelScorer:
    """Scores ``prompt + completion`` with a saved reward model (the text is scored as RewardTrainer saw it:
    with EOS appended). Guarantees: deterministic (eval mode, no sampling); order of the results = order of
    the inputs. Non-guarantee: scores are not calibrated across different reward models."""

    def __init__(self, path: str, batch_size: int = 16, max_length: int = 512, device: str | None = None):
        import torch
        from transformers import AutoModelForSequenceClassification

        self.tokenizer = load_tokenizer(path)
        self.tokenizer.padding_side = "right"
        # under accelerate every rank scores on its own GPU (LOCAL_RANK), not all on cuda:0
        local_gpu = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        self.device = device or (local_gpu if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForSequenceClassification.from_pretrained(path).to(self.device).eval()
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.batch_size = batch_size
        self.max_length = max_length

    def __call__(self, prompts: list[str], completions: list[str]) -> list[float]:
        import torch

        eos = self.tokenizer.eos_token or ""
        texts = [p + c if c.endswith(eos) else p + c + eos for p, c in zip(prompts, completions, strict=True)]
        scores: list[float] = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    texts[start : start + self.batch_size],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    add_special_tokens=False,
                ).to(self.device)
                scores += self.model(**batch).logits[:, 0].float().tolist()
        return scores

    def reward_function(self) -> Callable[..., list[float]]:
        """``fn(prompts, completions, **columns)`` for TRL's GRPO and the reward engine's combined reward."""

        def reward_model(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
            return self(prompts, completions)

        return reward_model


def pairwise_accuracy(
    score: Callable[[list[str], list[str]], list[float]], pairs: list[PreferencePair]
) -> float:
    """Share of pairs with score(chosen) > score(rejected); ties count as wrong."""
    prompts = [p.prompt for p in pairs]
    chosen = score(prompts, [p.chosen for p in pairs])
    rejected = score(prompts, [p.rejected for p in pairs])
    return sum(c > r for c, r in zip(chosen, rejected)) / len(pairs)


def train(cfg: RewardModelRecipeConfig, db) -> TrainOutcome:
    from trl import RewardConfig, RewardTrainer

    check_common(cfg)
    pairs = build_pairs(cfg.pairs, db)
    train_pairs, held_out = split_by_task(pairs, cfg.eval_fraction, cfg.seed)
    dataset = to_dataset(train_pairs, implicit_prompt=True)
    if cfg.margin_scale == 0:
        dataset = dataset.remove_columns("margin")
    else:
        dataset = dataset.map(lambda row: {"margin": row["margin"] * cfg.margin_scale})
    tokenizer = load_tokenizer(cfg.model_name_or_path)
    args = trainer_args(cfg, RewardConfig)
    with registered_run("reward_model", cfg, db) as run:
        trainer = RewardTrainer(
            model=cfg.model_name_or_path,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            # the score head is new: without modules_to_save a LoRA run would not save it
            peft_config=peft_config(cfg, task_type="SEQ_CLS", modules_to_save=["score"]),
        )
        result = trainer.train(resume_from_checkpoint=run.resume_from)
        save_final(trainer, cfg, tokenizer, auto_model_cls="AutoModelForSequenceClassification")
        metrics = {
            **train_metrics(result, trainer),
            "num_pairs": len(train_pairs),
            "num_held_out": len(held_out),
        }
        if held_out and is_main_process():
            with single_process_loading():
                scorer = RewardModelScorer(cfg.output_dir, max_length=cfg.max_length or 512)
            metrics["held_out_accuracy"] = pairwise_accuracy(scorer, held_out)
            metrics["train_accuracy"] = pairwise_accuracy(scorer, train_pairs[: len(held_out) * 4])
        return run.complete(metrics)
