"""The FastAPI app of ``codealign serve``: ``POST /v1/completions``, ``GET /v1/models``, ``GET /health``.

Order of checks for a completion (each failure is an OpenAI-shaped JSON error, see :mod:`alignment.serve.errors`):
body size (413, before anything is parsed) -> API key (401) -> JSON and parameters (400) -> the served model
(404) -> caps and context length (400) -> a free slot (503) -> rate limits of the key (429) -> the batcher ->
optional sandbox verification. A client that disconnects while its request waits frees its slot and its
request is dropped before it reaches the model (vLLM's pattern: the handler races a listener on the ASGI
``receive`` channel). No route serves HTML: the interactive docs pages are off.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from alignment.serve import errors
from alignment.serve.auth import require_key
from alignment.serve.config import ServeConfig
from alignment.serve.engine import Batcher, Engine, Job
from alignment.serve.errors import ApiError, bad_request
from alignment.serve.protocol import CompletionRequest
from alignment.serve.ratelimit import Charge, RateLimiter
from alignment.serve.verify import resolve_tests, run_verification
from db.keys import KeyInfo


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413 and never parsed. The body is read
    here (bounded) and replayed to the app, after which ``receive`` is the server's own again, so the app still
    sees the client's disconnect."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._too_large(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # gone before the body arrived
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._too_large(scope, receive, send)
            if not message.get("more_body"):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _too_large(self, scope, receive, send):
        response = errors.error_response(
            413, f"request body larger than {self.max_bytes} bytes", code="request_too_large"
        )
        await response(scope, receive, send)


async def until_disconnect(request: Request, work):
    """``await work``, unless the client goes first: then the work is cancelled (its slot freed)."""
    task = asyncio.ensure_future(work)

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return Response(status_code=499)  # nobody reads it: nginx's code for "client closed request"


@dataclass
class Served:
    name: str
    created: int


class CompletionService:
    def __init__(self, cfg: ServeConfig, db, engine: Engine, model_name: str):
        self.cfg, self.db, self.engine = cfg, db, engine
        self.model = Served(model_name, int(time.time()))
        self.limiter = RateLimiter(cfg.limits)
        self.batcher = Batcher(engine.generate, cfg.batching)
        self.pending = 0  # requests admitted and not answered: the slots of batching.max_pending

    def _check(self, req: CompletionRequest) -> None:
        caps = self.cfg.requests
        unsupported = req.unsupported()
        if unsupported:
            raise bad_request(
                f"{unsupported} is not supported by this server", unsupported, "unsupported_parameter"
            )
        if req.model != self.model.name:
            raise ApiError(
                404,
                f"the model {req.model!r} does not exist; this server serves {self.model.name!r}",
                param="model",
                code="model_not_found",
            )
        limits = [
            ("n", req.n, caps.max_n, ""),
            ("max_tokens", req.max_tokens, caps.max_tokens, ""),
            ("prompt", len(req.prompts()), caps.max_prompts, " prompts"),
            ("stop", len(req.stops()), caps.max_stop, " stop sequences"),
        ]
        for param, value, cap, unit in limits:
            if value is not None and value > cap:
                raise bad_request(f"{param}: at most {cap}{unit} on this server, got {value}", param)

    async def complete(self, req: CompletionRequest, key: KeyInfo) -> dict:
        self._check(req)
        tests = (
            await run_in_threadpool(resolve_tests, self.db, req.verify, self.cfg.verify)
            if req.verify
            else None
        )
        prompts = req.prompts() or ([tests.task_prompt] if tests and tests.task_prompt else [])
        if not prompts:
            raise bad_request("prompt is required (a string or a list of strings)", "prompt")
        n = req.n or 1
        max_tokens = req.max_tokens or self.cfg.requests.default_max_tokens
        prompt_tokens = self.engine.count_tokens(prompts)
        context = self.engine.max_context
        if context is not None and max(prompt_tokens) + max_tokens > context:
            raise bad_request(
                f"this model's maximum context length is {context} tokens; the prompt has {max(prompt_tokens)} "
                f"and max_tokens is {max_tokens}",
                "max_tokens",
                "context_length_exceeded",
            )
        if self.pending >= self.cfg.batching.max_pending:
            raise ApiError(
                503,
                f"the server is busy ({self.pending} requests pending); retry shortly",
                type="server_error",
                code="overloaded",
                headers={"Retry-After": "1"},
            )
        self.limiter.admit(key.id, Charge(sum(prompt_tokens) + n * len(prompts) * max_tokens))
        job = Job(
            prompts,
            n,
            max_tokens,
            self.cfg.temperature if req.temperature is None else req.temperature,
            self.cfg.top_p if req.top_p is None else req.top_p,
            req.seed,
        )
        self.pending += 1
        try:
            sampled = await self.batcher.submit(job)
        finally:
            self.pending -= 1
        stops = req.stops()
        choices = [self.engine.finish(c, max_tokens, stops) for c in sampled]
        body = [
            {"text": c.text, "index": i, "logprobs": None, "finish_reason": c.finish_reason}
            for i, c in enumerate(choices)
        ]
        if tests is not None:
            programs = [(prompts[i // n], c.text) for i, c in enumerate(choices)]
            for row, result in zip(body, await run_verification(programs, tests.tests, self.cfg.verify)):
                row["verification"] = result
        completion_tokens = sum(c.completion_tokens for c in choices)
        return {
            "id": "cmpl-" + secrets.token_hex(12),
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.model.name,
            "choices": body,
            "usage": {
                "prompt_tokens": sum(prompt_tokens),
                "completion_tokens": completion_tokens,
                "total_tokens": sum(prompt_tokens) + completion_tokens,
            },
        }

    def model_card(self) -> dict:
        return {
            "id": self.model.name,
            "object": "model",
            "created": self.model.created,
            "owned_by": "codealign",
        }


async def _parse(request: Request) -> CompletionRequest:
    raw = await request.body()
    try:
        return CompletionRequest.model_validate_json(raw or b"null")
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None


def create_app(cfg: ServeConfig, db, engine: Engine, model_name: str) -> FastAPI:
    service = CompletionService(cfg, db, engine, model_name)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        service.batcher.start()
        try:
            yield
        finally:
            await service.batcher.stop()

    app = FastAPI(title="codealign", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.service, app.state.db = service, db
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=cfg.requests.max_body_bytes)
    api = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])

    @api.post("/completions")
    async def completions(request: Request, key: Annotated[KeyInfo, Depends(require_key)]):
        req = await _parse(request)
        result = await until_disconnect(request, service.complete(req, key))
        return result if isinstance(result, Response) else JSONResponse(result)

    @api.get("/models")
    async def models() -> dict:
        return {"object": "list", "data": [service.model_card()]}

    @api.get("/models/{model_id:path}")
    async def model(model_id: str) -> dict:
        if model_id != service.model.name:
            raise ApiError(
                404, f"the model {model_id!r} does not exist", param="model", code="model_not_found"
            )
        return service.model_card()

    app.include_router(api)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    return app
