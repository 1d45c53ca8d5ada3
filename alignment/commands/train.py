"""``codealign train STAGE --config FILE.yaml [KEY=VALUE ...] [--accelerate CFG.yaml --num-processes N]``.

Examples::

    codealign train sft  --config configs/sft.yaml model_name_or_path=runs/quickstart/base output_dir=runs/sft
    codealign train dpo  --config configs/dpo.yaml model_name_or_path=runs/sft pairs.source=mixed
    codealign train grpo --config configs/grpo.yaml reward_funcs=[execution,static] reward_weights=[1.0,0.2]
    codealign train dpo  --config configs/dpo.yaml --accelerate configs/accelerate/zero3.yaml --num-processes 8
    codealign train dpo  --config configs/dpo.yaml --print-config        # resolved config, no training

The stages and their protocol: :mod:`alignment.stages`.
"""

from __future__ import annotations

import argparse
import json

USAGE = (
    "codealign train STAGE --config FILE.yaml [KEY=VALUE ...] [--print-config]\n"
    "       [--accelerate CFG.yaml [--num-processes N] [--main-process-port PORT]]"
)


def register(parser: argparse.ArgumentParser) -> None:
    from alignment.stages import STAGES
    from codealign.flags import add_overrides

    # argparse's generated usage garbles positionals around options: say it once, by hand.
    parser.usage = USAGE
    parser.add_argument("stage", metavar="STAGE", help=f"stage: {', '.join(sorted(STAGES))} (or reward)")
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
    parser.set_defaults(run=handle)


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


def handle(args: argparse.Namespace, db) -> int:
    from alignment.quiet import quiet_libraries
    from alignment.stages import resolve_config, stage_name, train_stage
    from codealign.config import to_dict
    from codealign.errors import UserError

    quiet_libraries()
    args.stage = stage_name(args.stage)
    if (args.num_processes is not None or args.main_process_port is not None) and not args.accelerate:
        raise UserError("--num-processes and --main-process-port need --accelerate CFG.yaml")
    cfg = resolve_config(args.stage, args.config, args.overrides)  # fail fast, before any launch
    launch_args = (
        args.stage,
        args.config,
        args.overrides,
        args.accelerate,
        args.num_processes,
        args.main_process_port,
    )
    if args.accelerate:
        from alignment.launcher import build_command

        build_command(*launch_args)  # the accelerate file is checked too: --print-config is a full dry run
    if args.print_config:
        print(json.dumps(to_dict(cfg), indent=2, default=str))
        return 0
    if args.accelerate:
        from alignment.launcher import launch

        result = launch(*launch_args, db=db)
        if result.returncode != 0:
            raise UserError(
                f"accelerate launch exited with code {result.returncode}: {' '.join(result.command)}"
            )
        return 0
    print_outcome(train_stage(args.stage, cfg, db))
    return 0
