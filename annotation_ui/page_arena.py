"""Reviewer arena tab: blind pair, four vote buttons, reveal after the vote, leaderboard with plot.

API endpoints: ``/arena_next``, ``/arena_vote_left|right|tie|both_bad``, ``/arena_leaderboard``.
Only reviewers and admins may call them; a refusal comes back in the ``reveal`` line (leaderboard: the
line under it), see :mod:`annotation_ui.app`. Selecting the tab shows a pair and the leaderboard
(:attr:`ArenaPage.fill`), so the page is never empty until a button is pressed.
"""

# No `from __future__ import annotations`: Gradio reads `request: gr.Request` hints at runtime.
import html
from dataclasses import dataclass

import gradio as gr

from annotation_ui import arena as service
from annotation_ui.app import AppContext, guarded, refusal_html
from annotation_ui.render import completion_html, prompt_html
from codealign.errors import UserError

REVIEWER_ROLES = ("reviewer", "admin")
BUTTONS = {
    "left": "Left is better (1)",
    "right": "Right is better (2)",
    "tie": "Tie (3)",
    "both_bad": "Both bad (4)",
}
LEADERBOARD_COLUMNS = ["policy", "rating", "95% CI low", "95% CI high", "votes", "wins", "pass rate"]


@dataclass
class ArenaPage:
    policy_a: object
    policy_b: object
    fill: object  # handler for selecting the tab: the pending or a new pair, and the leaderboard
    fill_inputs: list
    fill_outputs: list


def _leaderboard_rows(rows: list[service.LeaderRow]) -> list[list]:
    return [
        [
            r.policy,
            round(r.rating),
            round(r.ci_low),
            round(r.ci_high),
            r.votes,
            r.wins,
            "-" if r.pass_rate is None else f"{100 * r.pass_rate:.1f}%",
        ]
        for r in rows
    ]


def build(ctx: AppContext) -> ArenaPage:
    cfg = ctx.cfg
    gr.Markdown(
        "Pick two policies, then judge which completion is better. Sides are random and names are shown "
        "only after your vote."
    )
    with gr.Row():
        policy_a = gr.Dropdown(label="Policy", elem_id="arena-policy-a", allow_custom_value=True)
        policy_b = gr.Dropdown(label="Other policy", elem_id="arena-policy-b", allow_custom_value=True)
        next_btn = gr.Button("Next pair (n)", elem_id="arena-next-btn")
    vote_box = gr.Textbox(visible="hidden", elem_id="arena-vote-id", label="pair")
    prompt_box = gr.HTML(elem_id="arena-prompt")
    with gr.Row(equal_height=False):
        left = gr.HTML(elem_id="arena-left")
        right = gr.HTML(elem_id="arena-right")
    with gr.Row():
        buttons = {choice: gr.Button(text, elem_id=f"arena-{choice}-btn") for choice, text in BUTTONS.items()}
    reveal = gr.Markdown(elem_id="arena-reveal")
    with gr.Accordion("Leaderboard", open=False):
        board_btn = gr.Button("Refresh leaderboard", elem_id="arena-board-btn")
        board = gr.Dataframe(
            headers=LEADERBOARD_COLUMNS, datatype="str", interactive=False, elem_id="arena-board"
        )
        plot = gr.Plot(elem_id="arena-plot")
        board_status = gr.Markdown(elem_id="arena-board-status")
    pair_outputs = [vote_box, prompt_box, left, right, reveal]
    vote_outputs = [vote_box, reveal]
    board_outputs = [board, plot, board_status]

    def card(view, prompt):
        return completion_html(view, prompt, show_execution=cfg.show_execution, show_static=cfg.show_static)

    def pair_state(name_a, name_b, request) -> list:
        with ctx.session() as session:
            user = ctx.user(session, request, REVIEWER_ROLES)
            pair = service.next_pair(session, user, name_a, name_b, split=cfg.arena_split)
        return [
            str(pair.vote_id),
            prompt_html(pair.task_name, pair.prompt),
            card(pair.left, pair.prompt),
            card(pair.right, pair.prompt),
            "",
        ]

    @guarded(pair_outputs, reveal)
    def next_pair(name_a, name_b, request: gr.Request):
        return pair_state(name_a, name_b, request)

    def make_vote(choice: str):
        @guarded(vote_outputs, reveal)
        def vote(vote_id, request: gr.Request):
            with ctx.session() as session:
                user = ctx.user(session, request, REVIEWER_ROLES)
                shown = service.cast_vote(session, user, vote_id, choice)
            return (
                "",
                (
                    f"Vote stored: **{choice.replace('_', ' ')}**. Left was **{html.escape(shown.left_policy)}**, "
                    f"right was **{html.escape(shown.right_policy)}**. Press *Next pair* to continue."
                ),
            )

        return vote

    def board_state(request) -> list:
        with ctx.read_session() as session:
            ctx.user(session, request, REVIEWER_ROLES)
            rows = service.leaderboard(
                session, split=cfg.arena_split, rounds=cfg.bootstrap_rounds, seed=cfg.seed
            )
        if not rows:
            return [[], None, "No votes yet: the leaderboard appears after the first vote."]
        return [_leaderboard_rows(rows), service.plot_leaderboard(rows), ""]

    @guarded(board_outputs, board_status)
    def leaderboard(request: gr.Request):
        return board_state(request)

    fill_outputs = pair_outputs + board_outputs

    @guarded(fill_outputs, reveal)
    def fill(vote_id, name_a, name_b, request: gr.Request):
        """Tab selected: the leaderboard, and a pair unless one is on screen (the pending one, else new)."""
        board = board_state(request)  # checks the role first: a refusal here refuses everything
        skip_pair = [gr.skip()] * (len(pair_outputs) - 1)
        if str(vote_id or "").strip():
            pair = [*skip_pair, gr.skip()]
        elif not (name_a and name_b):
            pair = [*skip_pair, f"No two policies have completions on the {cfg.arena_split!r} split yet."]
        else:
            try:
                pair = pair_state(name_a, name_b, request)
            except UserError as exc:  # e.g. no common task: still show the leaderboard
                pair = [*skip_pair, refusal_html(str(exc))]
        return pair + board

    next_btn.click(next_pair, inputs=[policy_a, policy_b], outputs=pair_outputs, api_name="arena_next")
    for choice, button in buttons.items():
        button.click(
            make_vote(choice), inputs=[vote_box], outputs=vote_outputs, api_name=f"arena_vote_{choice}"
        )
    board_btn.click(leaderboard, outputs=board_outputs, api_name="arena_leaderboard")
    return ArenaPage(
        policy_a=policy_a,
        policy_b=policy_b,
        fill=fill,
        fill_inputs=[vote_box, policy_a, policy_b],
        fill_outputs=fill_outputs,
    )
