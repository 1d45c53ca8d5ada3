"""Chat-format tasks end to end (codealign/tasks/chat.py, alignment/tokenization.py).

A task given as messages (TRL's conversational format) is rendered by the model's chat template the same way
in SFT, DPO, the reward model, the sampler and GRPO (where TRL renders it); the code of an answer is taken out
the same way (fenced or bare) by the sandbox requests of ``score`` and ``eval``, the reward callables and the
annotation app, which shows annotators that code, not the template or the prose. Per-model settings come from
the checkpoint, or a one-line error names the field.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace

import pytest
from _zoo_stages import _fresh_accelerate_state, dpo, grpo, reward_model, sft  # noqa: F401 (autouse fixture)
from zoo import ZOO, chat_task_rows, one_torch_thread, write_jsonl

from codealign.errors import UserError
from codealign.tasks.chat import extract_code, program
from codealign.tasks.custom import row_to_spec

CODE = "def double(x: int) -> int:\n    return x * 2\n"
ANSWERS = {  # answer -> the code every consumer must run
    f"Here it is:\n```python\n{CODE}```\nIt doubles x.": CODE,
    f"```\n{CODE}```": CODE,
    f"Sure.\n```py\n{CODE}```\n```python\nprint(1)\n```": CODE,  # the first Python fence
    f"In Python:\n```text\nnot code\n```\n```python\n{CODE}```": CODE,  # a Python fence beats another language
    "```js\nlet x = 1;\n```\nand\n```ruby\nputs 1\n```": "let x = 1;\n",  # else the first fence at all
    CODE: CODE,  # bare code
    f"Cut off:\n```python\n{CODE}": CODE,  # an unclosed fence (the answer ran out of tokens)
}
MESSAGES = [
    {"role": "system", "content": "You write Python."},
    {"role": "user", "content": "Write double(x)."},
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


# ------------------------------------------------------------------------------------------ the task model
@pytest.mark.parametrize(("answer", "code"), ANSWERS.items())
def test_code_is_extracted_from_fenced_or_bare_answers(answer, code):
    assert extract_code(answer) == code
    assert program("ignored prompt", answer, chat=True) == code
    assert (
        program("def double(x):\n", "    return x * 2\n", chat=False) == "def double(x):\n    return x * 2\n"
    )


def test_a_row_with_messages_is_a_chat_task_and_bad_rows_name_the_field():
    row = {
        "task_id": "c/0",
        "messages": MESSAGES,
        "entry_point": "double",
        "tests": ["assert double(2) == 4"],
    }
    spec = row_to_spec(row, "t.jsonl:1")
    assert spec.chat and spec.messages == MESSAGES and spec.prompt == "Write double(x)."  # what people read
    assert spec.model_prompt == MESSAGES
    as_prompt = row_to_spec({**{k: v for k, v in row.items() if k != "messages"}, "prompt": MESSAGES}, "t")
    assert as_prompt == spec  # TRL's conversational "prompt" column means the same
    plain = row_to_spec({**row, "messages": None, "prompt": "def double(x):\n"}, "t")
    assert not plain.chat and plain.model_prompt == "def double(x):\n"
    bad = {
        "give the conversation once": {**row, "prompt": MESSAGES},
        r"messages\[1\]\.role must be one of": {
            **row,
            "messages": [MESSAGES[0], {"role": "bot", "content": "x"}],
        },
        "the last message must be the user's": {
            **row,
            "messages": [*MESSAGES, {"role": "assistant", "content": "x"}],
        },
        r"messages\[0\]\.content must be a non-empty string": {
            **row,
            "messages": [{"role": "user", "content": ""}],
        },
        "meta.messages is reserved": {**row, "meta": {"messages": MESSAGES}},
    }
    for message, bad_row in bad.items():
        with pytest.raises(UserError, match=message):
            row_to_spec(bad_row, "t.jsonl:1")


def test_chat_tasks_round_trip_through_the_db_and_completion_hashes_stay(db):
    from codealign.tasks.spec import TaskSpec
    from db.tasks import TaskSelection, import_tasks, load_tasks

    specs = [row_to_spec(r, f"row {i}") for i, r in enumerate(chat_task_rows())]
    with db.session() as session:
        import_tasks(session, specs, "zoochat", "cli:test")
    loaded = load_tasks(TaskSelection(dataset="zoochat"), db)
    assert [(t.messages, t.meta, t.prompt) for t in loaded] == [(s.messages, s.meta, s.prompt) for s in specs]
    # completion tasks hash as before chat tasks existed (no spurious re-import of existing suites)
    plain = TaskSpec("t/0", "def f():\n", "f", ["assert f() == 1"], "    return 1\n", "train")
    before = json.dumps([plain.prompt, plain.entry_point, plain.tests, plain.reference_solution, plain.split])
    assert plain.content_hash() == hashlib.sha256(before.encode()).hexdigest()
    assert specs[0].content_hash() != replace(specs[0], messages=None).content_hash()


# --------------------------------------------------------------- one extraction: score, eval, rewards, the app
def test_score_eval_rewards_and_the_app_run_and_show_the_same_code(db, tmp_path):
    from alignment.evaluation import evaluate_samples
    from annotation_ui.views import load_completion_views
    from db.models import Completion, Policy, Task
    from db.tasks import TaskSelection, import_tasks, load_tasks
    from reward.rewards import RewardFunctionConfig, execution_reward
    from reward.scoring import ScoreOptions, score_missing

    rows = chat_task_rows()
    double = next(r for r in rows if r["entry_point"] == "double")
    answers = [*ANSWERS, "I cannot.\n```python\ndef double(x):\n    return x\n```"]
    with db.session() as session:
        import_tasks(session, [row_to_spec(double, "row")], "zoochat", "cli:test")
        policy = Policy(name="p", checkpoint_path="/nonexistent", stage="sft", created_by="cli:test")
        session.add(policy)
        session.flush()
        task = session.query(Task).one()
        for index, text in enumerate(answers):
            session.add(
                Completion(
                    task_id=task.id, policy_id=policy.id, text=text, sample_index=index, created_by="t"
                )
            )
    score_missing(
        ScoreOptions(workers=1, progress=False, timeout_s=5.0), "cli:test", warn=lambda _: None, db=db
    )
    with db.session() as session:
        ids = [c.id for c in session.query(Completion).order_by(Completion.id)]
        views = load_completion_views(session, ids[:8])
        views += load_completion_views(session, ids[8:])
    expected = [*ANSWERS.values(), "def double(x):\n    return x\n"]
    assert [v.text for v in views] == expected  # the app shows the code that ran, numbered from line 1
    assert all(v.first_line == 1 for v in views)
    passed = [v.verdict == "passed" for v in views]
    assert passed == [True, True, True, True, False, True, True, False]

    [spec] = load_tasks(TaskSelection(dataset="zoochat"), db)
    samples = write_jsonl([{"task_id": spec.task_id, "completion": a} for a in answers], tmp_path / "s.jsonl")
    report = evaluate_samples(samples, {spec.task_id: spec}, [1], timeout_s=5.0, workers=1)
    results = [json.loads(line)["passed"] for line in report.results_path.read_text().splitlines()]
    assert results == passed

    # the reward callables, given what TRL's GRPO (and PPO) hand them for a chat prompt
    reward = execution_reward(RewardFunctionConfig(timeout_s=5.0))
    got = reward(
        prompts=[spec.messages] * len(answers),
        completions=[[{"role": "assistant", "content": a}] for a in answers],
        tests=[spec.tests] * len(answers),
    )
    assert [r == 1.0 for r in got] == passed


# ---------------------------------------------------------------- the chat template, the same in every stage
@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_stage_renders_a_conversation_as_the_chat_template_does(name, zoo_models):
    from datasets import Dataset

    from alignment.dpo import tokenize_pairs
    from alignment.pairs import PreferencePair
    from alignment.reward_model import tokenize_pairs as reward_pairs
    from alignment.sft import tokenize_separately
    from alignment.tokenization import (
        answer_ids,
        generation_config_of,
        load_tokenizer,
        prompt_ids,
        stop_token_ids,
    )

    path = zoo_models.path(name)
    tokenizer = load_tokenizer(path)
    answer = next(iter(ANSWERS))
    chat = [*MESSAGES, {"role": "assistant", "content": answer}]
    head = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    whole = tokenizer.apply_chat_template(chat, tokenize=False)
    expected_prompt = tokenizer(head, add_special_tokens=False)["input_ids"]

    assert prompt_ids(tokenizer, MESSAGES) == expected_prompt  # the sampler's and PPO's prompt ids
    [sft_row] = tokenize_separately(
        Dataset.from_list([{"prompt": "Write double(x).", "completion": answer, "messages": MESSAGES}]),
        tokenizer,
    )
    ids, mask = sft_row["input_ids"], sft_row["completion_mask"]
    assert ids[: len(expected_prompt)] == expected_prompt and mask == [0] * len(expected_prompt) + [1] * (
        len(ids) - len(expected_prompt)
    )
    assert tokenizer.decode(ids) == whole  # the template's whole conversation, end of turn included
    stops = stop_token_ids(tokenizer, generation_config_of(path))
    assert any(t in stops for t in ids[len(expected_prompt) :])  # the policy learns to end its turn

    class Args:  # the two fields tokenize_pairs reads
        max_length, truncation_mode = None, "keep_end"

    [pair] = tokenize_pairs(
        Dataset.from_list([{"prompt": "p", "chosen": answer, "rejected": CODE, "messages": MESSAGES}]),
        tokenizer,
        Args,
    )
    assert pair["prompt_ids"] == expected_prompt and pair["chosen_ids"] == ids[len(expected_prompt) :]
    assert pair["rejected_ids"] == answer_ids(tokenizer, MESSAGES, CODE)
    rm_pair = PreferencePair("p", answer, CODE, 1.0, "execution", "t", messages=MESSAGES)
    [rm_row] = reward_pairs([rm_pair], tokenizer, margin_scale=0)
    assert rm_row["chosen_ids"] == ids  # the reward model reads the policy's conversation


def test_chat_tasks_through_sft_sampling_rewards_dpo_and_the_reward_model(zoo_models, zoo_db, tmp_path):
    """Qwen2 (ChatML) on the chat copy of the tiny dataset, end to end."""
    from alignment.generation import generate_rollouts, load_policy
    from alignment.sample import sample_to_db
    from annotation_ui.views import load_completion_views
    from db.models import Completion, Task

    start = zoo_models.path("qwen2")
    sft_out = tmp_path / "chat-sft"
    outcome = sft(start, sft_out, zoo_db, chat=True, max_steps=3)
    assert outcome.metrics["num_examples"] == 6
    model, tokenizer = load_policy(str(sft_out))
    [[reply]] = generate_rollouts((model, tokenizer), [MESSAGES], temperature=0, max_new_tokens=12)
    assert "<|im_start|>" not in reply.text and "<|im_end|>" not in reply.text  # the template stays out

    sample_to_db(zoo_db, str(sft_out), source="zoochat", split="train", k=1, limit=2, progress=False)
    with zoo_db.session() as session:
        sampled = (
            session.query(Completion)
            .join(Task)
            .where(Task.source == "zoochat", Completion.policy.has(checkpoint_path=str(sft_out.resolve())))
            .all()
        )
        assert len(sampled) == 2
        views = load_completion_views(session, [c.id for c in sampled])
        assert [v.text for v in views] == [extract_code(c.text) for c in sampled]

    dpo(start, tmp_path / "chat-dpo", zoo_db, chat=True)
    reward_model(start, tmp_path / "chat-rm", zoo_db, chat=True)


CALLS: list[dict] = []


def recording_reward(prompts, completions, **columns):
    CALLS.append({"prompts": prompts, "completions": completions})
    return [len(c[-1]["content"]) / 40 for c in completions]


def test_grpo_hands_the_rewards_conversations_and_assistant_messages(zoo_models, zoo_db, tmp_path):
    CALLS.clear()
    grpo(
        zoo_models.path("llama"),
        tmp_path / "chat-grpo",
        zoo_db,
        chat=True,
        reward_funcs=["execution", "test_chat_tasks:recording_reward"],
    )
    assert CALLS
    call = CALLS[0]
    assert (
        call["prompts"][0][-1]["role"] == "user" and call["prompts"][0][0]["content"] == "You write Python."
    )
    assert call["completions"][0][0]["role"] == "assistant"


# ------------------------------------------------------------------------------------------ per-model settings
def test_per_model_settings_are_read_from_the_checkpoint(zoo_models):
    from alignment.tokenization import adds_bos, generation_config_of, load_tokenizer, stop_token_ids

    for name, entry in ZOO.items():
        path = zoo_models.path(name)
        tokenizer = load_tokenizer(path)
        assert tokenizer.pad_token == entry.tokenizer.eos  # no pad token shipped: EOS pads, as TRL does
        assert adds_bos(tokenizer)  # every zoo tokenizer adds BOS by default
        stops = stop_token_ids(tokenizer, generation_config_of(path))
        end = entry.tokenizer.end_of_turn
        assert stops == [tokenizer.eos_token_id] + ([tokenizer.convert_tokens_to_ids(end)] if end else [])


def _copy(zoo_models, name, tmp_path):
    return shutil.copytree(zoo_models.path(name), tmp_path / name)


def test_a_chat_template_whose_turn_end_is_no_stop_token_names_eos_token_id(zoo_models, tmp_path):
    from alignment.generation import generate_rollouts

    phi3 = _copy(zoo_models, "phi3", tmp_path)  # <|end|> ends a turn; only generation_config knows it
    (phi3 / "generation_config.json").unlink()
    with pytest.raises(UserError, match=r"ends the assistant's turn with '<\|end\|>'.*eos_token_id"):
        generate_rollouts(str(phi3), [MESSAGES], max_new_tokens=2)
    [[_]] = generate_rollouts(str(phi3), ["def f(x):\n"], max_new_tokens=2, temperature=0)  # code: fine


def test_checkpoints_needing_their_own_code_are_refused_naming_trust_remote_code(zoo_models, tmp_path):
    from alignment.tokenization import load_tokenizer

    custom = _copy(zoo_models, "llama", tmp_path)
    config = json.loads((custom / "config.json").read_text())
    native = {**config, "auto_map": {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}}
    (custom / "config.json").write_text(json.dumps(native))
    load_tokenizer(custom)  # a built-in model_type loads with transformers' own class
    (custom / "config.json").write_text(json.dumps({**native, "model_type": "my_llama"}))
    with pytest.raises(UserError, match=r"model_type 'my_llama'.*trust_remote_code") as info:
        load_tokenizer(custom)
    assert "\n" not in str(info.value)
    (custom / "config.json").write_text(json.dumps(config))
    tok_config = json.loads((custom / "tokenizer_config.json").read_text())
    tok_config.update(tokenizer_class="MyTokenizer", auto_map={"AutoTokenizer": ["tok.MyTokenizer", None]})
    (custom / "tokenizer_config.json").write_text(json.dumps(tok_config))
    with pytest.raises(UserError, match="tokenizer_class 'MyTokenizer'.*trust_remote_code"):
        load_tokenizer(custom)


def test_a_tokenizer_without_eos_or_chat_template_is_a_one_line_error(zoo_models, tmp_path):
    from alignment.generation import generate_rollouts
    from alignment.tokenization import load_tokenizer

    gpt2 = _copy(zoo_models, "gpt2", tmp_path)
    tok_config = json.loads((gpt2 / "tokenizer_config.json").read_text())
    (gpt2 / "tokenizer_config.json").write_text(json.dumps({**tok_config, "chat_template": None}))
    (gpt2 / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(UserError, match="has no chat template"):
        generate_rollouts(str(gpt2), [MESSAGES], max_new_tokens=2)
    llama = _copy(zoo_models, "llama", tmp_path)
    tok_config = json.loads((llama / "tokenizer_config.json").read_text())
    tok_config.pop("eos_token")
    (llama / "tokenizer_config.json").write_text(json.dumps(tok_config))
    with pytest.raises(UserError, match="no EOS token.*eos_token"):
        load_tokenizer(llama)
