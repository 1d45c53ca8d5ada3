"""The model behind the API and the dynamic batcher in front of it.

:class:`Engine` holds the model and tokenizer (optionally int8-quantized) and samples through
:func:`alignment.generation.generate_rollouts`, the project's one sampler: a completion ends at EOS, at the
end of the function body, or at ``max_tokens``. :class:`Batcher` runs in the server's event loop: requests
wait in arrival order; the oldest opens a window of ``wait_ms`` (counted from its arrival, so a request
that already waited behind a running batch does not wait again) and every waiting request with the same
temperature and top_p joins its ``generate`` call, up to ``max_batch_size`` sequences; ``max_tokens`` may
differ (the call runs to the largest and each completion is cut to its own). One call runs at a time, in one
thread, so the model is never used concurrently.

Guarantees: a request with a ``seed`` is served in a call of its own, so the same request with the same seed
gets the same completions from the same server (the sampler's guarantee); a request whose client went away
before its batch started is dropped and never generated. Non-guarantees: without a seed, completions depend
on what else shares the batch (padding, the order of random draws); a batch that has started runs to its end
even when its clients leave (the sampler cannot drop rows mid-call); there is no continuous batching, so a
long completion holds the short ones of its batch until it ends.
"""

from __future__ import annotations

import asyncio
import logging
import random
import warnings
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from alignment.generation import SampledCompletion, SamplingParams
from alignment.serve.config import BatchingConfig, ServeConfig
from codealign.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Choice:
    text: str
    completion_tokens: int
    finish_reason: str  # "stop": the body, EOS or a stop sequence ended it; "length": max_tokens did


class Engine:
    def __init__(self, model: Any, tokenizer: Any, quantize: str = "none"):
        self.model, self.tokenizer, self.quantize = model, tokenizer, quantize
        self.max_context = int(getattr(model.config, "max_position_embeddings", 0) or 0) or None

    @classmethod
    def load(cls, checkpoint: str, cfg: ServeConfig) -> Engine:
        import torch

        from alignment.generation import load_policy

        torch.set_num_threads(cfg.threads())
        model, tokenizer = load_policy(str(checkpoint))
        device = cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() and cfg.quantize == "none" else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is visible")
        model.to(device)
        if cfg.quantize == "int8":
            model = quantize_int8(model)
        model.eval()
        return cls(model, tokenizer, cfg.quantize)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def generate(
        self, prompts: list[str], params: SamplingParams, batch_size: int
    ) -> list[SampledCompletion]:
        """One sample per prompt (a prompt listed n times gets n samples; its prefill is shared)."""
        from alignment.generation import generate_rollouts

        rows = generate_rollouts(
            (self.model, self.tokenizer),
            prompts,
            n=1,
            temperature=params.temperature,
            top_p=params.top_p,
            max_new_tokens=params.max_new_tokens,
            seed=params.seed,
            batch_size=batch_size,
        )
        return [row[0] for row in rows]

    def finish(self, completion: SampledCompletion, max_tokens: int, stops: list[str]) -> Choice:
        """The completion as the client asked for it: at most ``max_tokens``, cut before the first stop."""
        text, ids, finished = completion.text, completion.token_ids, completion.finished
        if len(ids) > max_tokens:  # sampled in a batch that ran to a larger max_tokens
            ids = ids[:max_tokens]
            text, finished = self.tokenizer.decode(ids, skip_special_tokens=True), False
        cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
        if cuts:
            text = text[: min(cuts)]
            return Choice(text, len(self.tokenizer(text, add_special_tokens=False)["input_ids"]), "stop")
        return Choice(text, len(ids), "stop" if finished else "length")


def quantize_int8(model: Any) -> Any:
    """torch's dynamic int8 quantization of every ``Linear`` (weights int8, activations quantized per call)."""
    import torch

    try:
        quantize_dynamic = torch.ao.quantization.quantize_dynamic
    except AttributeError:
        raise UserError(
            f"--quantize int8: this torch ({torch.__version__}) has no quantize_dynamic"
        ) from None
    with warnings.catch_warnings():
        # torch announces a move of this API to torchao; it is still torch's own here and works as documented
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        return quantize_dynamic(model.to("cpu"), {torch.nn.Linear}, dtype=torch.qint8)


@dataclass(eq=False)
class Job:
    """One request's generation: every prompt sampled ``n`` times with one set of parameters."""

    prompts: list[str]
    n: int
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None = None
    future: asyncio.Future = field(default=None, repr=False)  # type: ignore[assignment]
    arrived: float = 0.0

    @property
    def sequences(self) -> int:
        return len(self.prompts) * self.n

    @property
    def group(self) -> tuple | None:
        """Jobs of one group may share a generate call; a seeded job shares with none."""
        return None if self.seed is not None else (self.temperature, self.top_p)


@dataclass
class BatchStats:
    calls: int = 0  # generate calls
    sequences: int = 0
    jobs: int = 0
    dropped: int = 0  # jobs whose client left before their batch started
    largest: int = 0  # most jobs in one call


class Batcher:
    """See the module docstring. ``generate(prompts, params, batch_size)`` is :meth:`Engine.generate`."""

    def __init__(
        self,
        generate: Callable[[list[str], SamplingParams, int], list[SampledCompletion]],
        cfg: BatchingConfig,
    ):
        self._generate = generate
        self.cfg = cfg
        self.stats = BatchStats()
        self._waiting: deque[Job] = deque()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def submit(self, job: Job) -> list[SampledCompletion]:
        """The job's completions, prompt by prompt, ``n`` each (cancel the await to withdraw it)."""
        loop = asyncio.get_running_loop()
        job.future, job.arrived = loop.create_future(), loop.time()
        self._waiting.append(job)
        self._wake.set()
        return await job.future

    def _drop_gone(self) -> None:
        kept = [j for j in self._waiting if not j.future.done()]
        self.stats.dropped += len(self._waiting) - len(kept)
        self._waiting = deque(kept)

    async def _wait(self, timeout: float | None) -> bool:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def _next_batch(self) -> list[Job]:
        loop = asyncio.get_running_loop()
        while True:
            self._drop_gone()
            if self._waiting:
                break
            await self._wait(None)
        head = self._waiting[0]
        deadline = head.arrived + self.cfg.wait_ms / 1000
        while head.group is not None:  # a seeded job runs alone: nothing to wait for
            waiting = sum(j.sequences for j in self._waiting if j.group == head.group)
            remaining = deadline - loop.time()
            if waiting >= self.cfg.max_batch_size or remaining <= 0 or not await self._wait(remaining):
                break
        self._drop_gone()
        if not self._waiting:
            return []
        head = self._waiting.popleft()
        batch, size, rest = [head], head.sequences, deque()
        for job in self._waiting:
            if (
                head.group is not None
                and job.group == head.group
                and size + job.sequences <= self.cfg.max_batch_size
            ):
                batch.append(job)
                size += job.sequences
            else:
                rest.append(job)
        self._waiting = rest
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            head = batch[0]
            params = SamplingParams(
                head.temperature,
                head.top_p,
                max(j.max_tokens for j in batch),
                head.seed if head.seed is not None else random.SystemRandom().randrange(2**31),
            )
            prompts = [p for job in batch for p in job.prompts for _ in range(job.n)]
            try:
                flat = await loop.run_in_executor(
                    self._executor, self._generate, prompts, params, self.cfg.max_batch_size
                )
            except Exception as exc:
                log.exception("generate failed")
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            self.stats.calls += 1
            self.stats.sequences += len(prompts)
            self.stats.jobs += len(batch)
            self.stats.largest = max(self.stats.largest, len(batch))
            start = 0
            for job in batch:
                mine, start = flat[start : start + job.sequences], start + job.sequences
                if not job.future.done():
                    job.future.set_result(mine)
