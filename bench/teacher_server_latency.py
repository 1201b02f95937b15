"""Latency of the teacher server (scope_lib/teacher_server.py) serving the tiny world's teacher.

Two measurements, each on a fresh server on loopback, written to
data/bench_teacher_server/record.json (and printed):

1. a short request (3 tokens) sent again and again while maximal requests (`max_prompts`
   prompts, each as long as the model's context) are being scored back to back: p50 and p99
   of the short request's latency, beside the short request alone and the maximal one's time;
2. 300 clients at once, each sending a few small requests on fresh connections: p50 and p99
   of all their latencies, and how many got anything other than 200.

    python bench/teacher_server_latency.py [--short-requests 200] [--clients 300]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from scope_lib import teacher_server
from scope_lib.common.machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]


def post(port: int, prompts: list[list[int]], timeout: float = 300.0) -> tuple[int, float]:
    body = json.dumps({"model": "tiny", "prompt": prompts, "echo": True, "max_tokens": 1, "logprobs": 1}).encode()
    began = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - began
    finally:
        connection.close()


def started(model):
    server = teacher_server.serve(model, "tiny", "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, thread


def stopped(server, thread) -> None:
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1000
    return {"n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "max_ms": round(float(ms.max()), 1)}


def short_beside_maximal(model, vocab: int, context: int, short_requests: int) -> dict:
    server, thread = started(model)
    port = server.server_address[1]
    limits = server.limits
    rng = torch.Generator().manual_seed(0)
    maximal = torch.randint(0, vocab, (limits.max_prompts, context), generator=rng).tolist()
    short = [[1, 2, 3]]
    post(port, short)
    alone = [post(port, short)[1] for _ in range(50)]
    stop = threading.Event()
    maximal_times: list[float] = []

    def keep_scoring() -> None:
        while not stop.is_set():
            status, seconds = post(port, maximal)
            assert status == 200, status
            maximal_times.append(seconds)

    background = threading.Thread(target=keep_scoring, daemon=True)
    background.start()
    time.sleep(0.5)
    beside = []
    for _ in range(short_requests):
        status, seconds = post(port, short)
        assert status == 200, status
        beside.append(seconds)
    stop.set()
    background.join(timeout=600)
    stopped(server, thread)
    return {"maximal_request": f"{limits.max_prompts} prompts x {context} tokens (the model's context)",
            "maximal_seconds_mean": round(float(np.mean(maximal_times)), 2) if maximal_times else None,
            "maximal_requests_scored": len(maximal_times),
            "short_alone": percentiles(alone), "short_beside_maximal": percentiles(beside)}


def many_clients(model, vocab: int, clients: int, per_client: int) -> dict:
    server, thread = started(model)
    port = server.server_address[1]
    barrier = threading.Barrier(clients, timeout=120)
    latencies: list[float] = []
    failures: dict[str, int] = {}
    lock = threading.Lock()

    def client(number: int) -> None:
        prompts = [[(number + i) % vocab for i in range(16)], [(number * 7 + i) % vocab for i in range(9)]]
        barrier.wait()
        for _ in range(per_client):
            try:
                status, seconds = post(port, prompts, timeout=120)
                outcome = None if status == 200 else f"HTTP {status}"
            except Exception as error:  # noqa: BLE001 - counted, not hidden
                status, seconds, outcome = None, None, type(error).__name__
            with lock:
                if outcome is None:
                    latencies.append(seconds)
                else:
                    failures[outcome] = failures.get(outcome, 0) + 1

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    wall = time.perf_counter() - began
    stopped(server, thread)
    return {"clients": clients, "requests_per_client": per_client, "wall_seconds": round(wall, 1),
            "latency": percentiles(latencies), "failures": failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short-requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "data" / "bench_teacher_server" / "record.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    from scope_lib.worlds.models import TINY_WORLD, build_tiny_world

    model = build_tiny_world(TINY_WORLD, progress=False).teacher.eval()
    vocab = teacher_server._vocab_size(model)
    context = teacher_server._context_size(model)
    load_before = os.getloadavg()
    print(f"model loaded (context {context}); measuring a short request beside maximal ones", file=sys.stderr, flush=True)
    record = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_average_before": [round(x, 2) for x in load_before]},
        "model": f"tiny world teacher ({sum(p.numel() for p in model.parameters()):,} parameters, context {context})",
        "limits": {k: v for k, v in vars(teacher_server.ServerLimits()).items()},
        "short_beside_maximal": short_beside_maximal(model, vocab, context, args.short_requests),
    }
    print(json.dumps(record["short_beside_maximal"]), file=sys.stderr, flush=True)
    record["many_clients"] = many_clients(model, vocab, args.clients, args.requests_per_client)
    record["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
