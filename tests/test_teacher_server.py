"""The teacher server and its client under bad input: every bad request gets a 4xx
JSON error, limits hold, a bearer token is required off loopback, and the client retries what
is worth retrying and names the URL. Servers bind 127.0.0.1 only, on a tiny random Llama."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from scope_lib import teacher_server
from scope_lib.teacher import LocalTeacher, ServerTeacher

VOCAB = 64


def toy_model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048)
    return LlamaForCausalLM(config).eval()


@contextmanager
def running(model=None, **kwargs):
    """A teacher server on 127.0.0.1 (a free port), serving in a thread; yields (base url, server)."""
    server = teacher_server.serve(model if model is not None else toy_model(), "toy", "127.0.0.1", 0, **kwargs)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def toy_server():
    limits = teacher_server.ServerLimits(max_body_bytes=20_000, max_prompts=8, max_prompt_tokens=100,
                                         max_batch_tokens=64, read_timeout_s=5.0)
    with running(limits=limits) as (url, server):
        yield url, server


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def request(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, headers, parsed JSON body) of one plain HTTP request."""
    connection = http.client.HTTPConnection("127.0.0.1", _port(url), timeout=10)
    try:
        if method == "POST":  # the server takes JSON bodies only (415 otherwise)
            headers = {"Content-Type": "application/json", **(headers or {})}
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, json.loads(response.read())
    finally:
        connection.close()


def raw_request(url: str, data: bytes) -> tuple[int, dict]:
    """Send raw bytes (possibly not HTTP at all) and parse the status line and JSON body."""
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    reply = b"".join(chunks)
    assert reply, "connection dropped with no HTTP status"
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def completions(prompt, **extra) -> bytes:
    return json.dumps({"model": "toy", "prompt": prompt, "echo": True, "max_tokens": 1, "logprobs": 1, **extra}).encode()


BAD_POSTS = [
    ("malformed JSON", b'{"prompt": [[1, 2]', 400, "malformed JSON"),
    ("not UTF-8", b'{"prompt": "\xff"}', 400, "UTF-8"),
    ("JSON array", b"[1, 2]", 400, "JSON object"),
    ("no prompt", json.dumps({"echo": True}).encode(), 400, "prompt"),
    ("prompt not a list", completions("hello"), 400, "token-id lists"),
    ("no prompts", completions([]), 400, "non-empty list"),
    ("empty token list", completions([[1, 2], []]), 400, "prompt[1]: empty token list"),
    ("negative id", completions([[1, -1]]), 400, "prompt[0][1]: -1"),
    ("id past vocabulary", completions([[1, VOCAB]]), 400, f"[0, {VOCAB})"),
    ("float id", completions([[1.5]]), 400, "prompt[0][0]: 1.5"),
    ("string id", completions([["3"]]), 400, "prompt[0][0]: '3'"),
    ("bool id", completions([[True]]), 400, "prompt[0][0]: True"),
    ("null id", completions([[None]]), 400, "prompt[0][0]: None"),
    ("NaN id", b'{"model": "toy", "echo": true, "prompt": [[NaN]]}', 400, "prompt[0][0]: nan"),
    ("nested too deep", b"[" * 100_00 + b"]" * 100_00, 400, ""),
    ("no echo", completions([[1, 2]], echo=False), 400, "echo"),
    ("generation", completions([[1, 2]], max_tokens=16), 400, "max_tokens"),
    ("unknown model", completions([[1, 2]], model="gpt-9"), 404, "gpt-9"),
    ("too many prompts", completions([[1, 2]] * 9), 400, "--max-prompts"),
    ("prompt too long", completions([[1] * 101]), 400, "--max-prompt-tokens"),
    ("body too large", completions([[1] * 100] * 8) + b" " * 20_000, 413, "--max-body-bytes"),
]


@pytest.mark.parametrize("body,status,fragment", [b[1:] for b in BAD_POSTS], ids=[b[0] for b in BAD_POSTS])
def test_bad_post_gets_a_4xx_json_error(toy_server, body, status, fragment):
    url, _ = toy_server
    got, headers, payload = request(url, "POST", "/v1/completions", body, {"Content-Type": "application/json"})
    assert got == status, payload
    assert headers["Content-Type"] == "application/json"
    assert fragment in payload["error"]["message"] and payload["error"]["code"] == status


@pytest.mark.parametrize("data,status,fragment", [
    (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n", 411, "Content-Length"),
    (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400, "Content-Length"),
    (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{}",
     400, "body ended"),
    (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", 413, "--max-body-bytes"),
    (b"POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411, "chunked"),
    (b"PUT /v1/completions HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405, "PUT"),
    (b"DELETE /v1/models HTTP/1.1\r\n\r\n", 405, "DELETE"),
    (b"GET /admin HTTP/1.1\r\n\r\n", 404, "/admin"),
    (b"POST /v1/chat HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 404, "/v1/chat"),
    (b"hello there you\r\n\r\n", 400, ""),
    (b"GET / HTTP/2.0\r\n\r\n", 400, ""),
], ids=["no length", "negative length", "short body", "huge length", "chunked", "PUT", "DELETE", "bad GET path",
        "bad POST path", "not HTTP", "HTTP/2.0"])
def test_malformed_http_gets_a_4xx_json_error(toy_server, data, status, fragment):
    url, _ = toy_server
    got, payload = raw_request(url, data)
    assert got == status, payload
    assert fragment in payload["error"]["message"]


def test_server_still_serves_after_bad_requests(toy_server):
    url, _ = toy_server
    for _ in range(3):
        raw_request(url, b'POST /v1/completions HTTP/1.1\r\nContent-Length: 5\r\n\r\n{"a":')
    status, _, payload = request(url, "POST", "/v1/completions", completions([[1, 2, 3]]))
    assert status == 200 and len(payload["choices"][0]["logprobs"]["token_logprobs"]) == 3


def test_client_names_url_and_server_message_on_4xx(toy_server):
    url, _ = toy_server
    client = ServerTeacher(url, "toy", request_batch_size=2, retries=3, backoff_s=0.01)
    ids = torch.tensor([[1, 2, VOCAB + 5]])
    with pytest.raises(RuntimeError, match=rf"{url}/v1/completions answered HTTP 400: prompt\[0\]\[2\]"):
        client.score(ids, torch.ones_like(ids))
    with pytest.raises(RuntimeError, match=r"HTTP 404: model 'other'"):
        ServerTeacher(url, "other", retries=0).score(torch.tensor([[1, 2]]), torch.ones(1, 2, dtype=torch.long))


def test_batched_server_scores_equal_local_scores(toy_server):
    # Prompts of many lengths, several per request and several batches per request (64 tokens each).
    url, _ = toy_server
    model = toy_model()
    generator = torch.Generator().manual_seed(1)
    lengths = [1, 2, 5, 17, 40, 3, 64, 9, 30, 12, 7]
    ids = torch.randint(0, VOCAB, (len(lengths), max(lengths)), generator=generator)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        mask[row, max(lengths) - n:] = 1  # left padding, as rollouts are
    local = LocalTeacher(model).score(ids, mask)
    remote = ServerTeacher(url, "toy", request_batch_size=4, retries=0).score(ids, mask)
    # A row's first real token has nothing before it: the server echoes None (0); locally it is
    # "scored" from padding. Every later token must agree.
    first = torch.zeros_like(mask, dtype=torch.bool)
    first[torch.arange(len(lengths)), max(lengths) - torch.tensor(lengths)] = True
    scored = mask.bool() & ~first
    torch.testing.assert_close(remote[scored], local[scored], rtol=1e-5, atol=1e-5)
    assert (remote[~scored] == 0).all()


# --- authentication ---------------------------------------------------------------------------


def test_bearer_token_required_when_set():
    with running(api_key="s3cret") as (url, _):
        body = completions([[1, 2]])
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            status, response_headers, payload = request(url, "POST", "/v1/completions", body, headers)
            assert status == 401 and "API key" in payload["error"]["message"]
            assert response_headers["WWW-Authenticate"] == "Bearer"
        assert request(url, "GET", "/v1/models")[0] == 401
        assert request(url, "GET", "/v1/models", headers={"Authorization": "Bearer s3cret"})[0] == 200
        ok = request(url, "POST", "/v1/completions", body, {"Authorization": "Bearer s3cret"})
        assert ok[0] == 200
        ids = torch.tensor([[1, 2, 3]])
        assert ServerTeacher(url, "toy", api_key="s3cret", retries=0).score(ids, torch.ones_like(ids)).shape == (1, 3)
        with pytest.raises(RuntimeError, match="HTTP 401"):
            ServerTeacher(url, "toy", api_key="", retries=0).score(ids, torch.ones_like(ids))


def test_client_reads_the_key_from_the_environment(monkeypatch):
    monkeypatch.setenv("SCOPE_TEACHER_API_KEY", "from-env")
    with running(api_key="from-env") as (url, _):
        ids = torch.tensor([[4, 5]])
        assert ServerTeacher(url, "toy", retries=0).score(ids, torch.ones_like(ids))[0, 1] < 0


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.7", "teacher.example.org"])
def test_off_loopback_without_a_key_is_refused_before_binding(host):
    with pytest.raises(ValueError, match="API key"):
        teacher_server.serve(toy_model(), "toy", host, 0)


def test_loopback_hosts():
    assert all(teacher_server.is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    assert not any(teacher_server.is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.org"))


def test_limits_are_checked():
    with pytest.raises(ValueError, match="max_prompts"):
        teacher_server.ServerLimits(max_prompts=0)
    with pytest.raises(ValueError, match="max_batch_tokens"):
        teacher_server.ServerLimits(max_batch_tokens=True)


def test_batches_split_by_padded_tokens():
    prompts = [[1] * 10, [1] * 10, [1] * 30, [1] * 100, [1] * 5]
    assert teacher_server._batches(prompts, 40) == [[0, 1], [2], [3], [4]]  # 2x10, then 2x30 > 40, ...
    assert teacher_server._batches(prompts, 1000) == [[0, 1, 2, 3, 4]]


# --- the client's retries ---------------------------------------------------------------------


@contextmanager
def stub_server(behaviour):
    """A loopback HTTP server whose POST handler is `behaviour(handler, attempt_number)`."""
    attempts = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            attempts.append(1)
            behaviour(self, len(attempts))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", attempts
    finally:
        server.shutdown()
        server.server_close()


def _reply(handler, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


GOOD_REPLY = {"choices": [{"index": 0, "logprobs": {"token_logprobs": [None, -0.5, -1.5]}}]}


def test_client_retries_transient_failures_then_succeeds():
    def flaky(handler, attempt):
        if attempt == 1:
            handler.close_connection = True  # drop the connection without a status: RemoteDisconnected
            return
        if attempt == 2:
            return _reply(handler, 503, {"error": {"message": "warming up"}})
        _reply(handler, 200, GOOD_REPLY)

    with stub_server(flaky) as (url, attempts):
        ids = torch.tensor([[7, 8, 9]])
        scores = ServerTeacher(url, "m", retries=3, backoff_s=0.01).score(ids, torch.ones_like(ids))
        assert len(attempts) == 3
        torch.testing.assert_close(scores, torch.tensor([[0.0, -0.5, -1.5]]))


def test_client_does_not_retry_a_bad_request_and_gives_up_after_retries():
    with stub_server(lambda h, a: _reply(h, 400, {"error": {"message": "prompt[0]: nope"}})) as (url, attempts):
        with pytest.raises(RuntimeError, match=rf"{url}/v1/completions answered HTTP 400: prompt\[0\]: nope"):
            ServerTeacher(url, "m", retries=3, backoff_s=0.01).score(torch.ones(1, 2, dtype=torch.long),
                                                                     torch.ones(1, 2, dtype=torch.long))
        assert len(attempts) == 1
    with stub_server(lambda h, a: _reply(h, 503, {"error": {"message": "busy"}})) as (url, attempts):
        with pytest.raises(RuntimeError, match=r"HTTP 503: busy"):
            ServerTeacher(url, "m", retries=2, backoff_s=0.01).score(torch.ones(1, 2, dtype=torch.long),
                                                                     torch.ones(1, 2, dtype=torch.long))
        assert len(attempts) == 3


def test_dropped_connection_names_the_url():
    # The old client raised a bare RemoteDisconnected that named nothing.
    def drop(handler, attempt):
        handler.close_connection = True

    with stub_server(drop) as (url, attempts):
        with pytest.raises(RuntimeError, match=rf"teacher server {url}/v1/completions failed after 2 attempt"):
            ServerTeacher(url, "m", retries=1, backoff_s=0.01).score(torch.ones(1, 2, dtype=torch.long),
                                                                     torch.ones(1, 2, dtype=torch.long))
        assert len(attempts) == 2


@pytest.mark.parametrize("reply,fragment", [
    ({"choices": []}, "0 choices for 1 prompts"),
    ({"choices": [{"index": 3, "logprobs": {"token_logprobs": [None]}}]}, "index 3"),
    ({"choices": [{"index": 0}]}, "token_logprobs"),
    ({"choices": [{"index": 0, "logprobs": {"token_logprobs": [None, "x"]}}]}, "token_logprobs"),
    ({"choices": [{"index": 0, "logprobs": {"token_logprobs": [None]}}]}, "echoed 1 log-probs"),
])
def test_malformed_replies_name_the_url(reply, fragment):
    with stub_server(lambda h, a: _reply(h, 200, reply)) as (url, _):
        with pytest.raises(RuntimeError, match=fragment) as info:
            ServerTeacher(url, "m", retries=0).score(torch.ones(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.long))
        assert url in str(info.value)


def test_a_body_not_sent_in_time_gets_408():
    # A client that announces a body and stalls cannot hold a server thread for ever.
    limits = teacher_server.ServerLimits(read_timeout_s=0.3)
    with running(limits=limits) as (url, _):
        with socket.create_connection(("127.0.0.1", _port(url)), timeout=10) as sock:
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                         b"{\"prompt\":")
            began = time.perf_counter()
            reply = sock.recv(65536)
            waited = time.perf_counter() - began
            while chunk := sock.recv(65536):
                reply += chunk
        assert reply.split()[1] == b"408" and b"not received within 0.3 s" in reply
        assert 0.2 < waited < 5
