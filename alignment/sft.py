"""SFT: TRL ``SFTTrainer`` on prompt -> reference solution, loss on the completion tokens only.

Examples::

    codealign train sft --config configs/sft.yaml model_name_or_path=runs/quickstart/base output_dir=runs/sft
    codealign train sft --config configs/sft.yaml tasks.load_from=generator num_train_epochs=1
    codealign train sft --config configs/sft.yaml lora.enabled=true model_name_or_path=~/Qwen2.5-Coder-0.5B

The dataset starts in TRL's prompt-completion form (``{"prompt", "completion"}``) and is tokenized here, the
prompt and the completion *separately* (``input_ids`` + ``completion_mask``, EOS appended so the policy learns
to stop after the body). Why not let TRL tokenize ``prompt + completion`` jointly: a Python-aware BPE merges
the prompt's final newline with the body's indentation (``"\n    "``), so jointly tokenized training data
never shows the token boundary that generation starts from (prompt tokens, then new tokens) — DPO and GRPO
already see prompt and completion tokens separately. The loss covers completion tokens only. Tasks without a reference solution are skipped; the ``pool`` split is refused.

BOS and chat tasks follow :mod:`alignment.tokenization`, as the sampler does: a prompt starts with BOS when the
tokenizer adds one by default; a chat task's prompt is its conversation rendered by the chat template (with
the generation prompt), and its target the template's assistant turn around the reference answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from alignment.recipe import (
    RecipeConfig,
    answer_ids,
    check_common,
    load_tokenizer,
    peft_config,
    prompt_ids,
    save_final,
    train_metrics,
    trainer_args,
)
from alignment.runs import TrainOutcome, registered_run
from alignment.tokenization import check_chat_checkpoint
from codealign.errors import UserError
from db.tasks import TaskSelection, load_tasks


@dataclass
class SFTRecipeConfig(RecipeConfig):
    learning_rate: float = 1e-3
    num_train_epochs: float = 3.0
    max_length: int | None = 512
    completion_only_loss: bool = True  # False: train on the prompt tokens too
    packing: bool = False
    # Batches of similar length: on the basic suite random batches are ~40 % padding, grouped ones ~2 %.
    train_sampling_strategy: str = "group_by_length"
    tasks: TaskSelection = field(default_factory=TaskSelection)


def build_dataset(cfg: SFTRecipeConfig, db):
    from datasets import Dataset

    if "pool" in cfg.tasks.splits:
        raise UserError(
            "tasks.splits: SFT cannot use the pool split (RL prompts; its references are not for training)"
        )
    specs = [t for t in load_tasks(cfg.tasks, db) if t.reference_solution]
    if not specs:
        raise UserError(f"SFT: no task with a reference solution in split(s) {','.join(cfg.tasks.splits)}")
    rows = [{"prompt": t.prompt, "completion": t.reference_solution} for t in specs]
    if any(t.chat for t in specs):  # the conversation the chat template renders (None: a completion task)
        rows = [{**row, "messages": t.messages} for row, t in zip(rows, specs)]
    return Dataset.from_list(rows)


def tokenize_separately(dataset, tokenizer):
    """``input_ids`` = prompt ids + completion ids (+ EOS, or the chat template's end of turn);
    ``completion_mask`` marks the trained tokens."""

    def encode(row):
        # exactly the ids the sampler (alignment.generation) and TRL's GRPO feed the model
        source = row.get("messages") or row["prompt"]
        prompt = prompt_ids(tokenizer, source)
        completion = answer_ids(tokenizer, source, row["completion"])
        return {
            "input_ids": prompt + completion,
            "completion_mask": [0] * len(prompt) + [1] * len(completion),
        }

    return dataset.map(encode, remove_columns=dataset.column_names)


def train(cfg: SFTRecipeConfig, db) -> TrainOutcome:
    from trl import SFTConfig, SFTTrainer

    check_common(cfg)
    tokenizer = load_tokenizer(cfg.model_name_or_path)
    dataset = build_dataset(cfg, db)
    if "messages" in dataset.column_names:
        check_chat_checkpoint(tokenizer, cfg.model_name_or_path)
    dataset = tokenize_separately(dataset, tokenizer)
    args = trainer_args(cfg, SFTConfig)
    with registered_run("sft", cfg, db) as run:
        trainer = SFTTrainer(
            model=cfg.model_name_or_path,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config(cfg),
            callbacks=run.callbacks(),
        )
        result = trainer.train(resume_from_checkpoint=run.resume_from)
        save_final(trainer, cfg, tokenizer)
        metrics = {**train_metrics(result, trainer), "num_examples": len(dataset)}
        return run.complete(metrics)
