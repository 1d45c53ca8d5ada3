"""Preference export: consensus rules on hand-made rankings, and the `codealign export preferences` CLI."""

import json

import pytest

from alignment.cli import main
from annotation_ui.export import RankingRecord, consensus_pairs
from codealign.errors import UserError
from db.models import Annotator, Completion, Ranking, RankingEntry, RankingItem, Task
from db.session import session_scope

RECORDS = [
    RankingRecord(1, "ann", {1: 1, 2: 2, 3: 3}),
    RankingRecord(2, "bob", {1: 1, 2: 3, 3: 2}),
    RankingRecord(3, "cat", {1: 2, 2: 1, 3: 2}),
]


def as_tuples(pairs):
    return sorted((p.chosen_id, p.rejected_id, round(p.margin, 4), tuple(p.ranking_ids)) for p in pairs)


def test_none_rule_keeps_every_rankings_pairs_and_drops_ties():
    pairs = as_tuples(consensus_pairs(RECORDS, "none"))
    assert len(pairs) == 8  # 3 + 3 + 2 (cat ties 1 and 3)
    assert (2, 1, 1.0, (3,)) in pairs and (1, 2, 2.0, (2,)) in pairs
    assert not any({c, r} == {1, 3} and ids == (3,) for c, r, _, ids in pairs)


def test_majority_rule_hand_computed():
    assert as_tuples(consensus_pairs(RECORDS, "majority")) == [
        (1, 2, round(2 / 3, 4), (1, 2)),  # ann and bob prefer 1; mean gap (1 + 2 - 1) / 3
        (1, 3, 1.0, (1, 2)),  # cat ties them; mean gap (2 + 1 + 0) / 3
        (2, 3, round(1 / 3, 4), (1, 3)),
    ]


def test_mean_rank_and_unanimous_rules():
    mean = as_tuples(consensus_pairs(RECORDS, "mean_rank"))
    assert [(c, r, m) for c, r, m, _ in mean] == [
        (1, 2, round(2 / 3, 4)),
        (1, 3, 1.0),
        (2, 3, round(1 / 3, 4)),
    ]
    assert consensus_pairs(RECORDS, "unanimous") == []
    agree = [RankingRecord(1, "ann", {7: 1, 8: 2}), RankingRecord(2, "bob", {7: 1, 8: 3})]
    (pair,) = consensus_pairs(agree, "unanimous")
    assert (pair.chosen_id, pair.rejected_id, pair.margin, pair.annotators) == (
        7,
        8,
        1.5,
        ["ann", "bob"],
    )  # gaps 1 and 2


def test_min_annotators_and_unknown_rule():
    assert consensus_pairs(RECORDS, "majority", min_annotators=4) == []
    assert consensus_pairs([RankingRecord(1, "a", {1: 1, 2: 1})], "none") == []  # all tied: no pair
    with pytest.raises(UserError, match="consensus"):
        consensus_pairs(RECORDS, "vote")


def seed_rankings(url):
    """One task, three completions, the three RECORDS rankings (cat's flagged) and a skip by dan."""
    with session_scope(url) as s:
        task = Task(
            task_id="t/0",
            source="t",
            split="test",
            prompt="def f():\n",
            entry_point="f",
            tests=[],
            content_hash="h",
            created_by="test",
        )
        s.add(task)
        s.flush()
        ids = []
        for i in range(3):
            c = Completion(task_id=task.id, text=f"    return {i}\n", sample_index=i, created_by="test")
            s.add(c)
            s.flush()
            ids.append(c.id)
        item = RankingItem(task_id=task.id, completion_ids=ids, required_annotations=3, created_by="test")
        s.add(item)
        s.flush()
        for record in RECORDS:
            user = Annotator(name=record.annotator, password_hash="x", created_by="test")
            s.add(user)
            s.flush()
            ranking = Ranking(
                item_id=item.id,
                annotator_id=user.id,
                display_order=ids,
                flagged=record.annotator == "cat",
                created_by=f"annotator:{record.annotator}",
            )
            ranking.entries = [
                RankingEntry(completion_id=ids[c - 1], rank=r) for c, r in record.ranks.items()
            ]
            s.add(ranking)
        dan = Annotator(name="dan", password_hash="x", created_by="test")
        s.add(dan)
        s.flush()
        s.add(
            Ranking(
                item_id=item.id,
                annotator_id=dan.id,
                display_order=ids,
                skipped=True,
                skip_reason="unclear",
                created_by="annotator:dan",
            )
        )  # a skip never yields pairs
    return ids


def test_export_cli_writes_dataset_jsonl_and_manifest(db_url, tmp_path, capsys):
    import datasets

    ids = seed_rankings(db_url)
    out = tmp_path / "prefs"
    assert main(["--db", db_url, "export", "preferences", "--out", str(out), "consensus=none"]) == 0
    rows = [json.loads(line) for line in (out / "preferences.jsonl").read_text().splitlines()]
    assert len(rows) == 6  # cat's ranking is flagged: left out by default
    ds = datasets.load_from_disk(str(out / "dataset"))
    assert ds.num_rows == 6
    assert {"prompt", "chosen", "rejected", "margin", "ranking_ids", "annotators"} <= set(ds.column_names)
    first = ds[0]
    assert first["prompt"] == "def f():\n" and first["chosen"].startswith("    return")
    assert sorted({a for r in rows for a in r["annotators"]}) == ["ann", "bob"]
    assert {r["chosen_completion_id"] for r in rows} <= set(ids)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pairs"] == 6 and manifest["config"]["consensus"] == "none"
    assert "wrote 6 pairs" in capsys.readouterr().out
    # an earlier export is never overwritten
    assert main(["--db", db_url, "export", "preferences", "--out", str(out)]) == 2
    assert "not an empty directory" in capsys.readouterr().err


def test_export_cli_consensus_flag_and_empty_result(db_url, tmp_path, capsys):
    seed_rankings(db_url)
    out = tmp_path / "all"
    assert (
        main(["--db", db_url, "export", "preferences", "--out", str(out), "exclude_flagged=false"]) == 0
    )  # majority default
    assert len((out / "preferences.jsonl").read_text().splitlines()) == 3
    args = ["consensus=unanimous", "exclude_flagged=false"]  # cat disagrees with everyone on something
    assert main(["--db", db_url, "export", "preferences", "--out", str(tmp_path / "u"), *args]) == 2
    assert "no preference pairs" in capsys.readouterr().err
    assert (
        main(["--db", db_url, "export", "preferences", "--out", str(tmp_path / "x"), "consensus=vote"]) == 2
    )
    assert "consensus" in capsys.readouterr().err
