"""Annotator tab: prompt, K completion cards with rank radios, comment/flag/skip, undo, progress.

Public API endpoints (also what the page calls): ``/current_item``, ``/submit``, ``/skip``, ``/undo``.
Each returns the full page state for the next item, so one round trip does submit + next. A refused event
(e.g. a completion left unranked) leaves the page as it is, ranks given so far included, and shows the
reason in the status line (:mod:`annotation_ui.app`).
"""

# No `from __future__ import annotations`: Gradio reads `request: gr.Request` hints at runtime.
import html
import time
from dataclasses import dataclass

import gradio as gr

from annotation_ui import assignment as service
from annotation_ui.app import AppContext, guarded, shortcuts_markdown
from annotation_ui.config import MAX_K
from annotation_ui.render import completion_html, prompt_html

OPEN_ITEMS_REFRESH_S = 15.0


@dataclass
class AnnotatePage:
    outputs: list  # the components every annotate event updates
    load: object  # handler that shows the current item; the app runs it on page load


def _page_state(
    ctx: AppContext, session, user, view: service.ItemView | None, message: str, open_items: int
) -> list:
    """The values of ``outputs`` in order: assignment id, progress, prompt, 8 columns, 8 cards, 8 radios,
    comment, flag reason, status. Updates are ``gr.update`` dicts: building component objects per response
    cost ~10 ms. API clients do not receive the 8 layout columns."""
    progress = service.progress(session, user, count_open=False)
    progress_md = (
        f"Ranked **{progress.done}** &middot; skipped **{progress.skipped}** &middot; "
        f"open items left **{open_items + (view is not None and not view.editing)}**"
    )
    if view is None:
        hidden = [gr.update(visible=False)] * MAX_K
        return [
            "",
            progress_md,
            "<p>No items left for you. Thank you! Reload later for new ones.</p>",
            *hidden,
            *[""] * MAX_K,
            *[gr.update(choices=[], value=None)] * MAX_K,
            "",
            "",
            message,
        ]
    k = len(view.completions)
    choices = [str(r) for r in range(1, k + 1)]
    columns = [gr.update(visible=i < k) for i in range(MAX_K)]
    cards = [
        completion_html(
            c, view.prompt, show_execution=ctx.cfg.show_execution, show_static=ctx.cfg.show_static
        )
        for c in view.completions
    ] + [""] * (MAX_K - k)
    radios = [
        gr.update(
            choices=choices,
            value=str(view.ranks[i]) if view.ranks else None,
            label=f"Rank of {view.completions[i].label}",
        )
        if i < k
        else gr.update(choices=[], value=None)
        for i in range(MAX_K)
    ]
    return [
        str(view.assignment_id),
        progress_md,
        prompt_html(view.task_name, view.prompt),
        *columns,
        *cards,
        *radios,
        view.comment,
        view.flag_reason,
        message,
    ]


def build(ctx: AppContext) -> AnnotatePage:
    cfg = ctx.cfg
    with gr.Row():
        progress_md = gr.Markdown(elem_id="progress")
    with gr.Accordion("Guidelines", open=False):
        gr.Markdown(cfg.guidelines_markdown())
    with gr.Accordion("Keyboard shortcuts", open=False, elem_id="shortcut-help"):
        gr.Markdown(shortcuts_markdown())
    assignment_box = gr.Textbox(visible="hidden", elem_id="assignment-id", label="assignment")
    prompt_box = gr.HTML(elem_id="prompt")
    columns, cards, radios = [], [], []
    with gr.Row(equal_height=False):
        for i in range(MAX_K):
            with gr.Column(
                visible=False, min_width=420, elem_id=f"card-col-{i}", elem_classes=["ca-col"]
            ) as col:
                cards.append(gr.HTML(elem_id=f"card-{i}"))
                radios.append(gr.Radio(choices=[], label="Rank", elem_id=f"rank-{i}"))
            columns.append(col)
    with gr.Row():
        comment = gr.Textbox(
            label="Comment (optional)", lines=2, elem_id="comment", max_length=service.MAX_TEXT
        )
        flag_reason = gr.Textbox(
            label="Flag: what is wrong with this task? (leave empty to not flag)",
            lines=2,
            elem_id="flag-reason",
            max_length=service.MAX_REASON,
        )
    with gr.Row():
        submit_btn = gr.Button(
            "Submit ranking (Enter)", variant="primary", elem_id="submit-btn", min_width=260
        )
        skip_reason = gr.Dropdown(
            choices=cfg.skip_reasons,
            value=cfg.skip_reasons[0],
            allow_custom_value=True,
            label="Skip reason",
            elem_id="skip-reason",
            min_width=300,  # the reasons are sentences: a button-wide box cut them off
        )
        skip_btn = gr.Button("Skip (s)", elem_id="skip-btn")
        undo_btn = gr.Button("Undo / edit last (u)", elem_id="undo-btn")
        reload_btn = gr.Button("Reload", elem_id="reload-btn")
    status = gr.Markdown(elem_id="status")
    outputs = [
        assignment_box,
        progress_md,
        prompt_box,
        *columns,
        *cards,
        *radios,
        comment,
        flag_reason,
        status,
    ]

    open_counts: dict[int, tuple[float, int]] = {}  # user id -> (time counted, open items)

    def open_items(session, user, fresh: bool = False) -> int:
        """Open items for this user, recounted on reload and at most every OPEN_ITEMS_REFRESH_S otherwise:
        the count scans every item and was the costliest part of submit+next with many items."""
        cached = open_counts.get(user.id)
        if fresh or cached is None or time.monotonic() - cached[0] > OPEN_ITEMS_REFRESH_S:
            cached = (time.monotonic(), service.progress(session, user).open_items)
            open_counts[user.id] = cached
        return cached[1]

    @guarded(outputs, status)
    def current_item(request: gr.Request):
        with ctx.session() as session:
            user = ctx.user(session, request)
            view = service.claim_next(session, user, claim_ttl_minutes=cfg.claim_ttl_minutes, seed=cfg.seed)
            return _page_state(ctx, session, user, view, "", open_items(session, user, fresh=True))

    def _then_next(user, message: str) -> list:
        with ctx.session() as session:
            view = service.claim_next(session, user, claim_ttl_minutes=cfg.claim_ttl_minutes, seed=cfg.seed)
            return _page_state(
                ctx, session, user, view, message, open_items(session, user, fresh=view is None)
            )

    @guarded(outputs, status)
    def submit(request: gr.Request, assignment_id, *values):  # request first: Gradio injects it by position
        ranks, (comment_text, flag_text) = list(values[:MAX_K]), values[MAX_K:]
        with ctx.session() as session:
            user = ctx.user(session, request)
            result = service.submit_ranking(
                session, user, assignment_id, ranks, comment=comment_text, flag_reason=flag_text
            )
        verb = "Updated" if result.edited else "Saved"
        return _then_next(user, f"{verb} ranking #{result.ranking_id}.")

    @guarded(outputs, status)
    def skip(assignment_id, reason, comment_text, flag_text, request: gr.Request):
        with ctx.session() as session:
            user = ctx.user(session, request)
            result = service.skip_item(
                session, user, assignment_id, reason, comment=comment_text, flag_reason=flag_text
            )
        return _then_next(
            user, f"Skipped ({html.escape(str(reason), quote=False)}); saved as #{result.ranking_id}."
        )

    @guarded(outputs, status)
    def undo(request: gr.Request):
        with ctx.session() as session:
            user = ctx.user(session, request)
            view = service.reopen_last(session, user)
            if view is None:
                raise service.Rejected("nothing to undo yet")
            message = "Editing your last answer: change it and submit."
            return _page_state(ctx, session, user, view, message, open_items(session, user))

    # Short DB round trips: served directly (one HTTP POST, no queue/SSE hop), which is what keeps
    # submit+next fast with many annotators (bench/annotation_load.py). Slow events keep the queue.
    direct = {"outputs": outputs, "queue": False}
    reload_btn.click(current_item, api_name="current_item", **direct)
    # preprocess=False: Gradio's own check of a radio value ("not in the list of choices") would answer
    # HTTP 500 before the handler runs; the service validates every value it is sent itself.
    direct_raw = {**direct, "preprocess": False}
    submit_btn.click(
        submit, inputs=[assignment_box, *radios, comment, flag_reason], api_name="submit", **direct_raw
    )
    skip_btn.click(
        skip, inputs=[assignment_box, skip_reason, comment, flag_reason], api_name="skip", **direct_raw
    )
    undo_btn.click(undo, api_name="undo", **direct)
    return AnnotatePage(outputs=outputs, load=current_item)
