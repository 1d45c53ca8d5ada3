"""What each process runs under ``accelerate launch``: ``python -m alignment.train_cli_entry STAGE --config F
[key=value ...]`` — the arguments of ``codealign train`` without the launch options. The DB URL travels in
``$CODEALIGN_DB_URL``; rank 0 alone writes rows (alignment.runs)."""

from __future__ import annotations

import argparse
import sys

from alignment.errors import UserError


def main(argv: list[str] | None = None) -> int:
    from alignment.train_cli import print_outcome, run_stage, split_words

    parser = argparse.ArgumentParser(prog="alignment.train_cli_entry")
    parser.add_argument("words", nargs="+")
    parser.add_argument("--config", nargs="+", required=True)
    args = parser.parse_args(argv)
    try:
        split_words(args)
        print_outcome(run_stage(args.stage, args.config, args.overrides))
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


if __name__ == "__main__":
    sys.exit(main())
