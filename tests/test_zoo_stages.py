"""Every zoo architecture (tests/zoo.py) through the training stages and eval, at tiny size.

Each stage is a real run of a few steps on the one tiny dataset of ``tests/zoo.py`` (imported as suite
``zoo`` with scored completions, so reward-model and DPO pairs exist); its checkpoint must reload (policy
through the sampler, reward model through its scorer) and differ from the weights it started from.

The default run keeps the wall time small: every architecture through SFT (full weights, then sampled), and
one architecture (Qwen2: separate EOS, no pad, chat template) through every stage. The full matrix — each
architecture through SFT with LoRA, reward model, DPO, GRPO, PPO and eval — is marked ``slow``
(``make test-slow``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _train_helpers import max_weight_change
from _zoo_stages import STAGES, _fresh_accelerate_state, sft  # noqa: F401 (an autouse fixture)
from zoo import ZOO, one_torch_thread

ALL = sorted(ZOO)
EVERY_STAGE = "qwen2"  # the architecture the default run takes through every stage


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def _check_policy(start: Path, out: Path) -> None:
    """The saved policy differs from the start, reloads with its tokenizer, and samples."""
    from alignment.generation import generate_rollouts, load_policy
    from alignment.tokenization import load_tokenizer

    assert max_weight_change(start, out) > 0
    model, tokenizer = load_policy(str(out))
    start_tokenizer = load_tokenizer(start)
    assert (tokenizer.eos_token_id, tokenizer.bos_token_id) == (
        start_tokenizer.eos_token_id,
        start_tokenizer.bos_token_id,
    )
    assert tokenizer.chat_template == start_tokenizer.chat_template
    [[sample]] = generate_rollouts(
        (model, tokenizer), [[{"role": "user", "content": "Write f."}]], temperature=0, max_new_tokens=4
    )
    assert sample.token_ids  # a chat answer is never cut to nothing (a code one may dedent at once)


def _check_reward_model(start: Path, out: Path) -> None:
    """The reward model scores through its scorer, and its trunk (named as in the causal LM) moved."""
    from safetensors.torch import load_file

    from alignment.reward_model import RewardModelScorer

    scores = RewardModelScorer(str(out), normalize=False)(
        ["def f(x):\n"] * 2, ["    return x\n", "    return 1\n"]
    )
    assert len(scores) == 2 and scores[0] != scores[1]
    a, b = load_file(str(start / "model.safetensors")), load_file(str(out / "model.safetensors"))
    shared = [k for k in a.keys() & b.keys() if a[k].shape == b[k].shape]
    assert len(shared) > len(a) // 2, sorted(a)[:3] + sorted(b)[:3]
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in shared) > 0


def evaluate(start: Path, out: Path, db):
    """``eval --policy`` on the start model: sampled, run in the sandbox, pass@1 stored."""
    from alignment.evaluation import EvalConfig, evaluate_policy

    cfg = EvalConfig(
        dataset="zoo", split="train", k=[1], max_new_tokens=16, workers=1, progress=False, output_dir=str(out)
    )
    outcome = evaluate_policy(db, str(start), cfg, created_by="cli:test")
    assert outcome.num_tasks == 6 and 0.0 <= outcome.pass_at_k["pass@1"] <= 1.0
    return outcome


def run_stage(stage: str, name: str, zoo_models, db, tmp_path: Path):
    """Stage ``stage`` (a key of STAGES, ``sft_lora`` or ``eval``) from zoo model ``name``, checked."""
    start = zoo_models.path(name)
    out = tmp_path / f"{name}-{stage}"  # also the policy's name: unique in the module's DB
    if stage == "eval":
        return evaluate(start, out, db)
    if stage == "sft_lora":
        outcome = sft(start, out, db, lora={"enabled": True, "r": 4, "lora_alpha": 8})
        assert (out / "adapter" / "adapter_config.json").is_file()
    else:
        outcome = STAGES[stage](start, out, db)
    if stage == "reward_model":
        _check_reward_model(start, out)
    else:
        _check_policy(start, out)
    return outcome


# full-weight SFT runs on every architecture in the default run; the rest of the matrix on one
MATRIX = ["sft_lora", "reward_model", "dpo", "grpo", "ppo", "eval"]


@pytest.mark.parametrize("name", ALL)
def test_full_sft_on_every_architecture(name, zoo_models, zoo_db, tmp_path):
    outcome = run_stage("sft", name, zoo_models, zoo_db, tmp_path)
    assert outcome.metrics["global_step"] == 2


@pytest.mark.parametrize("stage", MATRIX)
def test_one_architecture_through_every_stage(stage, zoo_models, zoo_db, tmp_path):
    run_stage(stage, EVERY_STAGE, zoo_models, zoo_db, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("stage", MATRIX)
@pytest.mark.parametrize("name", [n for n in ALL if n != EVERY_STAGE])
def test_every_architecture_through_every_stage(name, stage, zoo_models, zoo_db, tmp_path):
    run_stage(stage, name, zoo_models, zoo_db, tmp_path)
