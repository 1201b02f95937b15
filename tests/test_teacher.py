"""Teacher scoring: the vLLM-protocol client against a real HTTP server process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scope_lib.worlds.models import SMOKE_WORLD, build_tiny_world
from scope_lib.rollout import Sampling, generate_rollouts
from scope_lib.teacher import LocalTeacher, ServerTeacher

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server():
    build_tiny_world(SMOKE_WORLD, progress=False)  # built once here, loaded by the server process
    proc = subprocess.Popen([sys.executable, "-m", "scope_lib.teacher_server", "--model", "tiny_smoke", "--port", "0"],
                            cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving"), line
        yield line.split()[-1]
    finally:
        proc.kill()
        proc.wait()


def test_server_scores_equal_local_scores(server):
    world = build_tiny_world(SMOKE_WORLD, progress=False)
    rollouts = generate_rollouts(world.student, world.tokenizer, ["Start with 3. Add 4.", "Start with 12."],
                                 num_samples=3, sampling=Sampling(temperature=1.0, max_new_tokens=12), seed=0)
    local = LocalTeacher(world.teacher).score(rollouts.input_ids, rollouts.attention_mask)
    remote = ServerTeacher(server, "tiny_smoke", request_batch_size=4).score(rollouts.input_ids, rollouts.attention_mask)
    mask = rollouts.response_mask.bool()
    assert mask.any()
    torch.testing.assert_close(remote[mask], local[mask], rtol=1e-4, atol=1e-4)
    assert (remote[~rollouts.attention_mask.bool()] == 0).all()  # padding stays zero


def test_server_errors_are_named(server):
    # Port 9 refuses: retried (with backoff) and then named, with the URL and the attempts made.
    with pytest.raises(RuntimeError, match=r"teacher server http://127\.0\.0\.1:9/v1/completions failed after 3 attempt"):
        ServerTeacher("http://127.0.0.1:9", "x", timeout=2, retries=2, backoff_s=0.01).score(
            torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long))


def test_server_process_answers_bad_requests_with_json(server):
    # The command-line server (a real process): an out-of-vocabulary id is a 400 naming the token.
    ids = torch.tensor([[1, 2, 10**6]])
    with pytest.raises(RuntimeError, match=r"answered HTTP 400: prompt\[0\]\[2\]: 1000000"):
        ServerTeacher(server, "tiny_smoke", retries=0).score(ids, torch.ones_like(ids))
