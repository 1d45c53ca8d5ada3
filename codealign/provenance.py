"""Who/what produced a row: the strings stored in every ``created_by`` column."""

from __future__ import annotations

import getpass
import socket


def cli_actor() -> str:
    """``cli:<user>@<host>`` for rows written by a person at the command line."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def run_actor(run_id: int) -> str:
    return f"run:{run_id}"


def annotator_actor(name: str) -> str:
    return f"annotator:{name}"
