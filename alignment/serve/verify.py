"""``"verify"`` in a completion request: each completion runs in the sandbox and its verdict comes back beside it.

The program is ``prompt + completion`` and the tests are the request's own or a stored task's
(``task_id``); the prompt travels as the third element of the sandbox request, so the tests take the prompt's
helpers from the prompt and only its entry point from the completion (:meth:`reward.pool.SandboxPool.run_batch`).
The verdict is the sandbox's (:mod:`reward.execution`), with the isolation level it ran under.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from alignment.serve.config import VerifyConfig
from alignment.serve.errors import bad_request
from alignment.serve.protocol import Verify
from reward.execution import ExecutionResult


@dataclass(frozen=True)
class Tests:
    tests: list[str]
    task_prompt: str | None = None  # a stored task's prompt: the request's prompt when it sends none


def resolve_tests(db, spec: Verify, cfg: VerifyConfig) -> Tests:
    """The tests ``spec`` names (a database read for ``task_id``: call it off the event loop)."""
    if not cfg.enabled:
        raise bad_request("verify is disabled on this server (verify.enabled: false)", param="verify")
    if spec.tests is not None:
        tests = Tests(list(spec.tests))
    else:
        from sqlalchemy import select

        from db.models import Task

        with db.session() as session:
            query = select(Task).where(Task.task_id == spec.task_id)
            if spec.source:
                query = query.where(Task.source == spec.source)
            rows = list(session.scalars(query))
            if not rows:
                where = f" in {spec.source!r}" if spec.source else ""
                raise bad_request(
                    f"verify.task_id: no task {spec.task_id!r}{where} in the database", "verify.task_id"
                )
            if len(rows) > 1:
                raise bad_request(
                    f"verify.task_id: {spec.task_id!r} exists in {sorted(r.source for r in rows)}; add verify.source",
                    "verify.source",
                )
            tests = Tests(list(rows[0].tests), rows[0].prompt)
    if len(tests.tests) > cfg.max_tests:
        raise bad_request(f"verify.tests: {len(tests.tests)} tests, at most {cfg.max_tests}", "verify.tests")
    return tests


def verdict(result: ExecutionResult) -> dict:
    return {
        "verdict": result.verdict,
        "passed": result.passed,
        "tests_passed": result.tests_passed,
        "tests_total": result.tests_total,
        "pass_ratio": result.pass_ratio,
        "error_type": result.error_type,
        "error_message": result.error_message or None,
        "duration_s": round(result.duration_s, 4),
        "isolation": result.isolation,
    }


async def run_verification(
    programs: list[tuple[str, str]], tests: list[str], cfg: VerifyConfig
) -> list[dict]:
    """One verdict per ``(prompt, completion)``, in order. The sandbox runs in a thread of its own."""
    from reward.pool import get_pool

    requests = [(prompt + text, tests, prompt) for prompt, text in programs]

    def run() -> list[ExecutionResult]:
        return get_pool(cfg.workers).run_batch(requests, timeout_s=cfg.timeout_s, memory_mb=cfg.memory_mb)

    return [verdict(r) for r in await asyncio.to_thread(run)]
