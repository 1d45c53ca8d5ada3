"""K completions per task from a policy, stored in the DB with lineage and params (``codealign sample``).

``policy`` is a registered policy name or a model directory (an unknown directory is registered once as an
``external`` policy, so every completion has a policy row). Completions are keyed by (task, policy,
sampling_key, sample_index); ``sampling_key`` hashes the sampling parameters, seed included, and the policy's
training run, so a policy name whose checkpoint was retrained in place never reuses the old weights' samples.

Guarantees: resumable — tasks are sampled in chunks, each chunk committed in one transaction, and a rerun
with the same parameters only samples the (task, index) pairs that are missing; nothing is ever sampled twice
under one key. Non-guarantee: after an interruption the resumed samples are valid draws but not bit-identical
to those an uninterrupted run would have produced (batches differ, so random draws differ).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from alignment.generation import SamplingParams
from alignment.model_dir import check_model_dir
from codealign.errors import UserError

TASK_CHUNK = 64  # tasks per generate call and per transaction


@dataclass
class SampleResult:
    """What one ``sample_to_db`` call did. ``completion_ids[task_id]`` lists ids by sample index."""

    policy_id: int
    policy_name: str
    checkpoint_path: str
    sampling_key: str
    tasks: int
    created: int
    reused: int
    completion_ids: dict[str, list[int]] = field(default_factory=dict)


def resolve_policy(session, policy: str, created_by: str):
    """The ``Policy`` row for a name or a model directory (registered as ``external`` if unknown)."""
    from sqlalchemy import select

    from db.models import Policy

    row = session.scalars(select(Policy).where(Policy.name == policy)).first()
    if row is not None:
        check_model_dir(row.checkpoint_path, f"--policy {policy}")  # moved or deleted since it was registered
        return row
    path = Path(policy)
    if not path.exists():
        raise UserError(f"--policy: '{policy}' is neither a registered policy name nor a model directory")
    check_model_dir(path, "--policy")
    from alignment.runs import policy_for_checkpoint

    return policy_for_checkpoint(session, path, created_by)


def _existing(session, task_row_ids: list[int], policy_id: int, key: str) -> dict[int, dict[int, int]]:
    """task row id -> {sample_index: completion id} already stored under ``key``."""
    from sqlalchemy import select

    from db.models import Completion

    found: dict[int, dict[int, int]] = {}
    rows = session.execute(
        select(Completion.task_id, Completion.sample_index, Completion.id).where(
            Completion.policy_id == policy_id,
            Completion.sampling_key == key,
            Completion.task_id.in_(task_row_ids),
        )
    )
    for task_id, index, completion_id in rows:
        found.setdefault(task_id, {})[index] = completion_id
    return found


@dataclass
class SampleConfig:
    """What ``codealign sample`` does; its flags set these fields (``--k`` -> ``k``, ``--temperature`` ->
    ``sampling.temperature``, ...), a ``--config`` YAML may set any of them."""

    policy: str = ""  # registered policy name or model directory
    source: str = "basic"  # task suite
    split: str = "train"  # train | test | pool
    k: int = 4  # completions per task
    limit: int | None = None  # only the first N tasks (by id)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    batch_size: int = 32  # sequences per generate call

    def __post_init__(self) -> None:
        if self.k < 1:
            raise UserError(f"--k must be positive, got {self.k}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be positive, got {self.limit}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be positive, got {self.batch_size}")


def sample_to_db(
    db,
    policy: str,
    source: str = "basic",
    split: str = "train",
    k: int = 4,
    params: SamplingParams | None = None,
    limit: int | None = None,
    batch_size: int = 32,
    created_by: str | None = None,
    progress: bool = True,
    task_ids: list[str] | None = None,
) -> SampleResult:
    """Ensure ``k`` completions per task of ``source``/``split`` exist; see the module docstring.

    Tasks: those named in ``task_ids`` if given, else all of the split; then the first ``limit`` by row id.
    """
    from sqlalchemy import select
    from tqdm.auto import tqdm

    from alignment.generation import generate, load_policy
    from codealign.provenance import cli_actor
    from codealign.tasks.chat import task_messages
    from db.models import Completion, Task

    if k < 1:
        raise UserError(f"--k must be positive, got {k}")
    params = params or SamplingParams()
    created_by = created_by or cli_actor()
    with db.session() as session:
        row = resolve_policy(session, policy, created_by)
        policy_id, policy_name, checkpoint = row.id, row.name, row.checkpoint_path
        stored, key = params.stored(row.training_run_id), params.key_for(row.training_run_id)
        query = select(Task.id, Task.task_id, Task.prompt, Task.meta).where(
            Task.source == source, Task.split == split
        )
        if task_ids is not None:
            query = query.where(Task.task_id.in_(task_ids))
        tasks = session.execute(query.order_by(Task.id).limit(limit)).all()
    if not tasks:
        raise UserError(
            f"no '{source}' tasks in split '{split}'; run `codealign tasks import --suite {source}`"
        )

    model = None
    result = SampleResult(policy_id, policy_name, checkpoint, key, len(tasks), 0, 0)
    bar = tqdm(total=len(tasks) * k, desc=f"sample {policy_name}", unit="completion", disable=not progress)
    for start in range(0, len(tasks), TASK_CHUNK):
        chunk = tasks[start : start + TASK_CHUNK]
        with db.session() as session:
            done = _existing(session, [t.id for t in chunk], policy_id, key)
        todo = [t for t in chunk if len(done.get(t.id, {})) < k]
        new_rows: list[Completion] = []
        if todo:
            model = model or load_policy(checkpoint)
            texts = generate(
                model,
                [task_messages(t.meta) or t.prompt for t in todo],  # a chat task's conversation
                n=k,
                temperature=params.temperature,
                top_p=params.top_p,
                max_new_tokens=params.max_new_tokens,
                seed=params.seed + start,
                batch_size=batch_size,
                on_batch=bar.update,
            )
            for task, samples in zip(todo, texts):
                have = done.get(task.id, {})
                new_rows += [
                    Completion(
                        task_id=task.id,
                        policy_id=policy_id,
                        text=text,
                        sampling_params=stored,
                        sampling_key=key,
                        sample_index=index,
                        created_by=created_by,
                    )
                    for index, text in enumerate(samples)
                    if index not in have
                ]
            with db.session() as session:
                session.add_all(new_rows)
                session.flush()
                for completion in new_rows:
                    done.setdefault(completion.task_id, {})[completion.sample_index] = completion.id
        result.created += len(new_rows)
        result.reused += sum(min(len(done.get(t.id, {})), k) for t in chunk) - len(new_rows)
        for task in chunk:
            result.completion_ids[task.task_id] = [done[task.id][i] for i in sorted(done[task.id]) if i < k]
        bar.update((len(chunk) - len(todo)) * k)  # generated ones were counted batch by batch
    bar.close()
    return result
