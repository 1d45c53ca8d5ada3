"""``codealign panel``: the simulated annotator panel ranks the open items (:mod:`annotation_ui.panel`).

Examples::

    codealign annotate --build-only                      # ranking items from scored completions
    codealign panel --config configs/panel.yaml          # 5 simulated annotators rank what is open to them
    codealign panel annotators=3 max_items_per_annotator=50 seed=1

Prints what the panel did and the agreement the admin page shows (Kendall τ-b on shared items, Krippendorff's α).
"""

from __future__ import annotations

import argparse

from codealign.flags import add_overrides


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="YAML for PanelConfig (configs/panel.yaml)")
    add_overrides(parser)
    parser.set_defaults(run=_panel)


def _panel(args, db) -> int:
    from annotation_ui.panel import PanelConfig, run_panel
    from annotation_ui.quality import quality_report
    from codealign.config import load_config

    cfg = load_config(PanelConfig, args.config, args.overrides)
    result = run_panel(db, cfg)
    with db.session() as session:
        agreement = quality_report(session).agreement

    def fmt(value):
        return "-" if value is None else f"{value:.3f}"

    print(
        f"panel {', '.join(result.annotators)}: {result.rankings} rankings of {result.items} items; "
        f"shared items {agreement.shared_items}, mean Kendall tau-b {fmt(agreement.mean_tau_b)}, "
        f"Krippendorff alpha (ordinal) {fmt(agreement.alpha_ordinal)}"
    )
    return 0
