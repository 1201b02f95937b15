"""Load test of the teacher server, on 127.0.0.1 only, bounded in requests and time.

- 200 clients connect at once, 4 requests each (800 connections): every one is answered 200,
  none is reset (the old server's listen backlog of 5 reset 16 of 800).
- A 4-token request sent while a large request (256 prompts x 1024 tokens) is being scored
  waits for at most the batch in progress, not for the large request (the old server's single
  lock made it wait 15.7 s behind a 20,000-prompt request).

The figures are printed (`pytest -s tests/test_teacher_server_load.py`). Uses only
`serve(model, name, host, port)`, so the same test runs against the old server.
"""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from scope_lib import teacher_server

CLIENTS = 200
REQUESTS_PER_CLIENT = 4


def toy_model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def server():
    instance = teacher_server.serve(toy_model(), "toy", "127.0.0.1", 0)
    thread = threading.Thread(target=instance.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield instance
    finally:
        instance.shutdown()
        instance.server_close()
        thread.join(timeout=10)


def post(port: int, prompts: list[list[int]], timeout: float = 60.0) -> tuple[int, dict]:
    """One request on a fresh connection, no retry: a reset is counted, not hidden."""
    body = json.dumps({"model": "toy", "prompt": prompts, "echo": True, "max_tokens": 1, "logprobs": 1}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_200_concurrent_clients_are_all_served_without_resets(server):
    port = server.server_address[1]
    start_together = threading.Barrier(CLIENTS, timeout=60)
    outcomes: list[str] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        prompts = [[(number + i) % 64 for i in range(16)], [(number * 7 + i) % 64 for i in range(9)]]
        start_together.wait()
        for _ in range(REQUESTS_PER_CLIENT):
            try:
                status, payload = post(port, prompts, timeout=60)
                ok = status == 200 and len(payload["choices"][0]["logprobs"]["token_logprobs"]) == 16
                outcome = "ok" if ok else f"HTTP {status}"
            except Exception as error:  # a reset is ConnectionResetError or RemoteDisconnected
                outcome = type(error).__name__
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    seconds = time.perf_counter() - began
    failures = {o: outcomes.count(o) for o in set(outcomes) if o != "ok"}
    print(f"\n{CLIENTS} concurrent clients x {REQUESTS_PER_CLIENT} requests: {outcomes.count('ok')} of "
          f"{CLIENTS * REQUESTS_PER_CLIENT} answered 200 in {seconds:.1f} s; failures: {failures or 'none'}")
    assert not any(thread.is_alive() for thread in threads), "clients still waiting after 120 s"
    assert len(outcomes) == CLIENTS * REQUESTS_PER_CLIENT
    assert failures == {}


def test_a_small_request_waits_at_most_one_batch_behind_a_large_one(server):
    port = server.server_address[1]
    generator = torch.Generator().manual_seed(0)
    large = torch.randint(0, 64, (256, 1024), generator=generator).tolist()
    post(port, [[1, 2, 3, 4]])  # warm up
    alone = time.perf_counter()
    post(port, [[1, 2, 3, 4]])
    alone = time.perf_counter() - alone

    batches = getattr(getattr(server, "scheduler", None), "batch_seconds", None)
    if batches is not None:
        batches.clear()  # time only this test's batches: 64 of the large request (4 prompts each) and the small ones
    large_done: dict[str, float] = {}

    def send_large() -> None:
        began = time.perf_counter()
        status, _ = post(port, large, timeout=120)
        large_done.update(status=status, seconds=time.perf_counter() - began, finished=time.perf_counter())

    thread = threading.Thread(target=send_large, daemon=True)
    thread.start()
    time.sleep(0.5)  # the large request is sent, parsed and being scored
    small_latencies = []
    for _ in range(3):
        began = time.perf_counter()
        status, payload = post(port, [[1, 2, 3, 4]])
        small_latencies.append(time.perf_counter() - began)
        assert status == 200 and len(payload["choices"]) == 1
        time.sleep(0.05)
    small_finished = time.perf_counter()
    thread.join(timeout=120)
    assert large_done.get("status") == 200
    longest_batch = max(batches) if batches else float("nan")
    print(f"\nlarge request (256 x 1024 tokens): {large_done['seconds']:.2f} s; small request alone "
          f"{alone * 1000:.0f} ms, under the large one's load {[round(s * 1000) for s in small_latencies]} ms; "
          f"longest batch {longest_batch * 1000:.0f} ms ({len(batches) if batches else 0} batches)")
    # The small requests were answered while the large one was still being scored ...
    assert small_finished < large_done["finished"], "the large request finished first: make it larger"
    # ... each in a fraction of the large one's time (the old server: the rest of it) ...
    assert max(small_latencies) < 0.25 * large_done["seconds"]
    # ... after at most the batch in progress (plus HTTP and JSON time: 0.25 s slack on a loaded CI core).
    assert max(small_latencies) <= longest_batch + 0.25
