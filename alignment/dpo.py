"""DPO: TRL ``DPOTrainer`` on preference pairs drawn from the DB (execution, human or mixed).

Examples::

    codealign train dpo --config configs/dpo.yaml model_name_or_path=runs/sft output_dir=runs/dpo
    codealign train dpo --config configs/dpo.yaml pairs.source=mixed pairs.human_export_dir=exports/prefs
    codealign train dpo --config configs/dpo.yaml loss_type=[sigmoid] loss_weights=null   # pure DPO
    codealign train dpo --config configs/dpo.yaml --accelerate configs/accelerate/zero3.yaml --num-processes 2

``loss_type``/``loss_weights`` pass through to TRL. The shipped config uses ``["sigmoid", "sft"]``: docs/pipeline.md
(*Design measurements*) records pure sigmoid DPO collapsing at higher learning rates while the NLL ("sft") term on the chosen
answers kept it stable — and NLL alone (``loss_type=[sft]``, rejection-sampling fine-tuning) gave about the
same gain, so compare against it before crediting the preference term.

The model is handed to TRL as a *path*, so TRL builds the frozen reference model from the same checkpoint
(also under ZeRO-3). ``precompute_ref_log_probs=true`` runs the reference once over the data and frees it.

Prompt and answers are tokenized apart, as SFT does (:func:`alignment.tokenization.answer_ids`; BOS and
chat tasks as there). TRL tokenizes
``prompt + answer`` as one string and cuts where it diverges from the tokenized prompt; with a Python-aware
BPE the prompt's last newline merges into the body's indentation, so TRL's pairs trained the policy on a
prompt without its final newline — a context the sampler never shows it (TRL warned so on every run).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from alignment.pairs import PairSettings, build_pairs, to_dataset
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


@dataclass
class DPORecipeConfig(RecipeConfig):
    learning_rate: float = 3e-4
    num_train_epochs: float = 3.0
    beta: float = 0.5
    loss_type: list[str] = field(default_factory=lambda: ["sigmoid", "sft"])
    loss_weights: list[float] | None = None  # one weight per loss_type entry; None = all 1.0
    precompute_ref_log_probs: bool = False
    precompute_ref_batch_size: int | None = None
    max_length: int | None = 512
    pairs: PairSettings = field(default_factory=PairSettings)


def tokenize_pairs(dataset, tokenizer, args):
    """``prompt_ids`` / ``chosen_ids`` / ``rejected_ids`` (what TRL's preference collator reads), each part
    tokenized on its own; pairs whose prompt alone fills ``max_length`` are dropped, as TRL does."""

    def encode(row):
        source = row.get("messages") or row["prompt"]  # a chat task's conversation, as the sampler renders it
        return {
            "prompt_ids": prompt_ids(tokenizer, source),
            "chosen_ids": answer_ids(tokenizer, source, row["chosen"]),
            "rejected_ids": answer_ids(tokenizer, source, row["rejected"]),
        }

    dataset = dataset.map(encode, remove_columns=dataset.column_names)
    if args.max_length is not None and args.truncation_mode == "keep_start":
        dataset = dataset.filter(lambda row: len(row["prompt_ids"]) < args.max_length)
    return dataset


def trainer_class():
    """TRL's ``DPOTrainer`` with its dataset preparation replaced by :func:`tokenize_pairs` (TRL 1.16 has no
    way to pass pre-tokenized pairs: its ``_prepare_dataset`` always tokenizes the text columns)."""
    from trl import DPOTrainer

    class SeparatelyTokenizedDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return tokenize_pairs(dataset, processing_class, args)

    return SeparatelyTokenizedDPOTrainer


def train(cfg: DPORecipeConfig, db) -> TrainOutcome:
    from trl import DPOConfig

    check_common(cfg)
    pairs = build_pairs(cfg.pairs, db)
    dataset = to_dataset(pairs).remove_columns("margin")
    tokenizer = load_tokenizer(cfg.model_name_or_path)
    if "messages" in dataset.column_names:
        check_chat_checkpoint(tokenizer, cfg.model_name_or_path)
    args = trainer_args(cfg, DPOConfig)
    with registered_run("dpo", cfg, db) as run:
        trainer = trainer_class()(
            model=cfg.model_name_or_path,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config(cfg),
            callbacks=run.callbacks(),
        )
        result = trainer.train(resume_from_checkpoint=run.resume_from)
        save_final(trainer, cfg, tokenizer)
        metrics = {
            **train_metrics(result, trainer),
            "num_pairs": len(pairs),
            "pair_sources": sorted({p.source for p in pairs}),
        }
        return run.complete(metrics)
