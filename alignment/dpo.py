"""DPO: TRL ``DPOTrainer`` on preference pairs drawn from the DB (execution, human or mixed).

Examples::

    codealign train dpo --config configs/dpo.yaml model_name_or_path=runs/sft output_dir=runs/dpo
    codealign train dpo --config configs/dpo.yaml pairs.source=mixed pairs.human_export_dir=exports/prefs
    codealign train dpo --config configs/dpo.yaml loss_type=[sigmoid] loss_weights=null   # pure DPO
    codealign train dpo --config configs/dpo.yaml --accelerate configs/accelerate/zero3.yaml --num-processes 2

``loss_type``/``loss_weights`` pass through to TRL. The shipped config uses ``["sigmoid", "sft"]``: GUIDE §10
measured pure sigmoid DPO collapsing at higher learning rates while the NLL ("sft") term on the chosen
answers kept it stable — and NLL alone (``loss_type=[sft]``, rejection-sampling fine-tuning) gave about the
same gain, so compare against it before crediting the preference term.

The model is handed to TRL as a *path*, so TRL builds the frozen reference model from the same checkpoint
(also under ZeRO-3). ``precompute_ref_log_probs=true`` runs the reference once over the data and frees it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from alignment.pairs import PairSettings, build_pairs, to_dataset
from alignment.recipe import (
    RecipeConfig,
    check_common,
    load_tokenizer,
    peft_config,
    save_final,
    train_metrics,
    trainer_args,
)
from alignment.runs import TrainOutcome, registered_run


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


def train(cfg: DPORecipeConfig) -> TrainOutcome:
    from trl import DPOConfig, DPOTrainer

    check_common(cfg)
    pairs = build_pairs(cfg.pairs)
    dataset = to_dataset(pairs).remove_columns("margin")
    tokenizer = load_tokenizer(cfg.model_name_or_path)
    args = trainer_args(cfg, DPOConfig)
    with registered_run("dpo", cfg) as run:
        trainer = DPOTrainer(
            model=cfg.model_name_or_path,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config(cfg),
        )
        result = trainer.train(resume_from_checkpoint=run.resume_from)
        save_final(trainer, cfg, tokenizer)
        metrics = {
            **train_metrics(result, trainer),
            "num_pairs": len(pairs),
            "pair_sources": sorted({p.source for p in pairs}),
        }
        return run.complete(metrics, policy_stage="dpo")
