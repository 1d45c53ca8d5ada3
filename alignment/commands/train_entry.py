"""What each process runs under ``accelerate launch``: ``python -m alignment.train_cli_entry STAGE --config F
[key=value ...]`` — the arguments of ``codealign train`` without the launch options. The DB URL travels in
``$CODEALIGN_DB_URL``; rank 0 alone writes rows (alignment.runs)."""

from __future__ import annotations

import argparse
import atexit
import os
import sys

from alignment.errors import UserError


def main(argv: list[str] | None = None) -> int:
    from alignment.quiet import quiet_libraries
    from alignment.train_cli import check_stage, print_outcome, run_stage

    quiet_libraries()
    parser = argparse.ArgumentParser(prog="alignment.train_cli_entry")
    parser.add_argument("stage")
    parser.add_argument("--config", required=True)
    args, overrides = parser.parse_known_args(argv)  # the launcher puts the KEY=VALUE overrides last
    try:
        check_stage(args.stage)
        print_outcome(run_stage(args.stage, args.config, overrides))
    except UserError as exc:
        print(f"codealign: error: {exc}", file=sys.stderr)
        return 2
    close_process_group()
    return 0


def close_process_group() -> None:
    """Leave together: a rank exiting while another still holds gloo/DeepSpeed threads can abort the latter
    ("terminate called without an active exception"), failing a run that finished."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def exit_without_teardown(code: int) -> None:
    """Run the exit handlers (pools, loggers), then leave without interpreter finalization: a C++ thread of
    gloo/DeepSpeed still joinable when static destructors run aborts a rank whose work is done and saved
    ("terminate called without an active exception", no Python frame left; seen in ~1 of 5 resumed ZeRO-3
    runs even after the barrier and ``destroy_process_group``)."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_without_teardown(main())
