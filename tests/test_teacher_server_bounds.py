"""The teacher server bounds its work (scope_lib/teacher_server.py): prompts beyond the model's
context are refused, only JSON bodies are taken, a request has one deadline for all of its
reads, and connections are served by a fixed pool of workers behind a bounded queue."""

import json
import random
import select
import socket
import threading

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from scope_lib import teacher_server

VOCAB, CONTEXT = 64, 128


def toy_model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=CONTEXT)
    return LlamaForCausalLM(config).eval()


class Running:
    def __init__(self, **limits):
        self.server = teacher_server.serve(toy_model(), "toy", "127.0.0.1", 0,
                                           limits=teacher_server.ServerLimits(**limits))
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.port = self.server.server_address[1]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def server():
    running = Running(read_timeout_s=5.0)
    yield running
    running.close()


def read_reply(sock) -> tuple[int, dict]:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def post(port, body: bytes, content_type: str | None = "application/json") -> tuple[int, dict]:
    headers = f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    if content_type is not None:
        headers += f"Content-Type: {content_type}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(headers.encode() + b"\r\n" + body)
        return read_reply(sock)


def completions(prompts) -> bytes:
    return json.dumps({"model": "toy", "prompt": prompts, "echo": True, "max_tokens": 1, "logprobs": 1}).encode()


def test_prompt_beyond_the_models_context_is_400(server):
    rng = random.Random(1)
    too_long = [rng.randrange(VOCAB) for _ in range(rng.randrange(CONTEXT + 1, 4 * CONTEXT))]
    status, payload = post(server.port, completions([[1, 2], too_long]))
    assert status == 400, payload  # before: 200 with log-probs of positions the model never learned
    assert f"prompt[1]: {len(too_long)} tokens, beyond the model's context of {CONTEXT}" in payload["error"]["message"]
    status, payload = post(server.port, completions([too_long[:CONTEXT]]))
    assert status == 200 and len(payload["choices"][0]["logprobs"]["token_logprobs"]) == CONTEXT


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None])
def test_only_json_bodies_are_taken(server, content_type):
    # A web page may POST these cross-origin without a CORS preflight; JSON needs one.
    status, payload = post(server.port, completions([[1, 2, 3]]), content_type)
    assert status == 415, payload
    assert "application/json" in payload["error"]["message"]


def test_json_with_a_charset_is_taken(server):
    status, payload = post(server.port, completions([[1, 2, 3]]), "application/json; charset=utf-8")
    assert status == 200 and len(payload["choices"]) == 1


def test_a_trickling_sender_is_cut_off_by_the_request_deadline():
    # Each byte arrives well within any per-read timeout; only a deadline for the whole request ends it.
    running = Running(read_timeout_s=0.5)
    try:
        body = completions([[1, 2, 3]])
        data = (f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"X-Padding: {'p' * 200}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        with socket.create_connection(("127.0.0.1", running.port), timeout=30) as sock:
            sent = 0
            for byte in data:
                if select.select([sock], [], [], 0.05)[0]:  # the server answered (and closed): stop sending
                    break
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                sent += 1
            status, payload = read_reply(sock)
        assert status == 408 and "not received within 0.5 s" in payload["error"]["message"], payload
        assert sent < len(data)  # before: the whole request trickled in (about 20 s) and was served
    finally:
        running.close()


def test_idle_connections_get_a_bounded_pool_and_503_past_the_queue():
    running = Running(read_timeout_s=3.0, max_workers=2, max_queue=2)
    sockets = []
    try:
        threads_before = threading.active_count()
        for _ in range(8):  # idle: connected, nothing sent
            sockets.append(socket.create_connection(("127.0.0.1", running.port), timeout=30))
        # at most 2 served + 2 queued; the others are answered 503 at once (before any deadline) and
        # closed. On a loaded machine the workers may not yet have taken their first connections when
        # later ones arrive, so more than 4 can be refused: never fewer.
        answered: set = set()
        while len(answered) < 4:
            ready = select.select([s for s in sockets if s not in answered], [], [], 2.5)[0]
            assert ready, f"{len(answered)} connections answered before the deadline, expected at least 4"
            answered.update(ready)
        assert threading.active_count() == threads_before  # before: one more thread per connection
        replies = {sock: read_reply(sock) for sock in sockets}
        codes = sorted(reply[0] for reply in replies.values())
        busy = codes.count(503)
        assert busy >= 4 and set(codes) <= {503, 408} and codes.count(408) == len(codes) - busy, replies
        assert all("--max-queue" in reply[1]["error"]["message"] for reply in replies.values() if reply[0] == 503)
        # the idle connections the server took reach their deadline (408), and the server serves again
        assert post(running.port, completions([[5, 6, 7]]))[0] == 200
        assert running.server.refused_busy == busy
    finally:
        for sock in sockets:
            sock.close()
        running.close()
