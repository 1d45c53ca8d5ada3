"""Secondary signals beside pass@k: how close samples are to the reference solution, and how likely the
policy finds that solution.

pass@k is the primary measure (does the code work); these say something else and are reported as such:

* **BLEU** — corpus BLEU (sacrebleu, its ``13a`` tokenization; the signature is stored with the score) of
  every sample against its task's reference solution, 0–100. Working code can be far from the reference and
  close code can fail, so BLEU ranks style and phrasing, not correctness;
* **exact match** — the share of samples equal to the reference once trailing whitespace and blank lines
  are dropped;
* **perplexity** — ``exp`` of the policy's mean negative log-likelihood per token of the reference solutions
  of the evaluated tasks, completion tokens only (the prompt is context; a text answer's EOS counts, as the
  sampler generates it). Prompt and answer are tokenized apart (:mod:`alignment.tokenization`), as every
  stage trains on them. Lower is better; it moves with SFT on reference solutions whether or not pass@k does.

What is compared is the code a sample adds: the completion of a completion task (the prompt is not
counted, or every sample would share it), the code of the answer of a chat task. Tasks without a reference
solution (the ``pool`` split) are left out; the counts are stored beside the scores.
"""

from __future__ import annotations

import math
from typing import Any

from codealign.tasks.chat import extract_code
from codealign.tasks.spec import TaskSpec

BLEU_TOKENIZE = "13a"  # sacrebleu's default; stored in the signature so numbers stay comparable
# tokens (padding included) per forward pass: logits are tokens x vocabulary floats (4096 x 150k: 2.4 GB)
PERPLEXITY_TOKENS = 4096


def compared_code(task: TaskSpec, text: str) -> str:
    """The code ``text`` adds to ``task``: the completion itself, or the code of a chat answer."""
    return extract_code(text) if task.chat else text


def normalized(code: str) -> str:
    """``code`` without trailing whitespace, blank lines or Windows line ends: what exact match compares."""
    return "\n".join(line.rstrip() for line in code.replace("\r\n", "\n").splitlines() if line.strip())


def reference_metrics(samples: list[tuple[TaskSpec, str]]) -> dict[str, Any]:
    """BLEU and exact match of ``(task, completion)`` samples against the tasks' reference solutions."""
    pairs = [
        (compared_code(task, text), compared_code(task, task.reference_solution))
        for task, text in samples
        if task.reference_solution
    ]
    if not pairs:
        return {"bleu": None, "exact_match": None, "reference_samples": 0}
    from sacrebleu.metrics import BLEU

    bleu = BLEU(tokenize=BLEU_TOKENIZE)
    score = bleu.corpus_score([hyp for hyp, _ in pairs], [[ref for _, ref in pairs]])
    return {
        "bleu": score.score,
        "bleu_signature": str(bleu.get_signature()),
        "exact_match": sum(normalized(hyp) == normalized(ref) for hyp, ref in pairs) / len(pairs),
        "reference_samples": len(pairs),
    }


def reference_perplexity(
    policy: Any, tasks: list[TaskSpec], max_batch_tokens: int = PERPLEXITY_TOKENS
) -> dict[str, Any]:
    """The policy's per-token perplexity on the reference solutions of ``tasks`` (completion tokens only).

    ``policy``: a model directory or a ``(model, tokenizer)`` pair. Token-weighted over all tasks (a corpus
    perplexity, not a mean of per-task ones). A sequence longer than the model's context is cut at the
    context; only the answer tokens it keeps count.
    """
    import torch

    from alignment.generation import load_policy
    from alignment.tokenization import answer_ids, prompt_ids

    usable = [t for t in tasks if t.reference_solution]
    if not usable:
        return {"perplexity": None, "perplexity_tokens": 0, "perplexity_tasks": 0}
    model, tokenizer = load_policy(policy)
    limit = getattr(model.config, "max_position_embeddings", None)
    rows = []
    for task in usable:
        prompt = prompt_ids(tokenizer, task.model_prompt)
        answer = answer_ids(tokenizer, task.model_prompt, task.reference_solution)
        ids = prompt + answer
        rows.append((ids[:limit] if limit else ids, len(prompt)))
    total_nll, total_tokens = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in _batches(rows, max_batch_tokens):
                nll, tokens = _batch_nll(model, tokenizer.pad_token_id, batch)
                total_nll, total_tokens = total_nll + nll, total_tokens + tokens
    finally:
        model.train(was_training)
    if not total_tokens:
        return {"perplexity": None, "perplexity_tokens": 0, "perplexity_tasks": len(usable)}
    per_token = total_nll / total_tokens
    return {
        "perplexity": math.exp(per_token),
        "reference_nll_per_token": per_token,
        "perplexity_tokens": total_tokens,
        "perplexity_tasks": len(usable),
    }


def _batches(rows: list[tuple[list[int], int]], max_tokens: int):
    """``rows`` by length (less padding), as many per batch as fit ``max_tokens`` padded tokens (one at least)."""
    batch: list[tuple[list[int], int]] = []
    for row in sorted(rows, key=lambda r: len(r[0])):
        if batch and (len(batch) + 1) * len(row[0]) > max_tokens:
            yield batch
            batch = []
        batch.append(row)
    if batch:
        yield batch


def _batch_nll(model, pad_id: int, rows: list[tuple[list[int], int]]) -> tuple[float, int]:
    """Summed NLL of the answer tokens of right-padded ``(ids, prompt length)`` rows, and their count."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for r, (ids, prompt_len) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        attention_mask[r, : len(ids)] = 1
        labels[r, prompt_len : len(ids)] = torch.tensor(ids[prompt_len:], dtype=torch.long)
    device = model.device
    logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits.float()
    targets = labels[:, 1:].to(device)  # the logit at position i predicts token i + 1
    nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum"
    )
    return float(nll), int((targets != -100).sum())


def format_reference_metrics(metrics: dict[str, Any]) -> str:
    """One line for the eval output; pass@k stays the headline, this line says so."""
    parts = []
    if metrics.get("bleu") is not None:
        parts.append(f"BLEU {metrics['bleu']:.1f}")
    if metrics.get("exact_match") is not None:
        parts.append(f"exact match {100 * metrics['exact_match']:.1f} %")
    if metrics.get("perplexity") is not None:
        parts.append(
            f"perplexity {metrics['perplexity']:.3g} on {metrics['perplexity_tokens']:,} reference tokens"
        )
    if not parts:
        return "vs reference solutions: - (no task has one)"
    return "vs reference solutions (secondary; pass@k is primary): " + ", ".join(parts)
