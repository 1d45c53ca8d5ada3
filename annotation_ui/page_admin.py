"""Admin tab: agreement (Kendall tau-b, Krippendorff alpha), throughput, flagged items, skip reasons.

API endpoint ``/admin_report``; admins only (a refusal comes back in the summary line, see
:mod:`annotation_ui.app`). Selecting the tab runs the report (:attr:`AdminPage.report`). User text (flag
reasons, comments) is shown as plain table cells, never as HTML or Markdown.
"""

# No `from __future__ import annotations`: Gradio reads `request: gr.Request` hints at runtime.
from dataclasses import dataclass

import gradio as gr

from annotation_ui.app import AppContext, guarded
from annotation_ui.quality import quality_report

ANNOTATOR_COLUMNS = [
    "annotator",
    "ranked",
    "skipped",
    "flagged",
    "median s/item",
    "items/hour",
    "mean tau-b",
    "pairs",
]
FLAG_COLUMNS = ["item", "task", "annotator", "flag reason", "comment"]


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@dataclass
class AdminPage:
    report: object  # the handler the tab's selection runs too
    outputs: list


def build(ctx: AppContext) -> AdminPage:
    refresh = gr.Button("Refresh", elem_id="admin-refresh-btn")
    summary = gr.Markdown(elem_id="admin-summary")
    gr.Markdown("### Annotators")
    annotators = gr.Dataframe(headers=ANNOTATOR_COLUMNS, datatype="str", interactive=False)
    gr.Markdown("### Flagged items")
    flagged = gr.Dataframe(headers=FLAG_COLUMNS, datatype="str", interactive=False)
    gr.Markdown("### Skip reasons")
    skips = gr.Dataframe(headers=["reason", "count"], datatype="str", interactive=False)

    outputs = [summary, annotators, flagged, skips]

    @guarded(outputs, summary)
    def report(request: gr.Request):
        with ctx.read_session() as session:
            ctx.user(session, request, ("admin",))
            q = quality_report(session)
        a = q.agreement
        text = (
            f"**Items** {q.items_complete}/{q.items_total} complete &middot; "
            f"**shared items** {a.shared_items} &middot; "
            f"**mean Kendall tau-b** {_fmt(a.mean_tau_b)} &middot; "
            f"**Krippendorff alpha (ordinal)** {_fmt(a.alpha_ordinal)}"
        )
        table = [
            [
                s.name,
                str(s.ranked),
                str(s.skipped),
                str(s.flagged),
                _fmt(s.median_seconds, 1),
                _fmt(s.items_per_hour, 1),
                _fmt(s.mean_tau_b),
                str(s.tau_comparisons),
            ]
            for s in q.annotators
        ]
        flags = [[str(f.item_id), f.task, f.annotator, f.reason, f.comment] for f in q.flagged]
        return text, table, flags, [[reason, str(n)] for reason, n in q.skip_reasons]

    refresh.click(report, outputs=outputs, api_name="admin_report")
    return AdminPage(report=report, outputs=outputs)
