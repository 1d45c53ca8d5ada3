"""HTML for code, verdicts and findings. Everything that came from a model or a user is escaped here.

Pygments escapes the code it highlights; every other string goes through :func:`html.escape`. No function
here interpolates unescaped DB text into HTML. No gradio import.

A card's static part shows what an annotator can act on: the ruff / bandit findings on the completion's own
lines (rule, line, message; the prompt's findings are the same on every card and are left out), the
cyclomatic complexity of the functions the completion writes, a quiet note for clean checks, and a legend.
The reward's 0..1 scores are only in the legend: most are 1.00 on most cards.
"""

from __future__ import annotations

import functools
import html
from typing import Any, NamedTuple

from annotation_ui.views import CompletionView
from reward.static import COMPLEXITY_TARGET

MAX_FINDINGS_SHOWN = 6
# What each ruff rule family checks (the families reward.static.RUFF_RULES selects), longest prefix first.
RUFF_FAMILIES = (
    ("SIM", "flake8-simplify: code that could be simpler"),
    ("PL", "pylint: likely bug or hard-to-read construct"),
    ("UP", "pyupgrade: outdated syntax for this Python"),
    ("C4", "flake8-comprehensions: an unidiomatic comprehension or call"),
    ("E", "pycodestyle: layout or comparison style"),
    ("W", "pycodestyle: whitespace"),
    ("F", "pyflakes: likely bug (unused or undefined name, ...)"),
    ("B", "flake8-bugbear: likely bug or design problem"),
    ("N", "pep8-naming: naming convention"),
)
LEGEND = (
    "<li><b>lint</b>: ruff findings (rule code, line, message); by rule prefix: "
    + "; ".join(f"{prefix} {what}" for prefix, what in RUFF_FAMILIES)
    + ". <code>ruff rule F401</code> explains one rule.</li>"
    "<li><b>complexity</b>: the highest cyclomatic complexity (radon) of a function in the completion: "
    f"1 is straight-line code, each branch or loop adds 1; above {COMPLEXITY_TARGET} is worth a look.</li>"
    "<li><b>security</b>: bandit findings (severity HIGH / MEDIUM / LOW), e.g. eval, shell calls, pickle.</li>"
    "<li>Only findings on the completion's lines are shown: those on the prompt's lines are the same on "
    "every card. Line numbers continue the prompt's.</li>"
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


def _ruff_family(code: str) -> str:
    return next((what for prefix, what in RUFF_FAMILIES if code.startswith(prefix)), "ruff rule")


def _line(finding: dict) -> int | None:
    line = finding.get("line", finding.get("line_number"))
    return line if isinstance(line, int) and not isinstance(line, bool) else None


class Finding(NamedTuple):
    line: int | None
    tool: str  # "ruff" | "bandit"
    code: str  # rule code; bandit's with its severity
    message: str
    tooltip: str  # what the rule family checks


def card_findings(findings: dict[str, Any], first_line: int) -> list[Finding]:
    """The ruff and bandit findings on the completion's lines (``line >= first_line``), in line order.
    Findings without a line number are kept (location unknown)."""
    out = []
    for tool in ("ruff", "bandit"):
        for f in findings.get(tool) or []:
            if not isinstance(f, dict):
                continue
            line = _line(f)
            if line is not None and line < first_line:
                continue
            code = str(f.get("code") or f.get("test_id") or f.get("rule") or tool)
            message = str(f.get("message") or f.get("issue_text") or "")[:160]
            if tool == "bandit":
                severity = str(f.get("severity", "?"))
                code, tooltip = f"{code} {severity}", f"bandit security check, severity {severity}"
            else:
                tooltip = f"ruff {code} ({_ruff_family(code)})"
            out.append(Finding(line, tool, code, message, tooltip))
    return sorted(out, key=lambda f: (f.line is None, f.line or 0))


def _complexity(findings: dict[str, Any], first_line: int) -> list[tuple[str, int]]:
    """``(function, cyclomatic complexity)`` of the functions the completion writes or finishes: a block
    ending before ``first_line`` lies wholly in the prompt. Rows stored without ``endline`` keep all."""
    blocks = []
    for b in findings.get("radon") or []:
        if not isinstance(b, dict) or not isinstance(b.get("complexity"), int):
            continue
        end = b.get("endline")
        if isinstance(end, int) and end < first_line:
            continue
        blocks.append((str(b.get("name", "?")), b["complexity"]))
    return blocks


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _span(level: str, title: str, text: str) -> str:
    return f'<span class="{level}" title="{html.escape(title)}">{html.escape(text)}</span>'


def _summary(found: dict[str, Any], items: list[Finding], blocks: list[tuple[str, int]]) -> list[str]:
    """One short line: counts of what was found, the complexity, and a quiet note for the clean checks."""
    if found.get("syntax_error"):  # nothing else was analysed
        return [_span("ca-warn", "ast.parse failed", f"syntax error: {str(found['syntax_error'])[:160]}")]
    parts, clean = [], []
    lint = sum(f.tool == "ruff" for f in items)
    if lint:
        parts.append(_span("ca-warn", "ruff style and bug rules", _count(lint, "lint finding")))
    else:
        clean.append("lint")
    if blocks:
        worst = max(c for _, c in blocks)
        level = "ca-warn" if worst > COMPLEXITY_TARGET else "ca-quiet"
        per_function = ", ".join(f"{name}: {c}" for name, c in blocks)
        parts.append(_span(level, f"cyclomatic complexity (radon): {per_function}", f"complexity {worst}"))
    if len(items) > lint:
        parts.append(
            _span("ca-warn", "bandit security checks", _count(len(items) - lint, "security finding"))
        )
    else:
        clean.append("security")
    if clean:
        parts.append(_span("ca-quiet", "ruff and bandit found nothing", f"no {' or '.join(clean)} findings"))
    return parts


def static_html(view: CompletionView, first_line: int = 1) -> str:
    """What the static checks found in the completion's own lines (from ``first_line``): a short summary,
    each finding with rule, line and message, and a legend of the checks with the reward's 0..1 scores."""
    if not view.static_scores and not view.static_findings:
        return '<div class="ca-static">no static analysis</div>'
    found = view.static_findings or {}
    items = card_findings(found, first_line)
    rows = "".join(
        f'<li title="{html.escape(f.tooltip)}"><code>{html.escape(f.code)}</code> '
        f"{'' if f.line is None else f'line {f.line}: '}{html.escape(f.message)}</li>"
        for f in items[:MAX_FINDINGS_SHOWN]
    )
    if len(items) > MAX_FINDINGS_SHOWN:
        rows += f"<li>&hellip; {len(items) - MAX_FINDINGS_SHOWN} more</li>"
    scores = " &middot; ".join(
        f"{html.escape(str(k))} {v:.2f}"
        for k, v in sorted(view.static_scores.items())
        if isinstance(v, (int, float))
    )
    legend = LEGEND + (f"<li>Scores the reward uses (0..1, 1 best): {scores}</li>" if scores else "")
    summary = " &middot; ".join(_summary(found, items, _complexity(found, first_line)))
    return (
        f'<div class="ca-static"><div class="ca-static-summary">{summary}</div>'
        + (f'<ul class="ca-findings">{rows}</ul>' if rows else "")
        + f'<details class="ca-legend"><summary>What do these mean?</summary><ul>{legend}</ul></details></div>'
    )


def completion_html(view: CompletionView, prompt: str, *, show_execution: bool, show_static: bool) -> str:
    """One completion card. Line numbers continue the prompt's (a chat answer's code starts at 1), so they
    match the sandbox's error line."""
    first_line = view.first_line or prompt.count("\n") + 1
    highlight_line = view.error_line if show_execution else None
    parts = [f'<div class="ca-card" data-completion="{html.escape(view.label)}">']
    parts.append(f'<div class="ca-label">{html.escape(view.label)}</div>')
    if show_execution:
        parts.append(verdict_html(view))
    parts.append(code_html(view.text, first_line, highlight_line))
    if show_static:
        parts.append(static_html(view, first_line))
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
.ca-static { font-size: 12px; color: #57606a; margin-top: 4px; }
.ca-static ul { margin: 2px 0 2px 16px; }
.ca-static code { font-size: 11px; }
.ca-warn { color: #9a6700; font-weight: 600; }
.ca-quiet { color: #8c959f; }
.ca-legend summary { cursor: pointer; color: #8c959f; }
.ca-refused { border: 1px solid #cf222e; background: #ffebe9; color: #82071e; border-radius: 6px;
  padding: 6px 10px; font-weight: 600; }
kbd { border: 1px solid #aaa; border-radius: 3px; padding: 0 4px; font-size: 0.9em; }
"""


def page_css() -> str:
    return code_css() + CARD_CSS
