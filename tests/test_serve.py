"""`codealign serve` over real HTTP: the official `openai` client, keys, rate limits, caps, verify, disconnects.

Each test starts the app under uvicorn in a thread on an ephemeral port, with the test-preset model and a
temp database; nothing asserts on timing (waits are liveness waits with generous deadlines).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from alignment.generation import SampledCompletion
from alignment.serve.config import ServeConfig
from alignment.serve.engine import Engine
from codealign.config import load_config
from db.keys import create_key, revoke_key

MODEL = "tiny-test"
PROMPT = 'def add(a, b):\n    """Return a + b."""\n'
_names = itertools.count()


@dataclass
class Running:
    url: str
    key: str
    key_name: str
    service: object

    def client(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(api_key=key or self.key, base_url=self.url + "/v1", max_retries=0, timeout=120)

    def post(self, body=None, key: str | None = None, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.key}", **kwargs.pop("headers", {})}
        return httpx.post(self.url + "/v1/completions", json=body, headers=headers, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    import torch

    threads = torch.get_num_threads()
    yield Engine.load(str(tiny_model_dir), ServeConfig(device="cpu"))
    torch.set_num_threads(threads)  # Engine.load sets it for the process; later tests get theirs back


class Scripted(Engine):
    """The real tokenizer, and completions the test chose: ``reply(prompt) -> text``; ``gate`` holds calls."""

    def __init__(self, engine: Engine, reply, gate: threading.Event | None = None):
        super().__init__(engine.model, engine.tokenizer)
        self.reply, self.gate, self.calls = reply, gate, []

    def generate(self, prompts, params, batch_size):
        self.calls.append(list(prompts))
        if self.gate is not None:
            self.gate.wait(120)
        texts = [self.reply(p) for p in prompts]
        return [
            SampledCompletion(t, self.tokenizer(t, add_special_tokens=False)["input_ids"], True)
            for t in texts
        ]


@contextlib.contextmanager
def serving(db, engine: Engine, model: str = MODEL, **overrides):
    import uvicorn

    from alignment.commands.serve import listen
    from alignment.serve.app import create_app

    cfg = load_config(ServeConfig, None, overrides)
    name = f"client{next(_names)}"
    with db.session() as session:
        _, key = create_key(session, name, created_by="test")
    app = create_app(cfg, db, engine, model)
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield Running(f"http://127.0.0.1:{sock.getsockname()[1]}", key, name, app.state.service)
    finally:
        server.should_exit = True
        thread.join(60)


def _error(response: httpx.Response) -> dict:
    assert response.headers["content-type"].startswith("application/json"), response.text[:200]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


# ------------------------------------------------------------------------------ the openai client
def test_openai_client_completes_with_n_stop_and_seed(db, engine):
    with serving(db, engine) as srv:
        client = srv.client()
        assert [m.id for m in client.models.list().data] == [MODEL]
        # seeded requests are served alone and reproduce: find a seed whose sample has text to stop in
        for seed in range(20):
            free = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=12, n=3, seed=seed)
            longest = max(free.choices, key=lambda c: len(c.text))
            if len(longest.text.strip()) >= 3:
                break
        stop = longest.text.strip()[1]
        cut = client.completions.create(
            model=MODEL, prompt=PROMPT, max_tokens=12, n=3, seed=seed, stop=[stop, "@@"]
        )
    assert len(free.choices) == 3 and [c.index for c in free.choices] == [0, 1, 2]
    assert free.object == "text_completion" and free.model == MODEL
    prompt_tokens = len(engine.tokenizer(PROMPT, add_special_tokens=False)["input_ids"])
    assert free.usage.prompt_tokens == prompt_tokens
    assert free.usage.total_tokens == prompt_tokens + free.usage.completion_tokens
    for before, after in zip(free.choices, cut.choices):
        assert after.text == before.text.split(stop)[0]
        assert after.finish_reason == ("stop" if stop in before.text else before.finish_reason)
    assert any(stop in c.text for c in free.choices)
    assert cut.usage.completion_tokens < free.usage.completion_tokens


def test_openai_client_gets_its_exception_classes(db, engine):
    with serving(db, engine, requests={"max_n": 4}) as srv:
        client = srv.client()
        with pytest.raises(openai.AuthenticationError, match="invalid API key"):
            srv.client("ca-" + "x" * 43).completions.create(model=MODEL, prompt=PROMPT)
        bad = [
            ({"n": 5}, "n"),
            ({"max_tokens": 0}, "max_tokens"),
            ({"max_tokens": 10_000}, "max_tokens"),
            ({"logprobs": 2}, "logprobs"),
            ({"temperature": 3}, "temperature"),
            ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
            ({"prompt": [[1, 2, 3]]}, "prompt"),
        ]
        for kwargs, param in bad:
            kwargs = {"model": MODEL, "prompt": PROMPT, **kwargs}
            with pytest.raises(openai.BadRequestError) as caught:
                client.completions.create(**kwargs)
            assert caught.value.param == param, (kwargs, caught.value)
        with pytest.raises(openai.NotFoundError, match="does not exist"):
            client.completions.create(model="gpt-4", prompt=PROMPT)
        with db.session() as session:
            revoke_key(session, srv.key_name)
        with pytest.raises(openai.AuthenticationError, match="was revoked"):
            client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=2)


def test_requests_per_minute_per_key_then_429_with_retry_after(db, engine):
    with serving(db, engine, limits={"requests_per_minute": 2}) as srv:
        client = srv.client()
        for _ in range(2):
            client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=2)
        with pytest.raises(openai.RateLimitError) as caught:
            client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=2)
        with db.session() as session:
            _, other = create_key(session, "someone-else", created_by="test")
        fine = srv.client(other).completions.create(model=MODEL, prompt=PROMPT, max_tokens=2)
    retry = caught.value.response.headers["retry-after"]
    assert retry.isdigit() and 1 <= int(retry) <= 60
    assert caught.value.code == "rate_limit_exceeded" and caught.value.type == "requests"
    assert len(fine.choices) == 1  # the limit is per key


def test_tokens_per_minute_charge_what_a_request_may_use(db, engine):
    prompt_tokens = len(engine.tokenizer(PROMPT, add_special_tokens=False)["input_ids"])
    budget = 2 * (prompt_tokens + 8) + 4  # room for two requests of max_tokens=8, not three
    with serving(db, engine, limits={"tokens_per_minute": budget}) as srv:
        client = srv.client()
        with pytest.raises(openai.BadRequestError) as too_big:  # could never fit: retrying will not help
            client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=budget)
        for _ in range(2):
            client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8)
        with pytest.raises(openai.RateLimitError) as caught:
            client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8)
    assert too_big.value.code == "request_too_large"
    assert caught.value.type == "tokens" and int(caught.value.response.headers["retry-after"]) >= 1


# ------------------------------------------------------------------------------ plain HTTP
@pytest.mark.parametrize(
    "route", [("GET", "/v1/models"), ("GET", f"/v1/models/{MODEL}"), ("POST", "/v1/completions")]
)
def test_every_route_but_health_needs_a_key(db, engine, route):
    with serving(db, engine) as srv:
        health = httpx.get(srv.url + "/health")
        method, path = route
        anonymous = httpx.request(method, srv.url + path, json={"model": MODEL, "prompt": "x"})
        wrong_scheme = httpx.request(method, srv.url + path, headers={"Authorization": f"Basic {srv.key}"})
        allowed = httpx.request(
            method,
            srv.url + path,
            json={"model": MODEL, "prompt": "x", "max_tokens": 1},
            headers={"Authorization": f"Bearer {srv.key}"},
            timeout=120,
        )
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert anonymous.status_code == 401 and _error(anonymous)["code"] == "missing_api_key"
    assert "Bearer" in _error(anonymous)["message"] and anonymous.headers["www-authenticate"] == "Bearer"
    assert wrong_scheme.status_code == 401 and "scheme" in _error(wrong_scheme)["message"]
    assert allowed.status_code == 200, allowed.text


BAD_BODIES = [
    (b"{not json", 400, None),
    (b"[1, 2]", 400, None),
    (b"", 400, None),
    (b'{"prompt": "x"}', 400, "model"),
    (b'{"model": "tiny-test"}', 400, "prompt"),
    (b'{"model": "tiny-test", "prompt": ""}', 400, "prompt"),
    (b'{"model": "tiny-test", "prompt": []}', 400, "prompt"),
    (b'{"model": "tiny-test", "prompt": 12}', 400, "prompt"),
    (b'{"model": "tiny-test", "prompt": "x", "n": "three"}', 400, "n"),
    (b'{"model": "tiny-test", "prompt": "x", "top_p": 0}', 400, "top_p"),
    (b'{"model": "tiny-test", "prompt": "x", "stop": ""}', 400, "stop"),
    (b'{"model": "tiny-test", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}', 400, "stop"),
    (b'{"model": "tiny-test", "prompt": "x", "stream": true}', 400, "stream"),
    (b'{"model": "tiny-test", "prompt": "x", "verify": {}}', 400, "verify"),
    (b'{"model": "tiny-test", "prompt": "x", "verify": {"tests": []}}', 400, "verify"),
    (b'{"model": "tiny-test", "prompt": "x", "verify": {"task_id": "no/such/task"}}', 400, "verify.task_id"),
    (b'{"model": "tiny-test", "prompt": "' + b"x " * 700 + b'"}', 400, "max_tokens"),  # past the context
    (b'{"model": "tiny-test", "prompt": ["a", "b", "c", "d", "e"]}', 400, "prompt"),
    (b'{"model": 5, "prompt": "x"}', 400, "model"),
]


def test_bad_input_is_an_openai_json_error_never_a_500_or_html(db, engine):
    with serving(db, engine, requests={"max_prompts": 4}) as srv:
        answers = [
            srv.post(content=body, headers={"Content-Type": "application/json"}) for body, _, _ in BAD_BODIES
        ]
        not_found = httpx.get(srv.url + "/v1/nothing", headers={"Authorization": f"Bearer {srv.key}"})
        wrong_method = httpx.delete(srv.url + "/v1/models", headers={"Authorization": f"Bearer {srv.key}"})
        docs = httpx.get(srv.url + "/docs")
    for (body, status, param), response in zip(BAD_BODIES, answers):
        error = _error(response)
        assert (response.status_code, error["param"]) == (status, param), (body[:60], error)
        assert error["message"] and "\n" not in error["message"]
    assert not_found.status_code == 404 and _error(not_found)["code"] == "not_found"
    assert wrong_method.status_code == 405 and _error(wrong_method)["code"] == "method_not_allowed"
    assert docs.status_code == 404 and "html" not in docs.headers["content-type"]


def test_a_body_over_the_limit_is_refused_before_parsing(db, engine):
    big = b'{"model": "tiny-test", "prompt": "' + b"x" * 5000 + b'"}'

    def chunks():
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    with serving(db, engine, requests={"max_body_bytes": 4096}) as srv:
        declared = srv.post(content=big)
        streamed = srv.post(content=chunks())  # no Content-Length: counted as it arrives
        fine = srv.post({"model": MODEL, "prompt": PROMPT, "max_tokens": 1})
    for response in (declared, streamed):
        assert response.status_code == 413 and _error(response)["code"] == "request_too_large"
    assert fine.status_code == 200


def test_concurrent_requests_are_answered_from_one_generate_call(db, engine):
    # the window is long; the batch closes as soon as its four sequences are there
    with serving(db, engine, batching={"max_batch_size": 4, "wait_ms": 30_000}) as srv:
        prompts = [PROMPT, "def f(x):\n", "def g(s):\n    ", PROMPT]
        answers: list = [None] * 4

        def ask(i: int) -> None:
            answers[i] = srv.post({"model": MODEL, "prompt": prompts[i], "max_tokens": 3 + i})

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = srv.service.batcher.stats
    assert [a.status_code for a in answers] == [200] * 4
    assert (stats.calls, stats.largest, stats.sequences) == (1, 4, 4)
    for i, answer in enumerate(answers):
        assert answer.json()["usage"]["completion_tokens"] <= 3 + i  # each cut to its own max_tokens


# ------------------------------------------------------------------------------ verify
def test_verify_returns_the_sandbox_verdict_beside_each_completion(db, engine):
    from codealign.tasks.spec import TaskSpec
    from db.tasks import import_tasks

    helper_prompt = "def _inc(x):\n    return x + 1\n\n\ndef f(x):\n"
    task = TaskSpec(
        "demo/0", "def double(x):\n", "double", ["assert double(2) == 4", "assert double(0) == 0"]
    )
    with db.session() as session:
        import_tasks(session, [task], "demo", created_by="test")
    replies = {
        PROMPT: "    return a + b\n",
        helper_prompt: "    return _inc(x)\n",
        task.prompt: "    return x * 2\n",
    }
    with serving(db, Scripted(engine, lambda p: replies.get(p, "    return 0\n"))) as srv:
        own = srv.post(
            {
                "model": MODEL,
                "prompt": [PROMPT, "def add(a, b):\n"],
                "verify": {"tests": ["assert add(1, 2) == 3"]},
            }
        )
        helper = srv.post(
            {"model": MODEL, "prompt": helper_prompt, "verify": {"tests": ["assert f(1) == 2"]}}
        )
        stored = srv.post({"model": MODEL, "n": 2, "verify": {"task_id": "demo/0"}})  # the task's prompt
    assert own.status_code == helper.status_code == stored.status_code == 200, own.text
    verdicts = [c["verification"] for c in own.json()["choices"]]
    assert [v["verdict"] for v in verdicts] == ["passed", "failed"]
    assert verdicts[1]["error_type"] == "AssertionError" and verdicts[1]["tests_total"] == 1
    assert helper.json()["choices"][0]["verification"]["passed"] is True  # the prompt's helper is seen
    stored_verdicts = [c["verification"] for c in stored.json()["choices"]]
    assert [(v["verdict"], v["tests_passed"], v["tests_total"]) for v in stored_verdicts] == [
        ("passed", 2, 2)
    ] * 2


def test_verify_can_be_switched_off(db, engine):
    with serving(db, engine, verify={"enabled": False}) as srv:
        answer = srv.post({"model": MODEL, "prompt": PROMPT, "verify": {"tests": ["assert True"]}})
    assert answer.status_code == 400 and "disabled" in _error(answer)["message"]


# ------------------------------------------------------------------------------ the guide's examples
def _guide_examples() -> tuple[list[str], list[str]]:
    """docs/serve.md's curl commands (continuation lines joined) and its Python blocks, as written."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "serve.md").read_text(encoding="utf-8")
    curls, blocks = [], []
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        if lang == "python":
            blocks.append(body)
        elif lang == "bash":
            lines = body.replace("\\\n", " ").splitlines()
            curls += [line.strip() for line in lines if line.strip().startswith("curl ")]
    return curls, blocks


def test_the_guides_curl_and_openai_examples_run_as_written(db, engine, monkeypatch):
    """The guide's commands against a server on another port: only the URL is changed."""
    curls, blocks = _guide_examples()
    assert curls and len(blocks) == 2
    scripted = Scripted(engine, lambda p: "    return a + b\n" if p == PROMPT else "    pass\n")
    with serving(db, scripted, model="quickstart-dpo") as srv:
        monkeypatch.setenv("CODEALIGN_KEY", srv.key)
        answers = []
        if shutil.which("curl"):
            for command in curls:
                done = subprocess.run(
                    ["bash", "-c", command.replace("http://127.0.0.1:8000", srv.url)],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=True,
                )
                answers.append(json.loads(done.stdout))
        script = "\n".join(blocks).replace(
            "http://127.0.0.1:8000", srv.url
        )  # one session, as a reader runs it
        printed = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
        ).stdout.splitlines()
    assert all(len(a["choices"]) == 2 and a["model"] == "quickstart-dpo" for a in answers), answers
    assert printed[:2] == ["stop '    return a + b\\n'"] * 2 and printed[-1] == "passed 2 2", printed


# ------------------------------------------------------------------------------ slots and disconnects
def _raw_request(url: str, key: str, body: bytes) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    head = (
        f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_a_client_that_disconnects_frees_its_slot_and_is_never_generated(db, engine):
    gate = threading.Event()
    scripted = Scripted(engine, lambda p: "    return 1\n", gate)
    with serving(db, scripted, batching={"max_batch_size": 1, "max_pending": 2, "wait_ms": 0}) as srv:
        first: list = []
        holder = threading.Thread(
            target=lambda: first.append(srv.post({"model": MODEL, "prompt": "def a():\n"}))
        )
        holder.start()
        _until(lambda: scripted.calls, "the first request did not reach the model")
        leaver = _raw_request(srv.url, srv.key, b'{"model": "tiny-test", "prompt": "def gone():\\n"}')
        _until(lambda: srv.service.pending == 2, "the second request was not queued")
        leaver.close()
        _until(lambda: srv.service.pending == 1, "the disconnected request kept its slot")
        gate.set()
        holder.join()
        after = srv.post({"model": MODEL, "prompt": "def b():\n"})
    assert first[0].status_code == 200 and after.status_code == 200
    assert scripted.calls == [["def a():\n"], ["def b():\n"]]  # "gone" never reached the model
    assert srv.service.batcher.stats.dropped == 1


def test_a_full_server_answers_503_with_retry_after(db, engine):
    gate = threading.Event()
    scripted = Scripted(engine, lambda p: "    return 1\n", gate)
    with serving(db, scripted, batching={"max_pending": 1, "wait_ms": 0}) as srv:
        first: list = []
        holder = threading.Thread(
            target=lambda: first.append(srv.post({"model": MODEL, "prompt": "def a():\n"}))
        )
        holder.start()
        _until(lambda: scripted.calls, "the first request did not reach the model")
        busy = srv.post({"model": MODEL, "prompt": "def b():\n"})
        gate.set()
        holder.join()
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert _error(busy)["code"] == "overloaded" and first[0].status_code == 200


# ------------------------------------------------------------------------------ int8 and the command
def test_int8_quantization_replaces_linear_layers_and_still_serves(tiny_model_dir, db):
    import torch

    threads = torch.get_num_threads()
    try:
        quantized = Engine.load(str(tiny_model_dir), ServeConfig(quantize="int8", device="cpu"))
    finally:
        torch.set_num_threads(threads)
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    modules = list(quantized.model.modules())
    assert not any(type(m) is torch.nn.Linear for m in modules)  # lm_head and every projection converted
    assert sum(isinstance(m, DynamicQuantizedLinear) for m in modules) >= 8
    with serving(db, quantized) as srv:
        answer = srv.client().completions.create(model=MODEL, prompt=PROMPT, max_tokens=4, temperature=0)
    assert answer.choices[0].finish_reason in ("stop", "length")


def test_serve_command_errors_are_one_line(db_url, tiny_model_dir, tmp_path, capsys):
    from alignment.cli import main

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        codes = [
            main(["--db", db_url, "serve"]),
            main(["--db", db_url, "serve", "--policy", str(tmp_path / "nowhere")]),
            main(["--db", db_url, "serve", "--policy", str(tiny_model_dir), "--port", str(port)]),
            main(["--db", db_url, "serve", "--policy", str(tiny_model_dir), "--quantize", "int4"]),
            main(["--db", db_url, "serve", "--policy", str(tiny_model_dir), "requests.max_n=0"]),
        ]
    finally:
        taken.close()
    err = capsys.readouterr().err.splitlines()
    assert codes == [2] * 5 and len(err) == 5, err
    assert "--policy is required" in err[0] and "neither a registered policy" in err[1]
    assert f"cannot listen on 127.0.0.1:{port}" in err[2] and "int4" in err[3] and "max_n" in err[4]
