"""A zoo of tiny Hugging Face causal LMs, one per architecture codealign claims to support, built offline.

Each entry is a random-init model (2 layers, hidden 64) saved as a standard Hugging Face directory with a
tokenizer like the ones real checkpoints ship: byte-level BPE trained here with ``tokenizers``, special tokens,
a chat template in the family's style, a post-processor that adds BOS by default, **no pad token**, and a
``generation_config.json`` whose ``eos_token_id`` may list the end-of-turn token as well as EOS. Nothing is
fetched; a directory builds in well under a second.

=============  =========================  ===========================================================
name           class                      what makes it different
=============  =========================  ===========================================================
llama          LlamaForCausalLM           Llama-3-style headers; template writes BOS; EOS = ``<|eot_id|>``
qwen2          Qwen2ForCausalLM           ChatML; biases on q/k/v
mistral        MistralForCausalLM         ``[INST]`` template (no generation prompt); **sliding window 8**,
                                          smaller than any prompt + completion here
starcoder2     Starcoder2ForCausalLM      GPT2Tokenizer class; BOS == EOS (``<|endoftext|>``)
phi3           Phi3ForCausalLM            Phi-3 ``<|user|>``/``<|end|>`` turns; end of turn != EOS (only
                                          generation_config knows ``<|end|>``); fused qkv
gpt2           GPT2LMHeadModel            absolute positions; BOS == EOS; plain-text role template
gpt_neox       GPTNeoXForCausalLM         partial rotary, parallel residual; ChatML
=============  =========================  ===========================================================

``tokenizer_config.json`` names a class transformers 5 loads the same ids with (checked by
``tests/test_chat_tasks.py``, via load_tokenizer): ``GPT2Tokenizer`` where real checkpoints of the family ship it and it keeps
``tokenizer.json`` as is, else ``PreTrainedTokenizerFast``. (``Qwen2Tokenizer`` and ``GPTNeoXTokenizer`` rebuild
the tokenizer from vocab + merges with their own pre-tokenizer, drop the BOS post-processor and add a pad
token — right for real Qwen/Pythia files, wrong for these.)

Also here: the one tiny dataset every zoo test shares, in both task formats (completion prompts and chat
messages), and a helper that imports it with scored completions so reward-model / DPO pairs exist.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HIDDEN, LAYERS, HEADS, KV_HEADS, INTERMEDIATE = 64, 2, 4, 2, 128
VOCAB = 420  # BPE target, special tokens included
SLIDING_WINDOW = 8  # mistral: well below prompt + completion (prompts here are 25+ tokens)

# ---------------------------------------------------------------------------------------- chat templates
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}{{ m['content'] }}{{ eos_token }}"
    "{% else %}[INST] {{ m['content'] }} [/INST]{% endif %}{% endfor %}"
)
PHI3_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
PLAIN_TEMPLATE = (
    "{% for m in messages %}### {{ m['role'] | capitalize }}:\n{{ m['content'] }}\n"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)


@dataclass(frozen=True)
class ZooTokenizer:
    bos: str
    eos: str
    chat_template: str
    extra_specials: tuple[str, ...] = ()
    end_of_turn: str | None = None  # a generation_config stop token besides EOS
    tokenizer_class: str = "PreTrainedTokenizerFast"
    llama3_split: bool = False  # Llama-3's regex split before the byte-level step, else GPT-2's

    @property
    def specials(self) -> list[str]:
        return list(dict.fromkeys([self.bos, self.eos, *self.extra_specials]))


@dataclass(frozen=True)
class ZooEntry:
    name: str
    architecture: str  # transformers class name
    config_class: str
    config: dict[str, Any]
    tokenizer: ZooTokenizer
    notes: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


_ROPE = {
    "hidden_size": HIDDEN,
    "intermediate_size": INTERMEDIATE,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "num_key_value_heads": KV_HEADS,
    "max_position_embeddings": 512,
}

ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry(
            "llama",
            "LlamaForCausalLM",
            "LlamaConfig",
            {**_ROPE, "tie_word_embeddings": True},
            ZooTokenizer(
                "<|begin_of_text|>",
                "<|eot_id|>",
                LLAMA3_TEMPLATE,
                ("<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>"),
                end_of_turn="<|end_of_text|>",
                llama3_split=True,
            ),
        ),
        ZooEntry(
            "qwen2",
            "Qwen2ForCausalLM",
            "Qwen2Config",
            {**_ROPE, "tie_word_embeddings": True, "use_sliding_window": False},
            ZooTokenizer("<|bos|>", "<|im_end|>", CHATML_TEMPLATE, ("<|im_start|>", "<|endoftext|>")),
        ),
        ZooEntry(
            "mistral",
            "MistralForCausalLM",
            "MistralConfig",
            {**_ROPE, "sliding_window": SLIDING_WINDOW},
            ZooTokenizer("<s>", "</s>", MISTRAL_TEMPLATE, ("[INST]", "[/INST]")),
        ),
        ZooEntry(
            "starcoder2",
            "Starcoder2ForCausalLM",
            "Starcoder2Config",
            {**_ROPE, "sliding_window": None, "use_bias": True},
            ZooTokenizer(
                "<|endoftext|>",
                "<|endoftext|>",
                CHATML_TEMPLATE,
                ("<|im_start|>", "<|im_end|>"),
                end_of_turn="<|im_end|>",
                tokenizer_class="GPT2Tokenizer",
            ),
        ),
        ZooEntry(
            "phi3",
            "Phi3ForCausalLM",
            "Phi3Config",
            {**_ROPE, "original_max_position_embeddings": 512, "sliding_window": None},
            ZooTokenizer(
                "<s>",
                "<|endoftext|>",
                PHI3_TEMPLATE,
                ("<|user|>", "<|assistant|>", "<|system|>", "<|end|>"),
                end_of_turn="<|end|>",
                tokenizer_class="GPT2Tokenizer",
            ),
        ),
        ZooEntry(
            "gpt2",
            "GPT2LMHeadModel",
            "GPT2Config",
            {
                "n_embd": HIDDEN,
                "n_layer": LAYERS,
                "n_head": HEADS,
                "n_inner": INTERMEDIATE,
                "n_positions": 512,
            },
            ZooTokenizer("<|endoftext|>", "<|endoftext|>", PLAIN_TEMPLATE, tokenizer_class="GPT2Tokenizer"),
        ),
        ZooEntry(
            "gpt_neox",
            "GPTNeoXForCausalLM",
            "GPTNeoXConfig",
            {
                "hidden_size": HIDDEN,
                "intermediate_size": INTERMEDIATE,
                "num_hidden_layers": LAYERS,
                "num_attention_heads": HEADS,
                "max_position_embeddings": 512,
                "rotary_pct": 0.25,
                "use_parallel_residual": True,
            },
            ZooTokenizer(
                "<|bos|>",
                "<|endoftext|>",
                CHATML_TEMPLATE,
                ("<|im_start|>", "<|im_end|>"),
                end_of_turn="<|im_end|>",
            ),
        ),
    )
}

# --------------------------------------------------------------------------------------- the tiny dataset
_FUNCS = [
    ("add_three", "x: int", "int", "add 3 to x", "    return x + 3\n", [("1", "4"), ("-3", "0")]),
    ("double", "x: int", "int", "multiply x by 2", "    return x * 2\n", [("2", "4"), ("0", "0")]),
    ("negate", "x: int", "int", "negate x", "    return -x\n", [("5", "-5"), ("-1", "1")]),
    ("shout", "s: str", "str", "convert s to upper case", "    return s.upper()\n", [("'ab'", "'AB'")]),
    ("first", "xs: list", "int", "return the first item of xs", "    return xs[0]\n", [("[3, 1]", "3")]),
    (
        "clip_low",
        "x: int",
        "int",
        "return x, or 0 if x is negative",
        "    if x < 0:\n        return 0\n    return x\n",
        [("-2", "0"), ("7", "7")],
    ),
]


def _prompt(name: str, arg: str, ret: str, what: str) -> str:
    return f'def {name}({arg}) -> {ret}:\n    """Given {arg.split(":")[0]}: {what}. Return the result."""\n'


def task_rows(split: str = "train") -> list[dict[str, Any]]:
    """The shared tiny dataset as codealign JSONL rows (completion format: signature + docstring)."""
    return [
        {
            "task_id": f"zoo/{i}",
            "prompt": _prompt(name, arg, ret, what),
            "entry_point": name,
            "tests": [f"assert {name}({a}) == {b}" for a, b in cases],
            "reference_solution": body,
            "split": split,
        }
        for i, (name, arg, ret, what, body, cases) in enumerate(_FUNCS)
    ]


def chat_task_rows(split: str = "train") -> list[dict[str, Any]]:
    """The same tasks as chat conversations (TRL's conversational format); the reference is a fenced reply."""
    rows = []
    for i, (name, arg, ret, what, body, cases) in enumerate(_FUNCS):
        code = f"def {name}({arg}) -> {ret}:\n{body}"
        rows.append(
            {
                "task_id": f"zoochat/{i}",
                "messages": [
                    {"role": "system", "content": "You write Python."},
                    {"role": "user", "content": f"Write a function `{name}({arg}) -> {ret}` that {what}s."},
                ],
                "entry_point": name,
                "tests": [f"assert {name}({a}) == {b}" for a, b in cases],
                "reference_solution": f"Here it is:\n```python\n{code}```\n",
                "split": split,
            }
        )
    return rows


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _corpus() -> list[str]:
    texts = []
    for row in task_rows():
        texts.append(row["prompt"] + row["reference_solution"])
    for row in chat_task_rows():
        texts += [m["content"] for m in row["messages"]] + [row["reference_solution"]]
    texts.append("assert f(1) == 2\nfor i in range(10):\n    print(i)\n")
    return texts * 4


# ----------------------------------------------------------------------------------------------- building
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def build_tokenizer(spec: ZooTokenizer):
    """A ``tokenizers.Tokenizer`` (byte-level BPE, BOS post-processor) trained on the tiny corpus."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    if spec.llama3_split:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        min_frequency=2,
        special_tokens=spec.specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    bos_id = tok.token_to_id(spec.bos)
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{spec.bos} $A",
                pair=f"{spec.bos} $A {spec.bos} $B",
                special_tokens=[(spec.bos, bos_id)],
            ),
        ]
    )
    return tok


def build(name: str, output_dir: str | Path, seed: int = 0) -> Path:
    """Write zoo model ``name`` (random weights from ``seed``) and its tokenizer to ``output_dir``."""
    import torch
    import transformers
    from transformers import GenerationConfig, PreTrainedTokenizerFast

    entry = ZOO[name]
    spec = entry.tokenizer
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    raw = build_tokenizer(spec)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token=spec.bos, eos_token=spec.eos, chat_template=spec.chat_template
    )
    tokenizer.save_pretrained(output_dir)
    config_path = output_dir / "tokenizer_config.json"
    tok_config = json.loads(config_path.read_text())
    tok_config["tokenizer_class"] = spec.tokenizer_class
    config_path.write_text(json.dumps(tok_config, indent=2) + "\n")

    bos_id, eos_id = raw.token_to_id(spec.bos), raw.token_to_id(spec.eos)
    config = getattr(transformers, entry.config_class)(
        vocab_size=raw.get_vocab_size(),
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=None,
        **entry.config,
    )
    torch.manual_seed(seed)
    model = getattr(transformers, entry.architecture)(config)
    stops = [eos_id] + ([raw.token_to_id(spec.end_of_turn)] if spec.end_of_turn else [])
    model.generation_config = GenerationConfig(
        bos_token_id=bos_id, eos_token_id=stops if len(stops) > 1 else eos_id
    )
    model.save_pretrained(output_dir)
    return output_dir


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Models this small gain nothing from intra-op threads, and on a busy 2-core machine two threads spinning
    against each other made a 64x64 matmul 150x slower (measured: 7.8 ms against 47 us)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Zoo:
    """Zoo models built on first use under ``root`` (a session's temp directory); treat them as read-only."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._built: dict[str, Path] = {}

    def path(self, name: str) -> Path:
        if name not in self._built:
            self._built[name] = build(name, self.root / name)
        return self._built[name]


# ---------------------------------------------------------------------------------- scored DB completions
def seed_pairs(db, source: str = "zoo", chat: bool = False) -> None:
    """Import the tiny dataset as suite ``source`` with three scored completions per task (pass 2/2, 1/2,
    0/2 where a task has two tests), so execution pairs exist for the reward model and DPO."""
    from _train_helpers import add_scored_completion

    from codealign.tasks.custom import row_to_spec
    from db.models import Policy, Task
    from db.tasks import import_tasks

    rows = chat_task_rows() if chat else task_rows()
    specs = [row_to_spec(r, f"zoo row {i}") for i, r in enumerate(rows)]
    with db.session() as session:
        import_tasks(session, specs, source, "cli:test@host")
        policy = Policy(
            name=f"{source}-sampler", checkpoint_path="/nonexistent", stage="sft", created_by="cli:t"
        )
        session.add(policy)
        session.flush()
        for task in session.query(Task).where(Task.source == source).order_by(Task.id):
            good = task.reference_solution or ""
            variants = [(good, 2), ("    x = 0\n" + good if not chat else good.replace("Here", "So"), 1)]
            variants.append(("    return None\n" if not chat else "```python\nNone\n```\n", 0))
            for index, (text, passed) in enumerate(variants):
                add_scored_completion(session, task, policy, text, index, passed, 2)
