"""``codealign train STAGE --config FILE.yaml [key=value ...] [--accelerate CFG.yaml --num-processes N]``.

Examples::

    codealign train sft  --config configs/sft.yaml model_name_or_path=runs/quickstart/base output_dir=runs/sft
    codealign train dpo  --config configs/dpo.yaml model_name_or_path=runs/sft pairs.source=mixed
    codealign train grpo --config configs/grpo.yaml reward_weights=[1.0,0.2]
    codealign train dpo  --config configs/dpo.yaml --accelerate configs/accelerate/zero3.yaml --num-processes 8
    codealign train dpo  --config configs/dpo.yaml --print-config        # resolved config, no training

Stage protocol (every stage, PPO included, follows it; add a stage with one line in ``STAGES``):

* a module ``alignment.<stage>`` exports one config dataclass (``<Name>RecipeConfig``, usually a subclass
  of :class:`alignment.recipe.RecipeConfig`, so it has ``model_name_or_path``, ``output_dir``,
  ``policy_name``, ``resume``, ``lora`` and ``trl_extra``) and ``train(cfg) -> alignment.runs.TrainOutcome``;
* config fields reuse TRL's names and reach TRL through :func:`alignment.config.trl_kwargs`;
* ``train`` registers itself with ``alignment.runs.registered_run(stage, cfg)`` (TrainingRun row, Policy
  with parent, resume from the last ``checkpoint-N``; rank 0 writes the DB) and ends with
  ``run.complete(metrics, policy_stage=...)``;
* bad input raises :class:`alignment.errors.UserError` (one line, exit code 2);
* ``train`` must work in-process (the quickstart calls it) and under ``accelerate launch`` (this command with
  ``--accelerate`` re-runs itself through :mod:`alignment.launcher` and ``alignment.train_cli_entry``).
"""

from __future__ import annotations

import argparse
import importlib
import json
from typing import Any

# stage -> (module, config dataclass). The module is imported only when its stage runs.
STAGES: dict[str, tuple[str, str]] = {
    "sft": ("alignment.sft", "SFTRecipeConfig"),
    "reward": ("alignment.reward_model", "RewardModelRecipeConfig"),
    "dpo": ("alignment.dpo", "DPORecipeConfig"),
    "grpo": ("alignment.grpo", "GRPORecipeConfig"),
    "ppo": ("alignment.ppo", "PPORecipeConfig"),
}


USAGE = (
    "codealign train STAGE --config FILE.yaml [KEY=VALUE ...] [--print-config]\n"
    "       [--accelerate CFG.yaml [--num-processes N] [--main-process-port PORT]]"
)


def register(parser: argparse.ArgumentParser) -> None:
    from alignment.config import add_overrides

    # argparse's generated usage garbles positionals around options: say it once, by hand.
    parser.usage = USAGE
    parser.add_argument("stage", metavar="STAGE", help=f"stage: {', '.join(sorted(STAGES))}")
    parser.add_argument(
        "--config",
        required=True,
        metavar="FILE.yaml",
        help="stage config (see configs/); KEY=VALUE overrides follow (dotted keys reach nested sections)",
    )
    add_overrides(parser)
    parser.add_argument(
        "--accelerate", metavar="CFG.yaml", help="launch through `accelerate launch` with this config"
    )
    parser.add_argument(
        "--num-processes", type=int, metavar="N", help="processes for --accelerate (default: the config's)"
    )
    parser.add_argument(
        "--main-process-port",
        type=int,
        metavar="PORT",
        help="rendezvous port for --accelerate (default 29500)",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config as JSON and exit"
    )
    parser.set_defaults(func=handle)


def stage_config_class(stage: str) -> type:
    module_name, class_name = STAGES[stage]
    return getattr(importlib.import_module(module_name), class_name)


def resolve_config(stage: str, config_path: str, overrides: list[str]) -> Any:
    from alignment.config import load_config

    return load_config(stage_config_class(stage), config_path, overrides)


def run_stage(stage: str, config_path: str, overrides: list[str]):
    """Load the config and train in this process; returns the stage's ``TrainOutcome``."""
    cfg = resolve_config(stage, config_path, overrides)
    return importlib.import_module(STAGES[stage][0]).train(cfg)


def print_outcome(outcome) -> None:
    from alignment.runs import is_main_process

    if not is_main_process():
        return
    shown = {k: v for k, v in outcome.metrics.items() if k != "log_history"}
    print(
        f"{outcome.stage}: policy {outcome.policy_name!r} (id {outcome.policy_id}, run {outcome.run_id})"
        f" -> {outcome.output_dir}"
    )
    if outcome.resumed_from:
        print(f"resumed from {outcome.resumed_from}")
    print(json.dumps(shown, indent=2, default=str))


def check_stage(stage: str) -> None:
    from alignment.errors import UserError

    if stage not in STAGES:
        raise UserError(f"train: unknown stage '{stage}' (choose from {', '.join(sorted(STAGES))})")


def handle(args: argparse.Namespace) -> int:
    from alignment.config import to_dict
    from alignment.errors import UserError
    from alignment.quiet import quiet_libraries

    quiet_libraries()
    check_stage(args.stage)
    if (args.num_processes is not None or args.main_process_port is not None) and not args.accelerate:
        raise UserError("--num-processes and --main-process-port need --accelerate CFG.yaml")
    cfg = resolve_config(args.stage, args.config, args.overrides)  # fail fast, before any launch
    if args.accelerate:
        from alignment.launcher import build_command

        # the accelerate file is checked now too, so --print-config is a dry run of the whole command
        build_command(
            args.stage,
            args.config,
            args.overrides,
            args.accelerate,
            args.num_processes,
            args.main_process_port,
        )
    if args.print_config:
        print(json.dumps(to_dict(cfg), indent=2, default=str))
        return 0
    if args.accelerate:
        from alignment.launcher import launch

        result = launch(
            args.stage,
            args.config,
            args.overrides,
            args.accelerate,
            args.num_processes,
            args.main_process_port,
        )
        if result.returncode != 0:
            raise UserError(
                f"accelerate launch exited with code {result.returncode}: {' '.join(result.command)}"
            )
        return 0
    print_outcome(importlib.import_module(STAGES[args.stage][0]).train(cfg))
    return 0
