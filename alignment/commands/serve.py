"""``codealign serve``: a policy behind an OpenAI-compatible HTTP API (:mod:`alignment.serve`, docs/serve.md).

Examples::

    codealign keys add alice                                   # the key, once, on stdout
    codealign serve --policy runs/quickstart/grpo              # http://127.0.0.1:8000/v1
    codealign serve --config configs/serve.yaml --policy quickstart-dpo --port 8080 --quantize int8
    codealign serve --policy runs/base limits.requests_per_minute=30 batching.max_batch_size=16

The policy is a registered name or a model directory; it is read, never registered. Clients send the served
model's id as ``model``: the policy's registered name, else the path as given (``--model-name`` sets it).
"""

from __future__ import annotations

import argparse

from codealign.flags import Flag

FLAGS = [
    Flag("--policy", "policy", "policy name or model directory", metavar="NAME|DIR"),
    Flag(
        "--model-name", "model_name", "the model id clients send (default: the policy's name)", metavar="ID"
    ),
    Flag("--host", "host", "bind address"),
    Flag("--port", "port", "port (0: any free one)"),
    Flag("--quantize", "quantize", "none | int8 (torch dynamic quantization of Linear layers, CPU)"),
    Flag("--device", "device", "auto | cpu | cuda"),
    Flag("--torch-threads", "torch_threads", "torch intra-op threads (default: CPU count - 1)", metavar="N"),
    Flag(
        "--max-batch-size",
        "batching.max_batch_size",
        "sequences per generate call (1: no batching)",
        metavar="N",
    ),
    Flag(
        "--batch-wait-ms",
        "batching.wait_ms",
        "how long a request waits for others to batch with",
        metavar="MS",
    ),
    Flag("--requests-per-minute", "limits.requests_per_minute", "per API key", metavar="N"),
    Flag(
        "--tokens-per-minute",
        "limits.tokens_per_minute",
        "per API key (prompt + n x max_tokens)",
        metavar="N",
    ),
]


def register(parser: argparse.ArgumentParser) -> None:
    from alignment.serve.config import ServeConfig
    from codealign.flags import add_config_arguments

    add_config_arguments(
        parser, ServeConfig, FLAGS, config_help="YAML for ServeConfig (e.g. configs/serve.yaml)"
    )
    parser.set_defaults(run=run)


def served_policy(db, policy: str) -> tuple[str, str]:
    """``(model id, checkpoint directory)`` of a policy name or a model directory, checked, nothing written."""
    from pathlib import Path

    from sqlalchemy import select

    from alignment.model_dir import check_model_dir
    from codealign.errors import UserError
    from db.models import Policy

    with db.session() as session:
        row = session.scalar(select(Policy).where(Policy.name == policy))
        if row is None and Path(policy).exists():
            row = session.scalars(
                select(Policy)
                .where(Policy.checkpoint_path == str(Path(policy).resolve()))
                .order_by(Policy.id)
            ).first()
            if row is None:
                return policy, str(check_model_dir(policy, "--policy"))
        if row is None:
            raise UserError(f"--policy: '{policy}' is neither a registered policy name nor a model directory")
        check_model_dir(row.checkpoint_path, f"--policy {policy}")
        return row.name, row.checkpoint_path


def listen(host: str, port: int):
    """The listening socket, bound before the model loads: a taken port fails in a second, in one line."""
    import socket

    from codealign.errors import UserError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def run(args: argparse.Namespace, db) -> int:
    from alignment.quiet import quiet_libraries
    from alignment.serve.config import ServeConfig
    from codealign.errors import UserError
    from codealign.flags import config_from_args
    from db.keys import list_keys

    cfg = config_from_args(ServeConfig, args, FLAGS)
    if not cfg.policy:
        raise UserError("--policy is required (a policy name or a model directory)")
    name, checkpoint = served_policy(db, cfg.policy)
    with db.session() as session:  # also fails now, in one line, on a database without the schema
        active = sum(k.active for k in list_keys(session))
    sock = listen(cfg.host, cfg.port)
    quiet_libraries()
    import uvicorn

    from alignment.serve.app import create_app
    from alignment.serve.engine import Engine

    engine = Engine.load(checkpoint, cfg)
    model_name = cfg.model_name or name
    app = create_app(cfg, db, engine, model_name)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"codealign serve: {model_name!r} ({checkpoint}{', int8' if cfg.quantize == 'int8' else ''}) on "
        f"http://{shown}:{port}/v1; {active} active API key(s); Ctrl+C stops",
        flush=True,
    )
    if not active:
        print("note: no active API key: every request will be refused; `codealign keys add NAME`", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    )
    server.run(sockets=[sock])
    return 0
