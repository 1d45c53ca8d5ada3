"""What each process runs under ``accelerate launch``: ``python -m alignment.commands.train_entry STAGE
--config FILE [KEY=VALUE ...]`` — the arguments of ``codealign train`` without the launch options.

The database travels to every rank in the child environment the launcher builds (``CODEALIGN_DB_URL``, set
in ``subprocess.run(env=...)``, never in the parent's ``os.environ``; the environment, unlike argv, is not
readable by other users in ``/proc``); this entry point reads it once and passes a ``Database`` down. Rank 0
alone writes rows (:mod:`alignment.runs`).
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys

from codealign.errors import UserError


def main(argv: list[str] | None = None) -> int:
    from alignment.commands.train import print_outcome
    from alignment.quiet import quiet_libraries
    from alignment.stages import resolve_config, train_stage
    from db.session import DB_URL_ENV, Database

    quiet_libraries()
    parser = argparse.ArgumentParser(prog="alignment.commands.train_entry")
    parser.add_argument("stage")
    parser.add_argument("--config", required=True)
    args, overrides = parser.parse_known_args(argv)  # the launcher puts the KEY=VALUE overrides last
    try:
        db = Database.at(os.environ.get(DB_URL_ENV))
        print_outcome(train_stage(args.stage, resolve_config(args.stage, args.config, overrides), db))
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
