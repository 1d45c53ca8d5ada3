"""``QuickstartConfig``: what the quickstart (and the benchmark, which runs it per seed) does."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from codealign.errors import UserError

DEFAULT_CONFIG = "configs/quickstart.yaml"  # a shipped config (codealign.config.config_path finds it)

# name -> (recipe stage, shipped YAML it starts from). "grpo" and "ppo" are RLHF (execution + the reward model
# gated on passing tests), "grpo_exec" the same GRPO with execution alone, "control" SFT trained further.
STAGE_YAML = {
    "sft": ("sft", "sft.yaml"),
    "reward_model": ("reward_model", "reward_model.yaml"),
    "dpo": ("dpo", "dpo.yaml"),
    "grpo": ("grpo", "grpo.yaml"),
    "grpo_exec": ("grpo", "grpo.yaml"),
    "ppo": ("ppo", "ppo.yaml"),
    "control": ("sft", "sft.yaml"),
}
POLICY_STAGES = ("dpo", "grpo", "grpo_exec", "ppo", "control")  # the rows of the table after sft
NEEDS_REWARD_MODEL = ("grpo", "ppo")
REWARD_SIGNALS = {
    "sft": [],
    "dpo": ["execution", "human"],
    "grpo": ["execution", "human"],
    "grpo_exec": ["execution"],
    "ppo": ["execution", "human"],
    "control": [],
}


@dataclass
class QuickstartConfig:
    output_dir: str = "runs/quickstart"
    seed: int = 0
    suite_seed: int = 0
    suite_styles: str = "mixed"  # train references in several styles (codealign.tasks.basic_styles)
    model_preset: str = "tiny"  # configs/model/<preset>.yaml
    # RL data: SFT samples on the pool split (prompts where the SFT policy is weak: docs/pipeline.md)
    sample_split: str = "pool"
    sample_prompts: int = 600
    sample_k: int = 8
    sample_temperature: float = 1.0
    max_new_tokens: int = 96
    batch_size: int = 64  # sequences per generate call (sampling and eval)
    # human feedback: ranking items of the SFT samples, ranked by the simulated panel (annotation_ui.panel)
    items_k: int = 4  # completions per ranking item
    items_annotations: int = 3  # annotators per item (the panel's overlap)
    items_left_open: int = 40  # items the panel leaves for people: `codealign annotate` has work at once
    panel: dict[str, Any] = field(default_factory=dict)  # overrides of configs/panel.yaml
    rlhf_reward_config: str = (
        "configs/reward_rlhf.yaml"  # how GRPO/PPO combine execution and the reward model
    )
    # stage sections: overrides of configs/<stage>.yaml; a stage runs when listed in `stages`
    stages: list[str] = field(default_factory=lambda: ["sft", "reward_model", "dpo", "grpo", "control"])
    sft: dict[str, Any] = field(default_factory=dict)
    reward_model: dict[str, Any] = field(default_factory=dict)
    dpo: dict[str, Any] = field(default_factory=dict)
    grpo: dict[str, Any] = field(default_factory=dict)
    grpo_exec: dict[str, Any] = field(default_factory=dict)  # overrides of configs/grpo.yaml
    ppo: dict[str, Any] = field(default_factory=dict)
    control: dict[str, Any] = field(default_factory=dict)  # overrides of configs/sft.yaml for the control
    # held-out evaluation
    eval_split: str = "test"
    eval_n: int = 8
    eval_ks: list[int] = field(default_factory=lambda: [1, 4, 8])
    eval_temperature: float = 0.8
    eval_limit: int | None = None  # first N held-out tasks only (smoke runs)
    report: bool = True
    # tracking: every stage's report_to; mlflow logs to <output_dir>/mlruns, each stage's run a child of the
    # quickstart's own (alignment.tracking). [none] turns it off.
    report_to: list[str] = field(default_factory=lambda: ["mlflow"])

    def __post_init__(self) -> None:
        unknown = [s for s in self.stages if s not in STAGE_YAML]
        if unknown:
            raise UserError(f"stages: unknown stage {unknown[0]!r} (choose from {', '.join(STAGE_YAML)})")
        if "sft" not in self.stages:
            raise UserError("stages: sft is required (every other stage starts from it)")
        needing = [s for s in self.stages if s in NEEDS_REWARD_MODEL]
        if needing and "reward_model" not in self.stages:
            raise UserError(
                f"stages: {needing[0]} is RLHF and needs reward_model in stages (or use grpo_exec)"
            )
        if self.eval_n < max(self.eval_ks):
            raise UserError(f"eval_n ({self.eval_n}) must be >= the largest of eval_ks ({max(self.eval_ks)})")
        if self.items_k < 2 or self.items_annotations < 1 or self.items_left_open < 0:
            raise UserError("items_k must be >= 2, items_annotations >= 1 and items_left_open >= 0")
