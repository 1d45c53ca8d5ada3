"""``AnnotateConfig``: everything the annotation app, the arena and ``codealign compare`` read.

Loaded with :func:`codealign.config.load_config` from ``configs/annotate.yaml`` (defaults < YAML < CLI
``key=value``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from codealign.config import ConfigError

SELECTION_POLICIES = ("random", "execution_ties_first", "reward_uncertainty")
MAX_K = 8  # the page has this many completion slots

DEFAULT_GUIDELINES = """\
Rank the completions from **best (1)** to **worst**. Equal ranks are ties.

1. Correct first: a solution that passes the tests beats one that fails.
2. Among correct solutions prefer the one a maintainer would rather read: clear names, no dead code,
   idiomatic Python, no needless complexity.
3. Skip (with a reason) when you cannot judge; flag (with a reason) a broken or unsafe task.
"""


@dataclass
class AnnotateConfig:
    """Annotation app, item building and arena settings."""

    k: int = 4  # completions per ranking item (2..8)
    selection_policy: Literal["random", "execution_ties_first", "reward_uncertainty"] = "execution_ties_first"
    required_annotations: int = 3  # distinct annotators per item
    overlap_share: float = 0.0  # share of new items that need overlap_annotations annotators (agreement)
    overlap_annotations: int = 3  # annotators for those items (the larger of this and required_annotations)
    claim_ttl_minutes: float = 30.0  # an unanswered claim returns to the pool after this
    source: str | None = None  # only build items from tasks of this suite (None: all)
    split: str | None = None  # only build items from tasks of this split (None: all)
    build_items_on_start: bool = True  # `codealign annotate` turns new scored completions into items
    show_execution: bool = True  # show tests passed / error beside each completion
    show_static: bool = True  # show ruff / complexity / bandit findings (off for blind readability judging)
    guidelines: str = DEFAULT_GUIDELINES  # Markdown shown on the annotator page
    guidelines_file: str | None = None  # Markdown file that replaces `guidelines`
    skip_reasons: list[str] = field(
        default_factory=lambda: [
            "cannot judge: unfamiliar topic",
            "completions are identical",
            "prompt is unclear",
            "too long to judge",
        ]
    )
    arena_split: str = "test"  # held-out tasks for the reviewer arena
    bootstrap_rounds: int = 200  # Bradley-Terry bootstrap resamples for the leaderboard
    seed: int = 0
    host: str = "127.0.0.1"  # bind address; put a TLS proxy in front for a team (docs/annotation.md)
    port: int = 7860
    root_path: str = ""  # URL prefix when served behind a proxy at a sub-path
    # Login back-off (annotation_ui.guard): failed logins allowed per moving window, then 429 + Retry-After.
    login_failures_per_account: str = "5/15 minutes"
    login_failures_per_address: str = "30/15 minutes"  # behind a proxy all users share one address
    max_streams_per_session: int = 8  # open pages (heartbeat streams) per logged-in session

    def __post_init__(self) -> None:
        if not 2 <= self.k <= MAX_K:
            raise ConfigError(f"k: must be between 2 and {MAX_K}, got {self.k}")
        if self.required_annotations < 1:
            raise ConfigError(f"required_annotations: must be >= 1, got {self.required_annotations}")
        if not 0.0 <= self.overlap_share <= 1.0:
            raise ConfigError(f"overlap_share: must be from 0 to 1, got {self.overlap_share}")
        if self.overlap_annotations < 2:
            raise ConfigError(f"overlap_annotations: must be >= 2, got {self.overlap_annotations}")
        if self.claim_ttl_minutes <= 0:
            raise ConfigError(f"claim_ttl_minutes: must be > 0, got {self.claim_ttl_minutes}")
        if self.bootstrap_rounds < 0:
            raise ConfigError(f"bootstrap_rounds: must be >= 0, got {self.bootstrap_rounds}")
        if self.max_streams_per_session < 1:
            raise ConfigError(f"max_streams_per_session: must be >= 1, got {self.max_streams_per_session}")
        from annotation_ui.guard import parse_limit

        parse_limit(self.login_failures_per_account, "login_failures_per_account")
        parse_limit(self.login_failures_per_address, "login_failures_per_address")
        if not self.skip_reasons:
            raise ConfigError("skip_reasons: give at least one reason")

    def guidelines_markdown(self) -> str:
        if self.guidelines_file is None:
            return self.guidelines
        path = Path(self.guidelines_file)
        if not path.is_file():
            raise ConfigError(f"guidelines_file: no such file: {path}")
        return path.read_text(encoding="utf-8")
