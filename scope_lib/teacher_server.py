"""A minimal OpenAI-compatible completions server for scoring, speaking vLLM's protocol.

It answers what `scope_lib.teacher.ServerTeacher` asks a vLLM server: `POST /v1/completions`
with `prompt` as a list of token-id lists, `echo: true`, `max_tokens: 1`, `logprobs: N`;
each choice carries `logprobs.token_logprobs` for the echoed prompt tokens (`None` first).
It exists so the client is tested against a real HTTP server process on loopback, and so a
laptop can serve the tiny teacher the way the paper's cluster serves its 7B teacher.

    python -m scope_lib.teacher_server --model tiny --port 8000
    SCOPE_TEACHER_API_KEY=secret python -m scope_lib.teacher_server --model tiny --host 0.0.0.0

Bad requests. Every one gets a 4xx JSON error, OpenAI-style
(`{"error": {"message": ..., "type": ..., "code": ...}}`), naming what was wrong: malformed JSON
or HTTP (400), a prompt that is not a non-empty list of token ids inside the vocabulary, or that
is longer than the model's context (`max_position_embeddings`) (400), a missing or wrong bearer
token (401), an unknown path (404) or model (404), a method other than GET /v1/models and
POST /v1/completions (405), a request not sent in time (408), no Content-Length (411), a body
over the limit (413), a body that is not `Content-Type: application/json` (415: a web page can
POST text/plain or a form to a loopback server without a CORS preflight, but not JSON). A
failure of the model itself is a 500, also JSON. A full queue is a 503 (see Workers).

Limits (flags of this command, fields of `ServerLimits`):
- `--max-body-bytes` (32 MiB): refused before the body is read;
- `--max-prompts` (256): prompts per request (the client sends `teacher.request_batch_size`, 32);
- `--max-prompt-tokens` (16384: the paper's 4096 prompt + 12288 completion tokens);
- `--max-batch-tokens` (4096): padded tokens per forward pass, the scheduling unit below;
- `--max-workers` (32) threads serve connections, `--max-queue` (1024) accepted connections
  wait for one; beyond that a connection gets 503 at once (Workers, below);
- a client has 60 s from its connection's acceptance to send its whole request: one deadline
  for the request line, headers and body together, not per read, so a slow sender that trickles
  a byte at a time is cut off at 60 s too (408).

Authentication. With an API key (`--api-key`, or env `SCOPE_TEACHER_API_KEY`, which keeps it
out of `ps`), every request must carry `Authorization: Bearer <key>`. Binding anything other
than a loopback address without a key is refused at start: the server would score for anyone.
The server speaks plain HTTP, so the key crosses the network in clear: off a trusted network,
put a TLS proxy in front of it.

Scheduling. One thread runs the model. Each request is split into batches of at most
`max_batch_tokens` padded tokens (a prompt longer than that is a batch alone), and requests
take turns batch by batch, in arrival order (round robin). A small request that arrives
while a large one is being scored waits for at most the batch in progress (with k requests in
flight, one batch of each); it never waits for the whole large request, as it did behind the
old server's single lock. Prompts are bounded by the model's context, so with the tiny teacher
(128 positions) the batch a short request waits for is at most `max_batch_tokens` padded tokens
(README.md quotes the measured latencies; bench/teacher_server_latency.py measures them).

Workers. A fixed pool of `max_workers` threads serves connections taken from a queue of at most
`max_queue`; the listen backlog is 1024 connections, so a burst of hundreds of clients is queued,
not reset, and idle sockets cost a queue slot, not a thread each. When the queue is full a new
connection is answered 503 (which `ServerTeacher` retries) and closed.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import heapq
import hmac
import ipaddress
import itertools
import json
import os
import queue
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer

import torch

from scope_lib.logprobs import token_logprobs

API_KEY_ENV = "SCOPE_TEACHER_API_KEY"


@dataclasses.dataclass(frozen=True)
class ServerLimits:
    max_body_bytes: int = 32 * 1024 * 1024  # 256 prompts of 16k tokens are ~30 MB of JSON
    max_prompts: int = 256  # per request
    max_prompt_tokens: int = 16384  # per prompt: the paper's longest prompt + completion
    max_batch_tokens: int = 4096  # padded tokens per forward pass: what a small request waits for
    read_timeout_s: float = 60.0  # to send the request line, headers and body, all together
    max_workers: int = 32  # threads serving connections
    max_queue: int = 1024  # accepted connections waiting for a worker; more get 503

    def __post_init__(self):
        for name in ("max_body_bytes", "max_prompts", "max_prompt_tokens", "max_batch_tokens", "max_workers",
                     "max_queue"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ServerLimits.{name}: expected an integer >= 1, got {value!r}")
        if not self.read_timeout_s > 0:
            raise ValueError(f"ServerLimits.read_timeout_s: expected > 0, got {self.read_timeout_s!r}")


class BadRequest(Exception):
    """A request the server refuses: HTTP status and a message naming what was wrong."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


# ---------------------------------------------------------------------------------------------
# validation: JSON request -> token-id lists


def parse_prompts(request, *, model_name: str, vocab_size: int, limits: ServerLimits,
                  context_tokens: int | None = None) -> list[list[int]]:
    """The prompts of a completions request, or BadRequest naming the first thing wrong.

    `context_tokens`: the model's context (positions); a longer prompt has no meaningful log-probs."""
    if not isinstance(request, dict):
        raise BadRequest(400, f"expected a JSON object, got a JSON {type(request).__name__}")
    model = request.get("model")
    if model is not None and model != model_name:
        raise BadRequest(404, f"model {model!r} is not served here; this server serves {model_name!r}")
    if request.get("echo") is not True:
        raise BadRequest(400, "this server only scores: set echo=true (and max_tokens 0 or 1)")
    max_tokens = request.get("max_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or max_tokens not in (0, 1)):
        raise BadRequest(400, f"max_tokens: this server only scores, expected 0 or 1, got {max_tokens!r}")
    prompts = request.get("prompt")
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, list) for p in prompts):
        raise BadRequest(400, "prompt: expected a non-empty list of token-id lists")
    if len(prompts) > limits.max_prompts:
        raise BadRequest(400, f"prompt: {len(prompts)} prompts, over this server's limit of {limits.max_prompts} "
                              "per request (--max-prompts); send smaller requests")
    for index, ids in enumerate(prompts):
        if not ids:
            raise BadRequest(400, f"prompt[{index}]: empty token list; expected at least one token id")
        if len(ids) > limits.max_prompt_tokens:
            raise BadRequest(400, f"prompt[{index}]: {len(ids)} tokens, over this server's limit of "
                                  f"{limits.max_prompt_tokens} per prompt (--max-prompt-tokens)")
        if context_tokens is not None and len(ids) > context_tokens:
            raise BadRequest(400, f"prompt[{index}]: {len(ids)} tokens, beyond the model's context of "
                                  f"{context_tokens} tokens (max_position_embeddings)")
        for position, token in enumerate(ids):
            if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < vocab_size:
                raise BadRequest(400, f"prompt[{index}][{position}]: {token!r} is not a token id in "
                                      f"[0, {vocab_size})")
    return prompts


def _batches(prompts: list[list[int]], max_batch_tokens: int) -> list[list[int]]:
    """Consecutive prompt indices grouped so that rows x longest row <= max_batch_tokens."""
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index, ids in enumerate(prompts):
        if current and (len(current) + 1) * max(longest, len(ids)) > max_batch_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(index)
        longest = max(longest, len(ids))
    if current:
        batches.append(current)
    return batches


# ---------------------------------------------------------------------------------------------
# scoring and the fair scheduler


def score_prompts(model, prompts: list[list[int]]) -> list[list[float | None]]:
    """Echoed token log-probs of each prompt (None first), one padded forward pass."""
    device = next(model.parameters()).device
    longest = max(len(ids) for ids in prompts)
    input_ids = torch.zeros(len(prompts), longest, dtype=torch.long)
    mask = torch.zeros(len(prompts), longest, dtype=torch.long)
    for row, ids in enumerate(prompts):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
    # Right padding: real tokens never attend to it and position ids count only real tokens.
    with torch.no_grad():
        logp = token_logprobs(model, input_ids.to(device), mask.to(device)).cpu()
    return [[None] + logp[row, 1 : len(ids)].tolist() for row, ids in enumerate(prompts)]


class _Job:
    def __init__(self, prompts: list[list[int]], batches: list[list[int]]):
        self.prompts, self.batches, self.next_batch = prompts, batches, 0
        self.results: list = [None] * len(prompts)
        self.error: BaseException | None = None
        self.done = threading.Event()


class FairScheduler:
    """One scoring thread; requests take turns one batch at a time, in arrival order."""

    def __init__(self, score, max_batch_tokens: int):
        self._score, self._max_batch_tokens = score, max_batch_tokens
        self._ready: collections.deque[_Job] = collections.deque()
        self._wakeup = threading.Condition()
        self._stopped = False
        self.batch_seconds: collections.deque[float] = collections.deque(maxlen=10_000)  # recent batch times
        self._thread = threading.Thread(target=self._run, name="teacher-scorer", daemon=True)
        self._thread.start()

    def submit(self, prompts: list[list[int]]) -> list[list[float | None]]:
        job = _Job(prompts, _batches(prompts, self._max_batch_tokens))
        with self._wakeup:
            if self._stopped:
                raise RuntimeError("the server is shutting down")
            self._ready.append(job)
            self._wakeup.notify()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.results

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._ready and not self._stopped:
                    self._wakeup.wait()
                if self._stopped:
                    break
                job = self._ready.popleft()
            indices = job.batches[job.next_batch]
            job.next_batch += 1
            start = time.perf_counter()
            try:
                for index, values in zip(indices, self._score([job.prompts[i] for i in indices])):
                    job.results[index] = values
            except Exception as error:  # the model failed: this request gets a 500, the server goes on
                job.error = error
                job.done.set()
                continue
            finally:
                self.batch_seconds.append(time.perf_counter() - start)
            if job.next_batch < len(job.batches):
                with self._wakeup:
                    # Behind every request that arrived during this batch: that is the fairness.
                    self._ready.append(job)
            else:
                job.done.set()
        for job in self._ready:
            job.error = RuntimeError("the server is shutting down")
            job.done.set()

    def stop(self) -> None:
        with self._wakeup:
            self._stopped = True
            self._wakeup.notify_all()
        self._thread.join(timeout=30)


# ---------------------------------------------------------------------------------------------
# HTTP


class _Handler(BaseHTTPRequestHandler):
    server: TeacherServer
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive threads

    def setup(self) -> None:
        self.timeout = self.server.limits.read_timeout_s  # a backstop; the deadline below ends reading first
        self.expired = False
        self.requestline, self.command, self.request_version = "", None, "HTTP/1.0"  # until a request line is read
        super().setup()
        accepted = self.server.accepted_at.pop(id(self.request), None)
        self._deadline = self.server.deadlines.add(self, accepted)  # the whole request, from its acceptance

    def expire(self) -> None:
        """Called by the deadline watcher: reads end now (EOF), and the request gets 408."""
        self.expired = True
        try:
            self.connection.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def _request_read(self) -> None:
        self.server.deadlines.remove(self._deadline)

    def finish(self) -> None:
        self._request_read()
        super().finish()

    def _timeout_message(self) -> str:
        return f"request not received within {self.server.limits.read_timeout_s:g} s"

    def log_message(self, *args):  # keep test output clean
        pass

    def _reply(self, code: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        kind = "invalid_request_error" if code < 500 else "server_error"
        self._reply(code, {"error": {"message": message, "type": kind, "code": code}}, headers)

    def send_error(self, code, message=None, explain=None):
        # http.server's own errors (unparseable request line, header too long, unknown method,
        # HTTP/2.0) come here: JSON like ours, and 4xx, since each is the client's mistake.
        code = {HTTPStatus.NOT_IMPLEMENTED: 405, HTTPStatus.HTTP_VERSION_NOT_SUPPORTED: 400}.get(code, int(code))
        if self.expired:  # a request line or header cut short by the deadline
            code, message = 408, self._timeout_message()
        if code == 405:
            message = f"method {self.command!r} not allowed: use GET /v1/models or POST /v1/completions"
        self.close_connection = True
        # An unparseable request line leaves the version at HTTP/0.9, which has no status line or
        # headers: answer in HTTP/1.0 so the client reads a status.
        self.request_version = "HTTP/1.0" if self.request_version == "HTTP/0.9" else self.request_version
        self._error(code, message or HTTPStatus(code).phrase)

    def _authorized(self) -> bool:
        key = self.server.api_key
        if key is None:
            return True
        given = self.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
            return True
        self._error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'", {"WWW-Authenticate": "Bearer"})
        return False

    def handle(self) -> None:
        super().handle()
        if self.expired and not getattr(self, "_replied", False):  # cut off before a whole request line
            try:
                self.close_connection = True
                self._error(408, self._timeout_message())
            except OSError:
                pass

    def send_response(self, code, message=None):
        self._replied = True
        super().send_response(code, message)

    def do_GET(self):
        self._request_read()
        if self.path != "/v1/models":
            return self._error(404, f"unknown path {self.path!r}: use GET /v1/models or POST /v1/completions")
        if self._authorized():
            self._reply(200, {"object": "list", "data": [{"id": self.server.model_name, "object": "model"}]})

    def _body_length(self) -> int:
        if self.headers.get("Transfer-Encoding"):
            raise BadRequest(411, "chunked bodies are not accepted: send Content-Length")
        length = self.headers.get("Content-Length")
        if length is None:
            raise BadRequest(411, "Content-Length is required")
        if not (length.isascii() and length.isdigit()) or len(length) > 18:
            raise BadRequest(400, f"Content-Length: expected a byte count, got {length[:40]!r}")
        limit = self.server.limits.max_body_bytes
        if int(length) > limit:
            raise BadRequest(413, f"body of {int(length)} bytes is over this server's limit of {limit} "
                                  "(--max-body-bytes); send fewer prompts per request")
        return int(length)

    def _discard_body(self) -> None:
        """Read and drop an unread body (up to 2x the limit, 2 s), so that closing the socket
        does not reset the connection before the client has read the error."""
        length = self.headers.get("Content-Length", "")
        left = min(int(length), 2 * self.server.limits.max_body_bytes) if length.isdigit() and len(length) <= 18 else 0
        try:
            self.connection.settimeout(2.0)
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    def _read_json(self):
        length = self._body_length()
        media_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise BadRequest(415, f"Content-Type {media_type or '(none)'!r} is not accepted: send "
                                  "'Content-Type: application/json'")
        try:
            body = self.rfile.read(length)
        except OSError:
            if self.expired:
                raise TimeoutError from None
            raise
        if len(body) < length:
            if self.expired:
                raise TimeoutError
            raise BadRequest(400, f"body ended after {len(body)} of {length} bytes")
        self._request_read()
        try:
            return json.loads(body.decode("utf-8"))
        except UnicodeDecodeError:
            raise BadRequest(400, "body is not UTF-8 JSON") from None
        except json.JSONDecodeError as error:
            raise BadRequest(400, f"malformed JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
        except RecursionError:
            raise BadRequest(400, "malformed JSON: nested too deeply") from None

    def do_POST(self):
        if self.path != "/v1/completions":
            self.close_connection = True
            self._error(404, f"unknown path {self.path!r}: use POST /v1/completions")
            return self._discard_body()
        if not self._authorized():
            self.close_connection = True
            self._discard_body()
            return None
        body_read = False
        try:
            if self.expired:  # headers cut short by the deadline
                raise TimeoutError
            request = self._read_json()
            body_read = True
            server = self.server
            prompts = parse_prompts(request, model_name=server.model_name, vocab_size=server.vocab_size,
                                    limits=server.limits, context_tokens=server.context_tokens)
        except BadRequest as bad:
            self.close_connection = True  # the unread rest of a refused body must not be parsed as a request
            self._error(bad.status, bad.message)
            if not body_read:
                self._discard_body()
            return None
        except TimeoutError:
            self.close_connection = True
            return self._error(408, self._timeout_message())
        try:
            results = self.server.scheduler.submit(prompts)
        except Exception as error:
            return self._error(500, f"scoring failed: {type(error).__name__}: {error}")
        choices = [{"index": index, "text": "", "finish_reason": "length",
                    "logprobs": {"token_logprobs": values, "tokens": [str(t) for t in ids]}}
                   for index, (ids, values) in enumerate(zip(prompts, results))]
        self._reply(200, {"object": "text_completion", "model": self.server.model_name, "choices": choices})

    def __getattr__(self, name: str):
        # Any other method (PUT, DELETE, HEAD, ...) is the client's mistake: 405, not http.server's 501.
        if name.startswith("do_"):
            return lambda: self.send_error(HTTPStatus.NOT_IMPLEMENTED)
        raise AttributeError(name)


class Deadlines:
    """One thread that calls `handler.expire()` on each handler whose request deadline passed."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._heap: list = []
        self._live: set[int] = set()
        self._counter = itertools.count()
        self._wakeup = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="teacher-deadlines", daemon=True)
        self._thread.start()

    def add(self, handler, accepted: float | None = None) -> int:
        token = next(self._counter)
        with self._wakeup:
            self._live.add(token)
            heapq.heappush(self._heap, ((accepted or time.monotonic()) + self.seconds, token, handler))
            self._wakeup.notify()
        return token

    def remove(self, token: int) -> None:
        with self._wakeup:
            self._live.discard(token)

    def _run(self) -> None:
        with self._wakeup:
            while not self._stopped:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)  # finished in time
                if not self._heap:
                    self._wakeup.wait()
                    continue
                due, token, handler = self._heap[0]
                left = due - time.monotonic()
                if left > 0:
                    self._wakeup.wait(left)
                    continue
                heapq.heappop(self._heap)
                self._live.discard(token)
                handler.expire()

    def stop(self) -> None:
        with self._wakeup:
            self._stopped = True
            self._wakeup.notify_all()
        self._thread.join(timeout=10)


class TeacherServer(HTTPServer):
    """The HTTP server: a bounded pool of worker threads behind a bounded queue of connections,
    one scoring thread behind a FairScheduler, one thread enforcing request deadlines."""

    request_queue_size = 1024  # listen backlog: a burst of hundreds of clients queues instead of being reset

    def __init__(self, address, model, model_name: str, *, api_key: str | None, limits: ServerLimits):
        host = address[0]
        if not api_key and not is_loopback(host):
            raise ValueError(f"host {host!r} is not a loopback address: serving it without an API key would let "
                             f"anyone on the network use the teacher; set --api-key or env {API_KEY_ENV}")
        self.model_name, self.api_key, self.limits = model_name, api_key or None, limits
        self.vocab_size = _vocab_size(model)
        self.context_tokens = _context_size(model)
        self.scheduler = FairScheduler(lambda prompts: score_prompts(model, prompts), limits.max_batch_tokens)
        self.deadlines = Deadlines(limits.read_timeout_s)
        self._connections: queue.Queue = queue.Queue(maxsize=limits.max_queue)
        self.refused_busy = 0  # connections answered 503 because the queue was full
        self.accepted_at: dict[int, float] = {}  # id(socket) -> when it was accepted, until a worker takes it
        try:
            super().__init__(address, _Handler)
        except BaseException:
            self.scheduler.stop()
            self.deadlines.stop()
            raise
        self._workers = [threading.Thread(target=self._work, name=f"teacher-worker-{n}", daemon=True)
                         for n in range(limits.max_workers)]
        for worker in self._workers:
            worker.start()

    def process_request(self, request, client_address) -> None:
        self.accepted_at[id(request)] = time.monotonic()
        try:
            self._connections.put_nowait((request, client_address))
        except queue.Full:
            self.accepted_at.pop(id(request), None)
            self.refused_busy += 1
            self._refuse_busy(request)

    def _refuse_busy(self, request) -> None:
        body = json.dumps({"error": {"message": f"server busy: {self.limits.max_queue} connections are queued "
                                                "(--max-queue); retry later", "type": "server_error", "code": 503}}).encode()
        head = (f"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Retry-After: 1\r\nConnection: close\r\n\r\n").encode()
        try:
            request.settimeout(1.0)
            request.sendall(head + body)
        except OSError:
            pass
        self.shutdown_request(request)

    def _work(self) -> None:
        while True:
            item = self._connections.get()
            if item is None:
                return
            request, client_address = item
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        for _ in self._workers:
            try:
                self._connections.put(None, timeout=1)
            except queue.Full:
                break
        self.scheduler.stop()
        self.deadlines.stop()


def _vocab_size(model) -> int:
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if embeddings is not None and hasattr(embeddings, "num_embeddings"):
        return int(embeddings.num_embeddings)
    return int(model.config.vocab_size)


def _context_size(model) -> int | None:
    """The model's context in tokens (positions it was built for), or None when its config says none."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def serve(model, model_name: str, host: str = "127.0.0.1", port: int = 8000, *, api_key: str | None = None,
          limits: ServerLimits | None = None) -> TeacherServer:
    """A started-but-not-serving server; call `.serve_forever()` (or run it in a thread), and
    `.shutdown()` then `.server_close()` to stop it. `api_key` is required off loopback."""
    return TeacherServer((host, port), model.eval(), model_name, api_key=api_key, limits=limits or ServerLimits())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="'tiny', 'tiny_smoke' (the tiny world's teacher) or a HF path")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_ENV),
                        help=f"bearer token clients must send (default: env {API_KEY_ENV}); required off loopback")
    defaults = ServerLimits()
    parser.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes)
    parser.add_argument("--max-prompts", type=int, default=defaults.max_prompts, help="prompts per request")
    parser.add_argument("--max-prompt-tokens", type=int, default=defaults.max_prompt_tokens, help="tokens per prompt")
    parser.add_argument("--max-batch-tokens", type=int, default=defaults.max_batch_tokens,
                        help="padded tokens per forward pass; a small request waits for at most one such batch")
    parser.add_argument("--max-workers", type=int, default=defaults.max_workers, help="threads serving connections")
    parser.add_argument("--max-queue", type=int, default=defaults.max_queue,
                        help="connections waiting for a worker; more are answered 503")
    args = parser.parse_args()
    try:
        limits = ServerLimits(args.max_body_bytes, args.max_prompts, args.max_prompt_tokens, args.max_batch_tokens,
                              max_workers=args.max_workers, max_queue=args.max_queue)
    except ValueError as error:
        parser.error(str(error))
    if not args.api_key and not is_loopback(args.host):
        parser.error(f"--host {args.host}: off loopback the server needs --api-key or env {API_KEY_ENV}")
    if args.model in ("tiny", "tiny_smoke"):
        from scope_lib.worlds.models import SMOKE_WORLD, TINY_WORLD, build_tiny_world

        model = build_tiny_world(SMOKE_WORLD if args.model == "tiny_smoke" else TINY_WORLD, progress=False).teacher
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(args.model)
    server = serve(model, args.model, args.host, args.port, api_key=args.api_key, limits=limits)
    print(f"serving {args.model} on http://{args.host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
