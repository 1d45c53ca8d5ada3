"""``codealign export preferences``: pairwise preference dataset from the stored rankings.

Examples::

    codealign export preferences --out data/prefs
    codealign export preferences --out data/prefs --config configs/export_preferences.yaml consensus=unanimous
    python -c "import datasets; print(datasets.load_from_disk('data/prefs/dataset'))"
"""

from __future__ import annotations

import argparse

from codealign.flags import add_overrides


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="export_command", metavar="WHAT", required=True)
    prefs = sub.add_parser("preferences", help="prompt/chosen/rejected/margin pairs (+ provenance)")
    prefs.add_argument("--out", required=True, help="new (or empty) directory to write into")
    prefs.add_argument(
        "--config", default=None, help="YAML for ExportConfig (configs/export_preferences.yaml)"
    )
    add_overrides(prefs, "e.g. consensus=mean_rank min_annotators=2")
    prefs.set_defaults(run=_export_preferences)


def _export_preferences(args, db) -> int:
    from annotation_ui.export import ExportConfig, collect_preferences, write_preferences
    from codealign.config import load_config
    from codealign.provenance import cli_actor

    cfg = load_config(ExportConfig, args.config, args.overrides)
    with db.session() as session:
        rows = collect_preferences(session, cfg)
    result = write_preferences(rows, args.out, cfg, created_by=cli_actor())
    print(f"wrote {result.pairs} pairs from {result.items} items (consensus={cfg.consensus})")
    print(
        f"  dataset: {result.dataset_dir}\n  jsonl:   {result.jsonl_path}\n  manifest: {result.manifest_path}"
    )
    return 0
