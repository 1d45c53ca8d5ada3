"""``codealign model init --preset tiny --output DIR``: the embedded model (offline tokenizer + random-init Llama).

Examples::

    codealign model init --preset tiny --output runs/base
    codealign model init --preset test --output /tmp/m hidden_size=32     # a preset field overridden
"""

from __future__ import annotations

import json

from codealign.flags import add_overrides


def register(parser) -> None:
    sub = parser.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    init = sub.add_parser("init", help="train the tokenizer and build the random-init embedded model")
    init.add_argument(
        "--preset", default="tiny", help="name under configs/model/ or a YAML path (default: tiny)"
    )
    init.add_argument("--output", required=True, help="directory to write the HF model + tokenizer to")
    init.add_argument("--seed", type=int, default=0)
    init.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    add_overrides(init, "override preset fields")
    init.set_defaults(run=_init)


def _init(args, db) -> int:
    from alignment.model_init import init_model

    path = init_model(args.output, args.preset, args.seed, args.overrides, args.overwrite)
    meta = json.loads((path / "codealign_model.json").read_text())
    print(f"model '{args.preset}' ({meta['parameters'] / 1e6:.2f}M parameters) written to {path}")
    return 0
