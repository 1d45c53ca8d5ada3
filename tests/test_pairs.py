"""Preference pairs: the AceCoder filter by hand, pairs from the DB (execution, human, mixed), held-out split."""

from __future__ import annotations

import json

import pytest
from _train_helpers import seed_scored_tasks

from alignment.pairs import (
    PairSettings,
    PreferencePair,
    ScoredCompletion,
    build_pairs,
    execution_pairs_for_task,
    read_export,
    split_by_task,
    to_dataset,
)
from codealign.config import ConfigError
from codealign.errors import UserError
from db.models import Annotator, Completion, Ranking, RankingEntry, RankingItem, Task
from db.session import session_scope


def _pairs(scores, **settings):
    completions = [ScoredCompletion(text, rate) for text, rate in scores]
    return [
        (p.chosen, p.rejected, p.margin)
        for p in execution_pairs_for_task("P", "t1", completions, PairSettings(**settings))
    ]


def test_acecoder_filter_by_hand():
    scores = [("a", 1.0), ("b", 0.8), ("c", 0.6), ("d", 0.2), ("e", 0.0)]
    # chosen >= 0.8; gap >= 0.4; rejected > 0: a->d (0.8), a->c (0.4), b->d (0.6); e fails everything
    assert _pairs(scores, max_pairs_per_task=10) == [("a", "d", 0.8), ("b", "d", 0.6), ("a", "c", 0.4)]
    assert _pairs(scores, max_pairs_per_task=10, rejected_may_fail_all=True)[:2] == [
        ("a", "e", 1.0),
        ("b", "e", 0.8),
    ]
    assert _pairs(scores, max_pairs_per_task=2) == [
        ("a", "d", 0.8),
        ("b", "d", 0.6),
    ]  # each chosen used once first
    assert _pairs(scores, min_chosen_pass=1.0, min_gap=0.9, rejected_may_fail_all=True) == [("a", "e", 1.0)]


def test_duplicate_texts_count_once_and_never_pair_with_themselves():
    scores = [("same", 1.0), ("same", 1.0), ("same", 0.2), ("bad", 0.2)]
    assert _pairs(scores, max_pairs_per_task=10) == [("same", "bad", 0.8)]
    assert _pairs([("x", 1.0), ("y", 0.9)]) == []  # gap too small


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="pairs.min_gap"):
        PairSettings(min_gap=0)
    with pytest.raises(ConfigError, match="pairs.max_pairs_per_task"):
        PairSettings(max_pairs_per_task=0)


def test_execution_pairs_from_the_db(db, db_url):
    task_ids = seed_scored_tasks(db_url, n_tasks=5)
    pairs = build_pairs(PairSettings(splits=["train"]), db)
    # per task: full pass (5/5) vs partial (3/5); the 0/5 one is excluded because it passes nothing
    assert [p.task_id for p in pairs] == task_ids
    assert all(p.margin == pytest.approx(0.4) and p.source == "execution" for p in pairs)
    assert all(p.rejected == "    x = x\n" + p.chosen for p in pairs)
    loose = build_pairs(PairSettings(splits=["train"], rejected_may_fail_all=True), db)
    assert len(loose) == 10 and {p.rejected for p in loose} >= {"    return None\n"}
    assert build_pairs(PairSettings(splits=["train"], policies=["sampler"]), db) == pairs
    with pytest.raises(UserError, match="no execution preference pairs.*split\\(s\\) pool"):
        build_pairs(PairSettings(splits=["pool"]), db)
    with pytest.raises(UserError, match="no execution preference pairs"):
        build_pairs(PairSettings(splits=["train"], policies=["someone-else"]), db)


def _rank(db_url, ranks_by_annotator):
    """One ranking item over the first task's three completions; ranks listed per annotator."""
    with session_scope(db_url) as s:
        task = s.query(Task).order_by(Task.id).first()
        completions = s.query(Completion).filter_by(task_id=task.id).order_by(Completion.id).all()
        ids = [c.id for c in completions]
        item = RankingItem(task_id=task.id, completion_ids=ids, created_by="cli:t")
        s.add(item)
        s.flush()
        for name, ranks in ranks_by_annotator.items():
            who = Annotator(name=name, password_hash="x", created_by="cli:t")
            s.add(who)
            s.flush()
            ranking = Ranking(
                item_id=item.id, annotator_id=who.id, display_order=ids, created_by=f"annotator:{name}"
            )
            ranking.entries = [RankingEntry(completion_id=c, rank=r) for c, r in zip(ids, ranks)]
            s.add(ranking)
        return task.prompt, [c.text for c in completions]


def test_human_pairs_from_db_rankings_and_mixed(db, db_url):
    seed_scored_tasks(db_url, n_tasks=2)
    # the annotators prefer the "return None" completion (index 2) over the rest: humans may disagree with tests
    prompt, texts = _rank(db_url, {"ann": [2, 3, 1], "bob": [2, 3, 1]})
    human = build_pairs(PairSettings(source="human", splits=["train"]), db)
    assert {(p.chosen, p.rejected, p.margin) for p in human} == {
        (texts[2], texts[0], 1.0),
        (texts[2], texts[1], 2.0),
        (texts[0], texts[1], 1.0),
    }
    assert all(p.prompt == prompt and p.source == "human" for p in human)
    mixed = build_pairs(PairSettings(source="mixed", splits=["train"]), db)
    assert mixed[: len(human)] == human
    # the execution pair (texts[0] over texts[1]) duplicates a human one: kept once, as human
    assert len(mixed) == len(human) + 1 and mixed[-1].source == "execution"


def test_human_pairs_from_an_export_directory(db, tmp_path, db_url):
    rows = [
        {"prompt": "p", "chosen": "a", "rejected": "b", "margin": 2.0, "task_id": "t"},
        {"prompt": "q", "chosen": "c", "rejected": "d"},
    ]
    (tmp_path / "preferences.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pairs = build_pairs(PairSettings(source="human", human_export_dir=str(tmp_path)), db)
    assert pairs == [
        PreferencePair("p", "a", "b", 2.0, "human", "t"),
        PreferencePair("q", "c", "d", 0.0, "human", ""),
    ]
    (tmp_path / "bad.jsonl").write_text(json.dumps(rows[0]) + '\n{"prompt": "x"}\n')
    with pytest.raises(UserError, match="bad.jsonl:2: not a preference row"):
        read_export(tmp_path / "bad.jsonl")
    with pytest.raises(UserError, match="no preferences.jsonl"):
        read_export(tmp_path / "nowhere")


def test_split_by_task_keeps_tasks_whole():
    pairs = [
        PreferencePair(f"p{t}", f"c{i}", f"r{i}", 1.0, "execution", f"t{t}")
        for t in range(20)
        for i in range(3)
    ]
    train, held = split_by_task(pairs, 0.25, seed=1)
    assert len(train) + len(held) == len(pairs) and held and train
    assert not {p.task_id for p in train} & {p.task_id for p in held}
    assert split_by_task(pairs, 0.25, seed=1) == (train, held)
    assert split_by_task(pairs, 0.0) == (pairs, [])
    two = pairs[:6]
    train2, held2 = split_by_task(two, 0.01)
    assert train2 and held2  # tiny sets still hold one task out


def test_dataset_forms():
    pair = PreferencePair("def f():\n", "    return 1\n", "    return 2\n", 0.5, "execution", "t")
    explicit = to_dataset([pair])
    assert explicit.column_names == ["prompt", "chosen", "rejected", "margin"]
    implicit = to_dataset([pair], implicit_prompt=True)
    assert implicit.column_names == ["chosen", "rejected", "margin"]
    assert implicit[0]["chosen"] == "def f():\n    return 1\n"
