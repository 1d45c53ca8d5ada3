"""HTML for code, verdicts and findings. Everything that came from a model or a user is escaped here.

Pygments escapes the code it highlights; every other string goes through :func:`html.escape`. No function
here interpolates unescaped DB text into HTML. No gradio import.
"""

from __future__ import annotations

import functools
import html
from typing import Any

from annotation_ui.views import CompletionView

MAX_FINDINGS_SHOWN = 6
_FINDING_KEYS = (
    "code",
    "test_id",
    "rule",
    "line",
    "line_number",
    "rank",
    "complexity",
    "message",
    "issue_text",
    "name",
)


@functools.lru_cache(maxsize=4096)  # completions never change; many annotators see the same ones
def code_html(code: str, first_line: int = 1, highlight_line: int | None = None) -> str:
    """Highlighted code in a ``<pre>``: indentation kept, line numbers from ``first_line``."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    hl = []
    if highlight_line is not None and first_line <= highlight_line < first_line + code.count("\n") + 1:
        hl = [highlight_line - first_line + 1]
    formatter = HtmlFormatter(
        linenos="inline", linenostart=first_line, hl_lines=hl, cssclass="ca-code", wrapcode=True
    )
    return highlight(code, PythonLexer(stripnl=False, ensurenl=True), formatter)


def code_css() -> str:
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(style="default").get_style_defs(".ca-code")


def prompt_html(task_name: str, prompt: str) -> str:
    return (
        f'<div class="ca-prompt"><div class="ca-task">{html.escape(task_name)}</div>{code_html(prompt)}</div>'
    )


def verdict_html(view: CompletionView) -> str:
    if view.verdict is None:
        return '<span class="ca-verdict ca-unknown">not executed</span>'
    tests = f"{view.tests_passed}/{view.tests_total} tests"
    if view.verdict == "passed":
        return f'<span class="ca-verdict ca-pass">&#10004; passed &middot; {tests}</span>'
    detail = [html.escape(view.verdict), tests]
    if view.error_type:
        detail.append(html.escape(view.error_type))
    if view.error_line is not None:
        detail.append(f"line {int(view.error_line)}")
    return f'<span class="ca-verdict ca-fail">&#10008; {" &middot; ".join(detail)}</span>'


def _finding_text(finding: Any) -> str:
    if isinstance(finding, dict):
        parts = [f"{k}={finding[k]}" for k in _FINDING_KEYS if k in finding]
        text = ", ".join(parts) if parts else ", ".join(f"{k}={v}" for k, v in list(finding.items())[:4])
    else:
        text = str(finding)
    return text[:160]


def static_html(view: CompletionView) -> str:
    """Normalised scores (0..1) and the first raw findings of each static analyser."""
    if not view.static_scores and not view.static_findings:
        return '<div class="ca-static">no static analysis</div>'
    scores = " &middot; ".join(
        f"{html.escape(str(k))} {v:.2f}"
        if isinstance(v, (int, float))
        else f"{html.escape(str(k))} {html.escape(str(v))}"
        for k, v in sorted(view.static_scores.items())
    )
    items = []
    for tool, found in sorted(view.static_findings.items()):
        if not found:  # None / [] / "" (the reward engine stores syntax_error=None when the code parses)
            continue
        if isinstance(found, dict):
            found = [f"{k}: {v}" for k, v in found.items()]
        if not isinstance(found, list):
            found = [found]
        shown = "".join(f"<li>{html.escape(_finding_text(f))}</li>" for f in found[:MAX_FINDINGS_SHOWN])
        more = (
            f"<li>&hellip; {len(found) - MAX_FINDINGS_SHOWN} more</li>"
            if len(found) > MAX_FINDINGS_SHOWN
            else ""
        )
        items.append(
            f"<details><summary>{html.escape(str(tool))}: {len(found)}</summary><ul>{shown}{more}</ul></details>"
        )
    return f'<div class="ca-static"><div>{scores}</div>{"".join(items)}</div>'


def completion_html(view: CompletionView, prompt: str, *, show_execution: bool, show_static: bool) -> str:
    """One completion card. Line numbers continue the prompt's, so they match the sandbox's error line."""
    first_line = prompt.count("\n") + 1
    highlight_line = view.error_line if show_execution else None
    parts = [f'<div class="ca-card" data-completion="{html.escape(view.label)}">']
    parts.append(f'<div class="ca-label">{html.escape(view.label)}</div>')
    if show_execution:
        parts.append(verdict_html(view))
    parts.append(code_html(view.text, first_line, highlight_line))
    if show_static:
        parts.append(static_html(view))
    parts.append("</div>")
    return "".join(parts)


CARD_CSS = """
.ca-card { border: 1px solid #d0d7de; border-radius: 6px; padding: 6px; }
.ca-col.ca-selected { outline: 3px solid #0969da; border-radius: 8px; }  /* keyboard selection */
.ca-label { font-weight: 700; font-size: 1.1em; }
.ca-task { font-weight: 600; margin-bottom: 4px; }
.ca-code pre { white-space: pre; overflow-x: auto; font-size: 13px; line-height: 1.35; margin: 4px 0; }
.ca-code .linenos { color: #8c959f; padding-right: 8px; user-select: none; }
.ca-code .hll { background-color: #ffd8d8; }
.ca-verdict { font-weight: 600; }
.ca-pass { color: #1a7f37; }
.ca-fail { color: #cf222e; }
.ca-unknown { color: #6e7781; }
.ca-static { font-size: 12px; color: #57606a; }
.ca-static ul { margin: 2px 0 2px 16px; }
kbd { border: 1px solid #aaa; border-radius: 3px; padding: 0 4px; font-size: 0.9em; }
"""


def page_css() -> str:
    return code_css() + CARD_CSS
