"""Run a training stage under ``accelerate launch`` (DeepSpeed ZeRO, multi-GPU, multi-node).

``launch("dpo", "configs/dpo.yaml", ["beta=0.3"], "configs/accelerate/zero3.yaml", num_processes=8, db=db)``
runs::

    python -m accelerate.commands.launch --config_file configs/accelerate/zero3.yaml --num_processes 8 \\
        -m alignment.commands.train_entry dpo --config configs/dpo.yaml beta=0.3

Guarantees: the child gets this process's environment plus ``CODEALIGN_DB_URL`` = ``db``'s URL (set for
the child only), so every rank reads the same DB and rank 0 writes it; the accelerate config file is checked
to exist and to be a mapping
before anything starts; the result says how it ended. Non-guarantees: nothing retries a failed launch, and a
multi-node job needs the same command on every node (see ``configs/accelerate/multinode_example.yaml``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

from codealign.config import config_path as find_config
from codealign.config import read_yaml
from codealign.errors import UserError


@dataclass
class LaunchResult:
    command: list[str]
    returncode: int
    duration_s: float


def build_command(
    stage: str,
    config_path: str,
    overrides: list[str],
    accelerate_config: str,
    num_processes: int | None = None,
    main_process_port: int | None = None,
) -> list[str]:
    """The argv of the launch (pure: checks the accelerate config file but starts nothing)."""
    accel = read_yaml(accelerate_config)  # one-line error for a missing or malformed file
    if "distributed_type" not in accel:
        raise UserError(f"{accelerate_config}: not an accelerate config (no distributed_type key)")
    if num_processes is not None and num_processes < 1:
        raise UserError(f"--num-processes must be >= 1, got {num_processes}")
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(find_config(accelerate_config)),
    ]
    if num_processes is not None:
        command += ["--num_processes", str(num_processes)]
    if main_process_port is not None:
        command += ["--main_process_port", str(main_process_port)]
    return [*command, "-m", "alignment.commands.train_entry", stage, "--config", str(config_path), *overrides]


def launch(
    stage: str,
    config_path: str,
    overrides: list[str],
    accelerate_config: str,
    num_processes: int | None = None,
    main_process_port: int | None = None,
    *,
    db,
) -> LaunchResult:
    """Run the launch in the foreground, streaming its output; returns when every process has exited.

    Every rank gets ``db``'s URL in its own environment (``CODEALIGN_DB_URL``, read by the entry point)."""
    from db.session import DB_URL_ENV

    command = build_command(
        stage, str(find_config(config_path)), overrides, accelerate_config, num_processes, main_process_port
    )
    start = time.monotonic()
    completed = subprocess.run(command, env={**os.environ, DB_URL_ENV: db.url}, check=False)
    return LaunchResult(command, completed.returncode, time.monotonic() - start)
