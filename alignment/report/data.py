"""What the report shows, read from the database in one transaction (pure data: easy to test and to plot)."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignment.report.stats import Estimate, bootstrap_mean, paired_difference, pass1_per_task, wilson

CURVE_KEYS = ("loss", "reward", "rewards/accuracies", "eval_accuracy", "kl", "objective/kl")
# The mean training reward each RL stage logs (both the weighted sum of its reward functions, before any KL).
RL_REWARD_KEYS = {"grpo": "reward", "ppo": "objective/scores"}
REWARD_MODEL_STAGES = ("reward_model", "reward")  # "reward": runs recorded before the stage was renamed
BUDGET_TOLERANCE = 0.10  # budgets further apart than this (relative to the smaller) are flagged
# Sort order of policy stages: where training starts, then the reward model, the aligned policies, the control.
_STAGE_RANK = {"base": 0, "external": 0, "sft": 1, "reward_model": 2, "reward": 2, "control": 4}
_DATA_OF_STAGE = {"sft": "reference solutions of", "grpo": "prompts of", "ppo": "prompts of"}


def stage_rank(stage: str) -> int:
    return _STAGE_RANK.get(stage, 3)


@dataclass(frozen=True)
class Setup:
    """What makes two ``EvalResult`` rows comparable: same tasks, same sampling, same k set."""

    dataset: str
    split: str
    num_tasks: int
    n: int
    temperature: float | None
    top_p: float | None
    max_new_tokens: int | None
    seed: int | None
    ks: tuple[int, ...]

    @classmethod
    def of(cls, result) -> Setup:
        params = result.sampling_params or {}
        return cls(
            result.dataset,
            result.split,
            result.num_tasks,
            result.n_samples,
            params.get("temperature"),
            params.get("top_p"),
            params.get("max_new_tokens"),
            params.get("seed"),
            tuple(sorted(int(key.split("@")[1]) for key in result.pass_at_k)),
        )

    def label(self) -> str:
        """``basic/test · 200 tasks · n = 8 per task · T = 0.8 · top-p 1 · ≤ 96 new tokens · seed 0 · k ∈ {1, 4}``"""
        parts = [f"{self.dataset}/{self.split}", f"{self.num_tasks} tasks", f"n = {self.n} per task"]
        if self.temperature is not None:
            parts.append(f"T = {self.temperature:g}" + (" (greedy)" if self.temperature == 0 else ""))
        if self.top_p is not None:
            parts.append(f"top-p {self.top_p:g}")
        if self.max_new_tokens is not None:
            parts.append(f"≤ {self.max_new_tokens} new tokens")
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        if (self.temperature, self.top_p, self.max_new_tokens, self.seed) == (None,) * 4:
            parts.append("sampling not recorded")
        return " · ".join([*parts, "k ∈ {" + ", ".join(map(str, self.ks)) + "}"])


@dataclass
class Delta:
    """Paired pass@1 difference (fractions) against one other policy of the same setup."""

    against: str
    estimate: Estimate
    tasks: int


@dataclass
class ResultRow:
    policy: str
    stage: str
    parent: str | None
    pass_at_k: dict[int, float]
    pass1: Estimate | None  # with a bootstrap interval where per-task counts are known
    vs_parent: Delta | None
    vs_control: Delta | None
    evaluated_at: dt.datetime
    result_id: int
    # EvalResult.metrics: secondary signals (bleu, exact_match, perplexity, readability); {} before 0004
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def is_control(self) -> bool:
        return self.stage == "control"


@dataclass
class Comparison:
    setup: Setup
    rows: list[ResultRow]


@dataclass
class LineageRow:
    policy: str | None  # None: a run that produced no policy (failed, still running)
    stage: str
    parent: str | None
    run: str | None  # "sft #3"
    status: str | None
    data: str
    started_at: dt.datetime | None
    wall_s: float | None  # finished_at - started_at
    train_s: float | None  # the trainer's own train_runtime
    steps: int | None


@dataclass
class ReportData:
    comparisons: list[Comparison] = field(default_factory=list)  # one per setup, the broadest first
    lineage: list[LineageRow] = field(default_factory=list)
    # (run stage, metric) -> curve label -> points: one panel each, so no panel mixes scales
    curves: dict[tuple[str, str], dict[str, list[tuple[float, float]]]] = field(default_factory=dict)
    # run, policy, parent, accuracy (Estimate, Wilson over held-out pairs), train_accuracy, pairs, held_out, seconds
    reward_model: list[dict[str, Any]] = field(default_factory=list)
    verdicts: dict[str, dict[str, int]] = field(default_factory=dict)  # policy -> verdict -> count
    static_means: dict[str, dict[str, float]] = field(default_factory=dict)  # policy -> signal -> mean
    # run, method, policy, parent, setup, budget, seconds, pass1, parent_pass1 (None where unknown)
    budget: list[dict[str, Any]] = field(default_factory=list)
    # run -> (completions sampled so far, mean training reward)
    reward_by_budget: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


# -------------------------------------------------------------------------------------------- reading
def _history(run) -> list[dict[str, Any]]:
    history = (run.metrics or {}).get("log_history")
    if history:
        return history
    state = Path(run.output_dir or "") / "trainer_state.json"
    if state.is_file():
        return json.loads(state.read_text()).get("log_history", [])
    return []


def per_task_counts(result) -> dict[str, tuple[int, int]] | None:
    """task_id -> (n, c) of an ``EvalResult``: the stored column, else its results file when that still
    matches the row (the next eval of the same policy and split rewrites the file), else None."""
    if result.per_task:
        return {task: (int(n), int(c)) for task, (n, c) in result.per_task.items()}
    if not result.samples_path:
        return None
    path = Path(result.samples_path + "_results.jsonl")
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    try:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line)
                    counts[row["task_id"]][0] += 1
                    counts[row["task_id"]][1] += bool(row["passed"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    pass1 = result.pass_at_k.get("pass@1")
    if (
        len(counts) != result.num_tasks
        or any(n != result.n_samples for n, _ in counts.values())
        or pass1 is None
        or abs(sum(c / n for n, c in counts.values()) / len(counts) - pass1) > 1e-9
    ):
        return None
    return {task: (n, c) for task, (n, c) in counts.items()}


def _depth(policy, policies: dict) -> int:
    depth, seen = 0, set()
    while policy is not None and policy.parent_id in policies and policy.id not in seen:
        seen.add(policy.id)
        policy, depth = policies[policy.parent_id], depth + 1
    return depth


def policy_order(policy, policies: dict) -> tuple:
    """Base and SFT first, then the aligned policies (by lineage depth), the control last."""
    return stage_rank(policy.stage), _depth(policy, policies), policy.id


def collect(session) -> ReportData:
    from sqlalchemy import select

    from db.models import Completion, EvalResult, Execution, Policy, StaticScore, TrainingRun

    data = ReportData()
    policies = {p.id: p for p in session.scalars(select(Policy))}
    runs = list(session.scalars(select(TrainingRun).order_by(TrainingRun.id)))
    data.comparisons = _comparisons(session.scalars(select(EvalResult).order_by(EvalResult.id)), policies)
    data.lineage = _lineage(policies, runs)
    for run in runs:
        _collect_run(data, run, policies)

    def name(policy_id) -> str:
        return policies[policy_id].name if policy_id in policies else "?"

    rows = session.execute(
        select(Completion.policy_id, Execution.verdict).join(
            Execution, Execution.completion_id == Completion.id
        )
    )
    for policy_id, verdict in rows:
        counts = data.verdicts.setdefault(name(policy_id), {})
        counts[verdict] = counts.get(verdict, 0) + 1
    sums: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    rows = session.execute(
        select(Completion.policy_id, StaticScore.scores).join(
            StaticScore, StaticScore.completion_id == Completion.id
        )
    )
    for policy_id, scores in rows:
        for signal, value in (scores or {}).items():
            if isinstance(value, (int, float)):
                sums[name(policy_id)][signal].append(float(value))
    data.static_means = {p: {s: sum(v) / len(v) for s, v in signals.items()} for p, signals in sums.items()}
    return data


def _comparisons(results, policies: dict) -> list[Comparison]:
    """One comparison per setup; within it the latest result per policy counts."""
    latest: dict[Setup, dict[int, Any]] = defaultdict(dict)
    for result in results:  # in id order: a later result of a policy replaces an earlier one
        if result.policy_id in policies:
            latest[Setup.of(result)][result.policy_id] = result
    comparisons = [_comparison(setup, by_policy, policies) for setup, by_policy in latest.items()]
    # the setup most policies share first; then the larger evaluation; then the most recent
    comparisons.sort(
        key=lambda c: (-len(c.rows), -c.setup.n * c.setup.num_tasks, -max(r.result_id for r in c.rows))
    )
    return comparisons


def _comparison(setup: Setup, by_policy: dict[int, Any], policies: dict) -> Comparison:
    pass1 = {}
    for pid, result in by_policy.items():
        counts = per_task_counts(result)
        pass1[pid] = pass1_per_task(counts) if counts else None

    def delta(pid: int, other: int | None) -> Delta | None:
        if other is None:
            return None
        if pass1[pid] and pass1[other]:
            paired = paired_difference(pass1[pid], pass1[other])
            if paired is not None:
                return Delta(policies[other].name, *paired)
        a, b = (by_policy[p].pass_at_k.get("pass@1") for p in (pid, other))
        if a is None or b is None:
            return None
        return Delta(
            policies[other].name, Estimate(a - b), setup.num_tasks
        )  # no per-task counts: no interval

    rows = []
    for pid in sorted(by_policy, key=lambda p: policy_order(policies[p], policies)):
        policy, result = policies[pid], by_policy[pid]
        parent = policies.get(policy.parent_id)
        stored = result.pass_at_k.get("pass@1")
        estimate = None if stored is None else Estimate(stored)
        if pass1[pid] and stored is not None:
            interval = bootstrap_mean(list(pass1[pid].values()))
            estimate = Estimate(stored, interval.low, interval.high)
        rows.append(
            ResultRow(
                policy=policy.name,
                stage=policy.stage,
                parent=parent.name if parent else None,
                pass_at_k={int(k.split("@")[1]): float(v) for k, v in result.pass_at_k.items()},
                pass1=estimate,
                vs_parent=delta(pid, parent.id if parent and parent.id in by_policy else None),
                vs_control=delta(pid, _control_of(policy, by_policy, policies)),
                evaluated_at=result.created_at,
                result_id=result.id,
                metrics=dict(result.metrics or {}),
            )
        )
    return Comparison(setup, rows)


def _control_of(policy, evaluated: dict, policies: dict) -> int | None:
    """The latest evaluated sibling (same parent) whose stage is ``control``; None for a control itself."""
    if policy.stage == "control" or policy.parent_id is None:
        return None
    controls = [
        pid
        for pid in evaluated
        if pid != policy.id
        and policies[pid].stage == "control"
        and policies[pid].parent_id == policy.parent_id
    ]
    return max(controls) if controls else None


def describe_data(run) -> str:
    """What a run trained on, in words, from its config and metrics."""
    cfg, metrics = run.config or {}, run.metrics or {}
    parts = []
    tasks = cfg.get("tasks")
    if isinstance(tasks, dict) and not isinstance(cfg.get("pairs"), dict):
        text = f"{_DATA_OF_STAGE.get(run.stage, 'tasks of')} {tasks.get('dataset', '?')}/"
        text += "+".join(tasks.get("splits") or ["?"])
        if tasks.get("families"):
            text += f" ({', '.join(tasks['families'])})"
        if tasks.get("limit"):
            text += f", first {tasks['limit']}"
        parts.append(text)
    pairs = cfg.get("pairs")
    if isinstance(pairs, dict):
        text = f"{pairs.get('source', '?')} pairs of {pairs.get('dataset', '?')}/"
        text += "+".join(pairs.get("splits") or ["?"])
        if pairs.get("policies"):
            text += f" from {', '.join(pairs['policies'])}'s samples"
        parts.append(text)
    if cfg.get("reward_funcs"):
        parts.append(f"reward: {' + '.join(cfg['reward_funcs'])}")
    for key, noun in (
        ("num_examples", "examples"),
        ("num_pairs", "pairs"),
        ("num_held_out", "held out"),
        ("num_prompts", "prompts"),
        ("num_completions", "completions sampled"),
    ):
        if isinstance(metrics.get(key), (int, float)):
            parts.append(f"{metrics[key]:,} {noun}")
    return "; ".join(parts) or "—"


def _lineage(policies: dict, runs: list) -> list[LineageRow]:
    by_run = {p.training_run_id: p for p in policies.values() if p.training_run_id is not None}
    runs_by_id = {run.id: run for run in runs}
    rows = []
    for policy in sorted(policies.values(), key=lambda p: policy_order(p, policies)):
        run = runs_by_id.get(policy.training_run_id)
        parent = policies.get(policy.parent_id)
        rows.append(_lineage_row(policy.name, policy.stage, parent.name if parent else None, run))
    for run in runs:  # runs that left no policy: a reviewer should see what failed or is still going
        if run.id not in by_run:
            parent = policies.get(run.base_policy_id)
            rows.append(_lineage_row(None, run.stage, parent.name if parent else None, run))
    return rows


def _lineage_row(policy: str | None, stage: str, parent: str | None, run) -> LineageRow:
    if run is None:
        return LineageRow(policy, stage, parent, None, None, "—", None, None, None, None)
    metrics = run.metrics or {}
    wall = (run.finished_at - run.started_at).total_seconds() if run.finished_at and run.started_at else None
    train_s = metrics.get("train_runtime")
    steps = metrics.get("global_step")
    return LineageRow(
        policy,
        stage,
        parent,
        f"{run.stage} #{run.id}",
        run.status,
        describe_data(run),
        run.started_at,
        wall,
        float(train_s) if isinstance(train_s, (int, float)) else None,
        int(steps) if isinstance(steps, (int, float)) else None,
    )


def _collect_run(data: ReportData, run, policies: dict) -> None:
    label = f"{run.stage} #{run.id}"
    policy = next((p for p in policies.values() if p.training_run_id == run.id), None)
    curve_label = f"{policy.name} ({label})" if policy else label
    for entry in _history(run):
        step = entry.get("step", entry.get("epoch", 0))
        for key in CURVE_KEYS:
            if isinstance(entry.get(key), (int, float)):
                panel = data.curves.setdefault((run.stage, key), {})
                panel.setdefault(curve_label, []).append((float(step), float(entry[key])))
    if run.stage in REWARD_MODEL_STAGES and run.status == "completed":
        _collect_reward_model(data, run, label, policy, policies)
    if run.stage in RL_REWARD_KEYS and run.status == "completed":
        _collect_budget(data, run, label, policy, policies)


def _collect_reward_model(data: ReportData, run, label: str, policy, policies: dict) -> None:
    metrics = run.metrics or {}
    # held_out_accuracy is what alignment.reward_model logs; the other two are older runs' names
    for key in ("held_out_accuracy", "eval_accuracy", "heldout_pairwise_accuracy"):
        if isinstance(metrics.get(key), (int, float)):
            accuracy = float(metrics[key])
            break
    else:
        return
    held_out = metrics.get("num_held_out")
    parent = policies.get(policy.parent_id if policy else run.base_policy_id)
    data.reward_model.append(
        {
            "run": label,
            "policy": policy.name if policy else None,
            "parent": parent.name if parent else None,
            "accuracy": wilson(accuracy, int(held_out)) if isinstance(held_out, int) else Estimate(accuracy),
            "train_accuracy": metrics.get("train_accuracy"),
            "pairs": metrics.get("num_pairs"),
            "held_out": held_out,
            "seconds": metrics.get("train_runtime"),
            "same_verdict": metrics.get("held_out_accuracy_same_verdict"),
            "different_verdict": metrics.get("held_out_accuracy_different_verdict"),
        }
    )


def _collect_budget(data: ReportData, run, label: str, policy, policies: dict) -> None:
    """One row per setup the run's policy was evaluated in (one row without pass@1 when none)."""
    metrics = run.metrics or {}
    budget = metrics.get("num_completions")  # absent in runs recorded before it was logged
    parent = policies.get(policy.parent_id if policy else run.base_policy_id)
    evaluated = [
        (c.setup, rows)
        for c in data.comparisons
        if policy and (rows := {r.policy: r for r in c.rows}) and policy.name in rows
    ]
    for setup, rows in evaluated or [(None, {})]:
        mine, theirs = rows.get(policy.name if policy else ""), rows.get(parent.name if parent else "")
        data.budget.append(
            {
                "run": label,
                "method": run.stage,
                "policy": policy.name if policy else "?",
                "parent": parent.name if parent else "?",
                "setup": setup,
                "budget": budget,
                "seconds": metrics.get("train_runtime"),
                "pass1": mine.pass_at_k.get(1) if mine else None,
                "parent_pass1": theirs.pass_at_k.get(1) if theirs else None,
            }
        )

    key = RL_REWARD_KEYS[run.stage]
    per_step = None  # entries logged before num_completions was: the budget grows linearly with the step
    if isinstance(budget, (int, float)) and metrics.get("global_step"):
        per_step = budget / metrics["global_step"]
    points = []
    for entry in _history(run):
        done = entry.get("num_completions", None if per_step is None else entry.get("step", 0) * per_step)
        if done is not None and isinstance(entry.get(key), (int, float)):
            points.append((float(done), float(entry[key])))
    if points:
        data.reward_by_budget[label] = points


def budget_note(rows: list[dict[str, Any]]) -> str:
    """``budgets differ: ...`` for every PPO/GRPO pair whose sample budgets differ by more than the tolerance."""
    budgets = {(r["method"], r["run"]): r["budget"] for r in rows if isinstance(r["budget"], (int, float))}
    pairs = [(p, g) for p in budgets if p[0] == "ppo" for g in budgets if g[0] == "grpo"]
    apart = [
        f"{p[1]} {budgets[p]:,} vs {g[1]} {budgets[g]:,}"
        for p, g in pairs
        if max(budgets[p], budgets[g]) > (1 + BUDGET_TOLERANCE) * min(budgets[p], budgets[g])
    ]
    return f"budgets differ: {'; '.join(apart)} completions" if apart else ""
