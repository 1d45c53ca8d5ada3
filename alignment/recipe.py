"""Pieces every training recipe shares: common config fields, LoRA, TRL args, task loading, saving.

Each stage (``alignment/sft.py``, ``reward_model.py``, ``dpo.py``, ``grpo.py``) subclasses
:class:`RecipeConfig` with its own fields and reads top to bottom; this module holds only what would
otherwise be copied between them. Field names match TRL / ``transformers.TrainingArguments`` so they pass
through :func:`codealign.config.trl_kwargs` unchanged; rarely used TRL keys go in ``trl_extra``.

Heavy libraries (torch, transformers, trl, peft) are imported inside functions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignment.model_dir import check_model_dir

# How prompts and answers become ids (BOS, chat template, pad) is one module's job; the stages import it here.
from alignment.tokenization import answer_ids, load_tokenizer, prompt_ids, sequence_ids  # noqa: F401
from alignment.tracking import MlflowSettings, check_installed, trainer_report_to, wants_mlflow
from codealign.config import ConfigError, trl_kwargs
from codealign.errors import UserError


@dataclass
class LoraSettings:
    """LoRA through PEFT. Off by default: full fine-tuning of the tiny model is cheap."""

    enabled: bool = False
    r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    # "all-linear" = every linear layer except the output head (PEFT's shorthand)
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])


@dataclass
class RecipeConfig:
    """Fields common to every stage. ``model_name_or_path`` and ``output_dir`` are required."""

    model_name_or_path: str = ""  # any local HF causal LM directory (the embedded tiny model by default)
    output_dir: str = ""  # final model here; checkpoint-N subdirectories for resuming
    policy_name: str | None = None  # DB name of the resulting policy (default: output_dir's last component)
    # Stage recorded for the resulting policy (default: the recipe's own). The quickstart's control is an SFT
    # run recorded as "control", so the report can tell it from the SFT policy it continues.
    policy_stage: str | None = None
    seed: int = 0
    learning_rate: float = 1e-4
    num_train_epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides num_train_epochs
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    lr_scheduler_type: str = "linear"
    warmup_steps: float = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    logging_steps: float = 10
    save_strategy: str | bool = "steps"  # "no" | "steps" | "epoch"; YAML reads a bare no as false
    save_steps: float = 500
    save_total_limit: int | None = 2
    report_to: list[str] = field(default_factory=lambda: ["none"])  # tensorboard, mlflow (alignment.tracking)
    mlflow: MlflowSettings = field(default_factory=MlflowSettings)  # where report_to: [mlflow] logs
    bf16: bool | None = (
        None  # None: bf16 where the GPU supports it, fp32 on CPU (same YAML on laptop and node)
    )
    gradient_checkpointing: bool = False
    resume: bool = True  # continue from the last checkpoint-N in output_dir when there is one
    lora: LoraSettings = field(default_factory=LoraSettings)
    trl_extra: dict[str, Any] = field(default_factory=dict)  # any other TRL config key, checked against TRL

    def __post_init__(self) -> None:
        if self.save_strategy is False:
            self.save_strategy = "no"


def check_common(cfg: RecipeConfig) -> None:
    """The checks that need the final config (YAML + overrides), hence not in ``__post_init__``."""
    if not cfg.model_name_or_path:
        raise UserError("model_name_or_path is not set (e.g. model_name_or_path=runs/quickstart/base)")
    if not cfg.output_dir:
        raise UserError("output_dir is not set (e.g. output_dir=runs/dpo)")
    # Local directories only: a hub id would download weights, which this project never does implicitly.
    check_model_dir(cfg.model_name_or_path, "model_name_or_path")
    if wants_mlflow(cfg.report_to):
        check_installed()


def trainer_args(cfg: RecipeConfig, trl_config_cls: type):
    """Build the TRL config from the fields it shares with ``cfg`` + ``trl_extra``; TRL's errors become one line."""
    kwargs = trl_kwargs(cfg, trl_config_cls)
    kwargs["output_dir"] = cfg.output_dir
    kwargs["report_to"] = trainer_report_to(cfg.report_to)  # mlflow is logged by alignment.tracking
    if "activation_checkpointing" in {f.name for f in dataclasses.fields(trl_config_cls)}:
        # transformers 5 renamed the flag and warns whenever the old name is set, which TRL's own default
        # (True) always does; the new name set explicitly wins and keeps the old one in sync.
        kwargs["activation_checkpointing"] = kwargs.pop("gradient_checkpointing", False)
    if cfg.bf16 is None:
        kwargs["bf16"] = bf16_supported()
    # TrainingArguments hides its step bar when transformers logs above WARNING, which quiet_libraries() sets.
    kwargs.setdefault("disable_tqdm", False)
    # Without an explicit use_cpu, TrainingArguments on a GPU-less host under accelerate computes DeepSpeed's
    # batch size for world size 1, and ZeRO-3 model init then fails its batch-size check.
    kwargs.setdefault("use_cpu", not cuda_available())
    try:
        return trl_config_cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{trl_config_cls.__name__}: {exc}".splitlines()[0]) from None


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def bf16_supported() -> bool:
    import torch

    return cuda_available() and torch.cuda.is_bf16_supported()


def peft_config(cfg: RecipeConfig, task_type: str = "CAUSAL_LM", modules_to_save: list[str] | None = None):
    """A ``peft.LoraConfig`` when LoRA is enabled, else None."""
    if not cfg.lora.enabled:
        return None
    from peft import LoraConfig

    targets = cfg.lora.target_modules
    return LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.lora_alpha,
        lora_dropout=cfg.lora.lora_dropout,
        target_modules=targets[0] if targets == ["all-linear"] else targets,
        task_type=task_type,
        modules_to_save=modules_to_save,
    )


def save_final(trainer, cfg: RecipeConfig, tokenizer, auto_model_cls: str = "AutoModelForCausalLM") -> None:
    """Write a standalone HF model to ``output_dir`` (every rank must call this: ZeRO-3 gathers weights).

    With LoRA the adapter goes to ``output_dir/adapter`` and the merged full model to ``output_dir``, so
    downstream stages load the result like any other checkpoint.
    """
    if not cfg.lora.enabled:
        trainer.save_model(cfg.output_dir)
    else:
        adapter_dir = str(Path(cfg.output_dir) / "adapter")
        trainer.save_model(adapter_dir)
        trainer.accelerator.wait_for_everyone()
        if trainer.accelerator.is_main_process:
            import transformers
            from peft import PeftModel

            model_cls = getattr(transformers, auto_model_cls)
            extra = {"num_labels": 1} if auto_model_cls == "AutoModelForSequenceClassification" else {}
            with single_process_loading():
                base = model_cls.from_pretrained(cfg.model_name_or_path, **extra)
                merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
            if extra:
                merged.config.pad_token_id = tokenizer.pad_token_id
            merged.save_pretrained(cfg.output_dir)
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(cfg.output_dir)
    trainer.accelerator.wait_for_everyone()


@contextmanager
def single_process_loading() -> Iterator[None]:
    """Let one rank load a model normally during a ZeRO-3 run.

    While a ZeRO-3 trainer exists, ``from_pretrained`` enters ``deepspeed.zero.Init``, a collective call: on
    rank 0 alone (merging LoRA, scoring held-out pairs) it would wait forever for the other ranks.
    """
    import transformers.integrations.deepspeed as hf_deepspeed

    ref = hf_deepspeed._hf_deepspeed_config_weak_ref  # no public getter; the object is needed to restore it
    active = ref() if ref is not None else None
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if active is not None:
            hf_deepspeed.set_hf_deepspeed_config(active)


def train_metrics(train_output, trainer) -> dict[str, Any]:
    """Final numbers plus the logged history (the report plots training curves from it)."""
    metrics = {k: v for k, v in train_output.metrics.items() if isinstance(v, (int, float))}
    metrics["global_step"] = train_output.global_step
    metrics["log_history"] = [
        {k: v for k, v in entry.items() if isinstance(v, (int, float))} for entry in trainer.state.log_history
    ]
    return metrics
