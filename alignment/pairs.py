"""Preference pairs ``{prompt, chosen, rejected, margin}`` for the reward model and DPO, straight from the DB.

Three sources (``PairSettings.source``):

* ``execution``: completions of one task ranked by their share of passing tests (the ``executions`` rows
  ``codealign score`` wrote). AceCoder's filter (Zeng et al. 2025): chosen passes >= ``min_chosen_pass``, the gap is
  >= ``min_gap``, and the rejected one passes something (> 0) unless ``rejected_may_fail_all``. The margin is
  the pass-rate gap.
* ``human``: annotator rankings. From the DB through the annotation export's own rules
  (``annotation_ui.export.collect_preferences``: consensus, flagged/skipped left out; margin = rank gap), or
  from a directory written by ``codealign export preferences --out DIR`` (``human_export_dir``).
* ``mixed``: both, human pairs first; an execution pair with the same (prompt, chosen, rejected) is dropped.

Guarantees: deterministic order for identical DB contents; identical completion texts count once per task (a
pair never has chosen == rejected); at most ``max_pairs_per_task`` execution pairs per task, spread round-robin over
the passing texts (each first paired with the worst admissible rejected one). No torch.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from codealign.config import ConfigError
from codealign.errors import UserError
from codealign.tasks.chat import task_messages
from reward.execution import pass_ratio


@dataclass
class PairSettings:
    source: Literal["execution", "human", "mixed"] = "execution"
    dataset: str = "basic"  # suite (Task.source) the pairs' tasks come from
    splits: list[str] = field(default_factory=lambda: ["train", "pool"])
    policies: list[str] = field(default_factory=list)  # only completions of these policy names (empty: all)
    min_chosen_pass: float = 0.8
    min_gap: float = 0.4
    rejected_may_fail_all: bool = False  # True: a rejected completion may pass 0 tests
    max_pairs_per_task: int = 4
    human_export_dir: str | None = None  # read pairs from an export instead of DB rankings
    human_consensus: Literal["none", "mean_rank", "majority", "unanimous"] = "majority"
    # Keep a human pair only when chosen and rejected got the same execution verdict (both pass or both
    # fail): execution already decides correctness; what people add is the judgment execution cannot make.
    # With source=mixed that leaves the pairs across verdicts to execution.
    human_within_verdict: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_chosen_pass <= 1.0:
            raise ConfigError(f"pairs.min_chosen_pass: must be in [0, 1], got {self.min_chosen_pass}")
        if not 0.0 < self.min_gap <= 1.0:
            raise ConfigError(f"pairs.min_gap: must be in (0, 1], got {self.min_gap}")
        if self.max_pairs_per_task < 1:
            raise ConfigError(f"pairs.max_pairs_per_task: must be >= 1, got {self.max_pairs_per_task}")


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: str
    rejected: str
    margin: float
    source: str  # execution | human
    task_id: str
    # chosen and rejected both passed or both did not (None: unknown, e.g. pairs read from an export file)
    same_verdict: bool | None = None
    # A chat task's conversation, set by build_pairs: what DPO and the reward model tokenize (``prompt`` is its
    # display text then). Left out of equality and hashing: it follows from the task.
    messages: list[dict[str, str]] | None = field(default=None, compare=False)

    @property
    def model_prompt(self) -> str | list[dict[str, str]]:
        """What the model reads before the answer: the conversation of a chat task, else the prompt."""
        return self.messages if self.messages is not None else self.prompt


@dataclass(frozen=True)
class ScoredCompletion:
    """One completion of a task with its pass rate (tests passed / tests run)."""

    text: str
    pass_ratio: float


def execution_pairs_for_task(
    prompt: str, task_id: str, completions: list[ScoredCompletion], settings: PairSettings
) -> list[PreferencePair]:
    """Pairs of one task under the AceCoder-style filter (pure function; see the module docstring)."""
    best: dict[str, float] = {}
    for (
        c
    ) in completions:  # identical texts: one candidate (their pass rates agree unless flaky; keep the max)
        best[c.text] = max(best.get(c.text, 0.0), c.pass_ratio)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
    chosen = [(t, p) for t, p in ranked if p >= settings.min_chosen_pass]
    combos = []  # (j, i, pair): the i-th chosen with its j-th worst admissible rejected
    for i, (text_c, p_c) in enumerate(chosen):
        rejected = [
            (t, p)
            for t, p in reversed(ranked)
            if p_c - p >= settings.min_gap - 1e-9 and (p > 0 or settings.rejected_may_fail_all)
        ]
        for j, (text_r, p_r) in enumerate(rejected):
            pair = PreferencePair(
                prompt,
                text_c,
                text_r,
                round(p_c - p_r, 6),
                "execution",
                task_id,
                (p_c == 1.0) == (p_r == 1.0),
            )
            combos.append((j, i, pair))
    # Round-robin: every chosen text gets its worst rejected before any gets a second one.
    return [pair for _, _, pair in sorted(combos, key=lambda c: c[:2])[: settings.max_pairs_per_task]]


def execution_pairs(settings: PairSettings, db) -> list[PreferencePair]:
    from sqlalchemy import select

    from db.models import Completion, Execution, Policy, Task

    query = (
        select(
            Task.id,
            Task.task_id,
            Task.prompt,
            Completion.text,
            Execution.tests_passed,
            Execution.tests_total,
            Execution.verdict,
        )
        .join(Completion, Completion.task_id == Task.id)
        .join(Execution, Execution.completion_id == Completion.id)
        .where(Task.source == settings.dataset, Task.split.in_(settings.splits))
        .order_by(Task.id, Completion.id)
    )
    if settings.policies:
        query = query.join(Policy, Policy.id == Completion.policy_id).where(
            Policy.name.in_(settings.policies)
        )
    by_task: dict[int, tuple[str, str, list[ScoredCompletion]]] = {}
    with db.session() as session:
        for row_id, task_id, prompt, text, passed, total, verdict in session.execute(query):
            entry = by_task.setdefault(row_id, (task_id, prompt, []))
            entry[2].append(ScoredCompletion(text, pass_ratio(verdict, passed, total)))
    return [
        pair
        for task_id, prompt, completions in by_task.values()
        for pair in execution_pairs_for_task(prompt, task_id, completions, settings)
    ]


def human_pairs(settings: PairSettings, db) -> list[PreferencePair]:
    if settings.human_export_dir:
        return read_export(settings.human_export_dir)
    from sqlalchemy import select

    from annotation_ui.export import ExportConfig, collect_preferences
    from db.models import Completion, Execution, Policy

    pairs = []
    for split in settings.splits:
        export_cfg = ExportConfig(consensus=settings.human_consensus, source=settings.dataset, split=split)
        with db.session() as session:
            rows = collect_preferences(session, export_cfg)
            ids = {r["chosen_completion_id"] for r in rows} | {r["rejected_completion_id"] for r in rows}
            passed = dict(
                session.execute(
                    select(Execution.completion_id, Execution.verdict == "passed").where(
                        Execution.completion_id.in_(ids)
                    )
                ).all()
            )
            if settings.policies:  # only rankings of those policies' completions
                owned = select(Completion.id).join(Policy, Policy.id == Completion.policy_id)
                mine = set(
                    session.scalars(owned.where(Completion.id.in_(ids), Policy.name.in_(settings.policies)))
                )
                rows = [r for r in rows if {r["chosen_completion_id"], r["rejected_completion_id"]} <= mine]
        for r in rows:
            c, rj = passed.get(r["chosen_completion_id"]), passed.get(r["rejected_completion_id"])
            same = None if c is None or rj is None else c == rj
            if settings.human_within_verdict and same is not True:
                continue
            pairs.append(
                PreferencePair(
                    r["prompt"], r["chosen"], r["rejected"], float(r["margin"]), "human", r["task_id"], same
                )
            )
    return pairs


def read_export(path: str | Path) -> list[PreferencePair]:
    """Pairs from ``codealign export preferences --out DIR`` (its ``preferences.jsonl``) or a JSONL file."""
    path = Path(path)
    jsonl = path / "preferences.jsonl" if path.is_dir() else path
    if not jsonl.is_file():
        raise UserError(
            f"pairs.human_export_dir: no preferences.jsonl in {path} (run `codealign export preferences`)"
        )
    pairs = []
    for n, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            pairs.append(
                PreferencePair(
                    row["prompt"],
                    row["chosen"],
                    row["rejected"],
                    float(row.get("margin", 0.0)),
                    "human",
                    str(row.get("task_id", "")),
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{jsonl}:{n}: not a preference row ({type(exc).__name__}: {exc})") from None
    return pairs


def build_pairs(settings: PairSettings, db) -> list[PreferencePair]:
    """The pairs ``settings`` select; a one-line error naming the filter when there are none."""
    pairs: list[PreferencePair] = []
    if settings.source in ("human", "mixed"):
        pairs += human_pairs(settings, db)
    if settings.source in ("execution", "mixed"):
        seen = {(p.prompt, p.chosen, p.rejected) for p in pairs}
        pairs += [p for p in execution_pairs(settings, db) if (p.prompt, p.chosen, p.rejected) not in seen]
    if not pairs:
        raise UserError(
            f"no {settings.source} preference pairs for suite '{settings.dataset}' split(s) "
            f"{','.join(settings.splits)}: sample and score completions first (codealign sample / score), "
            f"or loosen pairs.min_chosen_pass={settings.min_chosen_pass} / pairs.min_gap={settings.min_gap}"
        )
    return with_conversations(pairs, settings.dataset, db)


def with_conversations(pairs: list[PreferencePair], source: str, db) -> list[PreferencePair]:
    """``pairs`` with the conversation of every chat task of suite ``source`` attached (``messages``)."""
    from sqlalchemy import select

    from db.models import Task

    if not db.exists():
        return pairs
    with db.session() as session:
        metas = session.execute(
            select(Task.task_id, Task.meta).where(
                Task.source == source, Task.task_id.in_({p.task_id for p in pairs})
            )
        ).all()
    chats = {task_id: messages for task_id, meta in metas if (messages := task_messages(meta)) is not None}
    return [replace(p, messages=chats[p.task_id]) if p.task_id in chats else p for p in pairs]


def split_by_task(pairs: list[PreferencePair], eval_fraction: float, seed: int = 0):
    """(train, held_out): whole tasks go to one side (by a hash of task id and seed), so no prompt leaks."""
    if eval_fraction <= 0:
        return pairs, []
    by_task: dict[str, list[PreferencePair]] = defaultdict(list)
    for p in pairs:
        by_task[p.task_id or p.prompt].append(p)
    held = {
        key
        for key in by_task
        if int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < eval_fraction
    }
    if len(by_task) >= 2 and not held:  # tiny sets: hold out one task rather than none
        held = {min(by_task)}
    if held == set(by_task):
        held.discard(min(by_task))
    train = [p for key, ps in by_task.items() if key not in held for p in ps]
    evaluation = [p for key, ps in by_task.items() if key in held for p in ps]
    return train, evaluation


def to_dataset(pairs: list[PreferencePair], implicit_prompt: bool = False):
    """A ``datasets.Dataset``. ``implicit_prompt``: chosen/rejected carry the prompt (RewardTrainer's form).
    Pairs of chat tasks add a ``messages`` column (None for completion tasks)."""
    from datasets import Dataset

    rows = [
        {
            "prompt": p.prompt,
            "chosen": p.prompt + p.chosen if implicit_prompt else p.chosen,
            "rejected": p.prompt + p.rejected if implicit_prompt else p.rejected,
            "margin": p.margin,
        }
        for p in pairs
    ]
    if any(p.messages is not None for p in pairs):
        rows = [{**row, "messages": p.messages} for row, p in zip(rows, pairs)]
    dataset = Dataset.from_list(rows)
    return dataset.remove_columns("prompt") if implicit_prompt else dataset
