"""``codealign annotate``: build ranking items from scored completions, then serve the annotation app.

Examples::

    codealign annotate --config configs/annotate.yaml            # http://127.0.0.1:7860
    codealign annotate --host 0.0.0.0 --port 8080 k=6 show_static=false
    codealign annotate --build-only                               # just create items and exit
"""

from __future__ import annotations

import argparse

from codealign.flags import add_overrides


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="YAML for AnnotateConfig (e.g. configs/annotate.yaml)")
    parser.add_argument("--host", default=None, help="bind address (default from config: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default from config: 7860)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--build-only", action="store_true", help="create ranking items and exit")
    mode.add_argument("--no-build", action="store_true", help="serve without creating new items")
    add_overrides(parser)
    parser.set_defaults(run=_annotate)


def _annotate(args, db) -> int:
    from annotation_ui.config import AnnotateConfig
    from annotation_ui.items import build_items
    from codealign.config import load_config
    from codealign.provenance import cli_actor

    cfg = load_config(AnnotateConfig, args.config, args.overrides)
    cfg.guidelines_markdown()  # a missing guidelines file fails now, not on the first page load
    if args.build_only or (cfg.build_items_on_start and not args.no_build):
        with db.session() as session:
            created = build_items(
                session,
                k=cfg.k,
                selection=cfg.selection_policy,
                required_annotations=cfg.required_annotations,
                overlap_share=cfg.overlap_share,
                overlap_annotations=cfg.overlap_annotations,
                seed=cfg.seed,
                source=cfg.source,
                split=cfg.split,
                created_by=cli_actor(),
            )
        print(f"created {created} ranking item(s) of {cfg.k} completions ({cfg.selection_policy})")
    if args.build_only:
        return 0
    from annotation_ui.app import launch_app

    launch_app(cfg, db, host=args.host, port=args.port, block=True)
    return 0
