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

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignment.pairs import PairSettings, PreferencePair, build_pairs, split_by_task
from alignment.recipe import (
    RecipeConfig,
    check_common,
    load_tokenizer,
    peft_config,
    save_final,
    sequence_ids,
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


CALIBRATION_FILE = "codealign_reward_calibration.json"


class RewardModelScorer:
    """Scores ``prompt + completion`` with a saved reward model (tokenized as :func:`train` tokenized its
    pairs: :func:`tokenize_pairs`, EOS appended). Guarantees: deterministic (eval mode, no sampling); order of the results = order of
    the inputs. With ``normalize`` (the default) and the calibration ``train`` writes next to the model, scores
    are z-scores over the completions the model was trained on (raw scores of different reward models are on
    arbitrary scales: sd 2.8 measured on this suite), so a reward weight means the same for every model."""

    def __init__(
        self,
        path: str,
        batch_size: int = 16,
        max_length: int = 512,
        device: str | None = None,
        normalize: bool = True,
    ):
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
        self.shift, self.scale = 0.0, 1.0
        calibration = Path(path) / CALIBRATION_FILE
        if normalize and calibration.is_file():
            stats = json.loads(calibration.read_text())
            self.shift, self.scale = stats["mean"], max(stats["std"], 1e-6)

    def __call__(self, prompts: list[Any], completions: list[Any]) -> list[float]:
        import torch

        # The ids train() fed RewardTrainer: prompt (BOS / chat template as the policy sees it), then the
        # answer tokenized apart + EOS (alignment.tokenization.sequence_ids). Prompts may be conversations.
        eos = self.tokenizer.eos_token or ""
        rows = [
            sequence_ids(
                self.tokenizer, p, c[: -len(eos)] if eos and isinstance(c, str) and c.endswith(eos) else c
            )
            for p, c in zip(prompts, completions, strict=True)
        ]
        scores: list[float] = []
        with torch.no_grad():
            for start in range(0, len(rows), self.batch_size):
                chunk = [{"input_ids": r[: self.max_length]} for r in rows[start : start + self.batch_size]]
                batch = self.tokenizer.pad(chunk, return_tensors="pt").to(self.device)
                scores += self.model(**batch).logits[:, 0].float().tolist()
        return [(s - self.shift) / self.scale for s in scores]

    def reward_function(self) -> Callable[..., list[float]]:
        """``fn(prompts, completions, **columns)`` for TRL's GRPO and the reward engine's combined reward."""

        def reward_model(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
            return self(prompts, completions)

        return reward_model


def pairwise_accuracy(
    score: Callable[[list[str], list[str]], list[float]], pairs: list[PreferencePair]
) -> float:
    """Share of pairs with score(chosen) > score(rejected); ties count as wrong."""
    return accuracy_by_verdict(score, pairs)["all"]


def accuracy_by_verdict(
    score: Callable[[list[str], list[str]], list[float]], pairs: list[PreferencePair]
) -> dict[str, float | None]:
    """Pairwise accuracy over all pairs, over same-verdict pairs (both pass or both fail: where the model must
    judge readability) and over pairs across verdicts (where execution already knows); None for an empty group."""
    prompts = [p.model_prompt for p in pairs]  # a chat task's conversation
    chosen = score(prompts, [p.chosen for p in pairs])
    rejected = score(prompts, [p.rejected for p in pairs])
    right = [c > r for c, r in zip(chosen, rejected)]

    def share(keep) -> float | None:
        picked = [ok for ok, p in zip(right, pairs) if keep(p)]
        return sum(picked) / len(picked) if picked else None

    return {
        "all": share(lambda p: True),
        "same_verdict": share(lambda p: p.same_verdict is True),
        "different_verdict": share(lambda p: p.same_verdict is False),
    }


def calibrate(scorer: RewardModelScorer, pairs: list[PreferencePair], output_dir: str) -> dict[str, float]:
    """Mean and std of the raw scores of every completion in ``pairs``; written next to the model."""
    import statistics

    scorer.shift, scorer.scale = 0.0, 1.0
    texts = [(p.model_prompt, c) for p in pairs for c in (p.chosen, p.rejected)]
    raw = scorer([t[0] for t in texts], [t[1] for t in texts])
    stats = {
        "mean": statistics.fmean(raw),
        "std": statistics.pstdev(raw) if len(raw) > 1 else 1.0,
        "n": len(raw),
    }
    (Path(output_dir) / CALIBRATION_FILE).write_text(json.dumps(stats, indent=2) + "\n")
    scorer.shift, scorer.scale = stats["mean"], max(stats["std"], 1e-6)
    return stats


def tokenize_pairs(pairs: list[PreferencePair], tokenizer, margin_scale: float):
    """RewardTrainer's pre-tokenized columns ``chosen_ids`` / ``rejected_ids`` (+ ``margin`` unless
    ``margin_scale`` is 0): prompt then answer, tokenized apart exactly as :class:`RewardModelScorer` scores them
    (TRL would tokenize ``prompt + answer`` as one string, with its own BOS, unlike the scorer)."""
    from datasets import Dataset

    rows = []
    for p in pairs:
        row = {
            "chosen_ids": sequence_ids(tokenizer, p.model_prompt, p.chosen),
            "rejected_ids": sequence_ids(tokenizer, p.model_prompt, p.rejected),
        }
        if margin_scale:
            row["margin"] = p.margin * margin_scale
        rows.append(row)
    return Dataset.from_list(rows)


def train(cfg: RewardModelRecipeConfig, db) -> TrainOutcome:
    from trl import RewardConfig, RewardTrainer

    check_common(cfg)
    pairs = build_pairs(cfg.pairs, db)
    train_pairs, held_out = split_by_task(pairs, cfg.eval_fraction, cfg.seed)
    tokenizer = load_tokenizer(cfg.model_name_or_path)
    dataset = tokenize_pairs(train_pairs, tokenizer, cfg.margin_scale)
    args = trainer_args(cfg, RewardConfig)
    with registered_run("reward_model", cfg, db) as run:
        trainer = RewardTrainer(
            model=cfg.model_name_or_path,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            # the score head is new: without modules_to_save a LoRA run would not save it
            peft_config=peft_config(cfg, task_type="SEQ_CLS", modules_to_save=["score"]),
            callbacks=run.callbacks(),
        )
        result = trainer.train(resume_from_checkpoint=run.resume_from)
        save_final(trainer, cfg, tokenizer, auto_model_cls="AutoModelForSequenceClassification")
        metrics = {
            **train_metrics(result, trainer),
            "num_pairs": len(train_pairs),
            "num_held_out": len(held_out),
        }
        if is_main_process():
            with single_process_loading():
                scorer = RewardModelScorer(cfg.output_dir, max_length=cfg.max_length or 512)
            metrics["score_calibration"] = calibrate(scorer, train_pairs, cfg.output_dir)
            metrics["train_accuracy"] = pairwise_accuracy(scorer, train_pairs[: max(len(held_out), 64) * 4])
        if held_out and is_main_process():
            by_verdict = accuracy_by_verdict(scorer, held_out)
            metrics["held_out_accuracy"] = by_verdict["all"]
            metrics["held_out_accuracy_same_verdict"] = by_verdict["same_verdict"]
            metrics["held_out_accuracy_different_verdict"] = by_verdict["different_verdict"]
            metrics["num_held_out_same_verdict"] = sum(p.same_verdict is True for p in held_out)
        return run.complete(metrics)
