"""``codealign export preferences``: rankings -> pairwise preference data (HF ``datasets`` on disk + JSONL).

Raw rankings stay in the DB; pairs are derived here (as Argilla and Label Studio keep raw annotations). Within an item, every two completions with
different ranks make a pair, chosen = the better rank; ties give no pair; ``margin`` is the rank gap
(dense ranks, so 1 = adjacent). Across annotators of one item, ``consensus`` decides:

* ``none``: every ranking gives its own pairs (duplicates across annotators are kept, one per ranking);
* ``mean_rank``: one pair when the mean ranks differ; margin = mean rank gap;
* ``majority``: one pair when more than half of the item's annotators strictly prefer the same side;
* ``unanimous``: one pair only when every annotator strictly prefers the same side.

Provenance columns: ``ranking_ids`` and ``annotators`` that support the pair, plus item and completion ids.
Skipped answers are never used; flagged ones are left out unless ``exclude_flagged: false``.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from codealign.config import ConfigError
from codealign.errors import UserError
from db.models import Annotator, Completion, Ranking, RankingItem, Task

CONSENSUS_RULES = ("none", "mean_rank", "majority", "unanimous")


@dataclass
class ExportConfig:
    """Preference export settings (``configs/export_preferences.yaml``)."""

    consensus: Literal["none", "mean_rank", "majority", "unanimous"] = "majority"
    min_annotators: int = 1  # items with fewer (non-skipped) rankings are left out
    exclude_flagged: bool = True
    source: str | None = None  # only tasks of this suite
    split: str | None = None  # only tasks of this split

    def __post_init__(self) -> None:
        if self.min_annotators < 1:
            raise ConfigError(f"min_annotators: must be >= 1, got {self.min_annotators}")


@dataclass(frozen=True)
class RankingRecord:
    ranking_id: int
    annotator: str
    ranks: dict[int, int]  # completion id -> rank (1 = best)


@dataclass
class PairRecord:
    chosen_id: int
    rejected_id: int
    margin: float
    ranking_ids: list[int]
    annotators: list[str]


def _pairs_of_one(record: RankingRecord) -> list[PairRecord]:
    pairs = []
    for a, b in combinations(sorted(record.ranks), 2):
        gap = record.ranks[b] - record.ranks[a]
        if gap == 0:
            continue
        chosen, rejected = (a, b) if gap > 0 else (b, a)
        pairs.append(PairRecord(chosen, rejected, float(abs(gap)), [record.ranking_id], [record.annotator]))
    return pairs


def consensus_pairs(records: list[RankingRecord], rule: str, min_annotators: int = 1) -> list[PairRecord]:
    """Preference pairs of ONE item from its annotators' rankings under ``rule`` (see module doc)."""
    if rule not in CONSENSUS_RULES:
        raise UserError(f"consensus {rule!r}: must be one of {', '.join(CONSENSUS_RULES)}")
    if len(records) < min_annotators:
        return []
    if rule == "none":
        return [pair for record in records for pair in _pairs_of_one(record)]
    completions = sorted({c for r in records for c in r.ranks})
    pairs = []
    for a, b in combinations(completions, 2):
        judges = [r for r in records if a in r.ranks and b in r.ranks]
        if not judges:
            continue
        gaps = [r.ranks[b] - r.ranks[a] for r in judges]  # > 0: a is better
        mean_gap = sum(gaps) / len(gaps)
        if rule == "mean_rank":
            winner_is_a = mean_gap > 0 if mean_gap != 0 else None
            supporters = judges
        else:
            for_a = [r for r, g in zip(judges, gaps) if g > 0]
            for_b = [r for r, g in zip(judges, gaps) if g < 0]
            need = len(judges) if rule == "unanimous" else len(judges) // 2 + 1
            winner_is_a = True if len(for_a) >= need else False if len(for_b) >= need else None
            supporters = for_a if winner_is_a else for_b
        if winner_is_a is None:
            continue
        chosen, rejected = (a, b) if winner_is_a else (b, a)
        pairs.append(
            PairRecord(
                chosen,
                rejected,
                abs(mean_gap),
                [r.ranking_id for r in supporters],
                sorted({r.annotator for r in supporters}),
            )
        )
    return pairs


def collect_preferences(session: Session, cfg: ExportConfig) -> list[dict]:
    """Rows ``{prompt, chosen, rejected, margin, ...provenance}`` from the DB under ``cfg``."""
    query = (
        select(Ranking, RankingItem, Task)
        .join(RankingItem, RankingItem.id == Ranking.item_id)
        .join(Task, Task.id == RankingItem.task_id)
        .where(Ranking.skipped.is_(False))
        .options(selectinload(Ranking.entries))
        .order_by(Ranking.item_id, Ranking.id)
    )
    if cfg.exclude_flagged:
        query = query.where(Ranking.flagged.is_(False))
    if cfg.source is not None:
        query = query.where(Task.source == cfg.source)
    if cfg.split is not None:
        query = query.where(Task.split == cfg.split)
    names = dict(session.execute(select(Annotator.id, Annotator.name)).all())
    by_item: dict[int, tuple[Task, list[RankingRecord]]] = {}
    for ranking, item, task in session.execute(query):
        record = RankingRecord(
            ranking.id, names[ranking.annotator_id], {e.completion_id: e.rank for e in ranking.entries}
        )
        by_item.setdefault(item.id, (task, []))[1].append(record)
    rows = []
    texts: dict[int, str] = {}
    for item_id, (task, records) in by_item.items():
        pairs = consensus_pairs(records, cfg.consensus, cfg.min_annotators)
        needed = {c for p in pairs for c in (p.chosen_id, p.rejected_id)} - texts.keys()
        if needed:
            texts.update(
                session.execute(select(Completion.id, Completion.text).where(Completion.id.in_(needed))).all()
            )
        rows.extend(
            {
                "prompt": task.prompt,
                "chosen": texts[p.chosen_id],
                "rejected": texts[p.rejected_id],
                "margin": p.margin,
                "task_id": task.task_id,
                "item_id": item_id,
                "chosen_completion_id": p.chosen_id,
                "rejected_completion_id": p.rejected_id,
                "ranking_ids": p.ranking_ids,
                "annotators": p.annotators,
            }
            for p in pairs
        )
    return rows


@dataclass
class ExportResult:
    pairs: int
    items: int
    dataset_dir: Path
    jsonl_path: Path
    manifest_path: Path


def write_preferences(
    rows: list[dict], out_dir: str | Path, cfg: ExportConfig, created_by: str
) -> ExportResult:
    """Write ``out_dir/dataset`` (``datasets.load_from_disk``), ``preferences.jsonl`` and ``manifest.json``.

    Refuses a non-empty ``out_dir`` (an earlier export is never overwritten) and an empty ``rows``.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out}: exists and is not an empty directory; pick a new one")
    if not rows:
        raise UserError(
            f"no preference pairs to export under consensus={cfg.consensus!r}, min_annotators={cfg.min_annotators} "
            "(are there non-skipped rankings with different ranks?)"
        )
    import datasets

    out.mkdir(parents=True, exist_ok=True)
    jsonl_path = out / "preferences.jsonl"
    with jsonl_path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    dataset_dir = out / "dataset"
    datasets.Dataset.from_list(rows).save_to_disk(str(dataset_dir))
    manifest_path = out / "manifest.json"
    manifest = {
        "pairs": len(rows),
        "items": len({r["item_id"] for r in rows}),
        "config": asdict(cfg),
        "created_by": created_by,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "columns": list(rows[0]),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return ExportResult(len(rows), manifest["items"], dataset_dir, jsonl_path, manifest_path)
