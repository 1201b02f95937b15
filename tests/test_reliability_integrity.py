"""Nothing the project wrote is used after it was altered (scope_lib/common/integrity.py): a checkpoint,
a final model, an evaluation cache or a registry entry that differs from what was written is
named and passed over (resume falls back), recomputed (caches) or refused (models, registry).

Runs are the smoke runs of tests/test_reliability_runs.py; a kill is raised from
`Trainer.update` as there.
"""

import json
import random
import shutil
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from scope_lib.experiments import registry as runs
from scope_lib.evaluate import EvalResult
from scope_lib.problem import Problem
from scope_lib.trainer import train
from test_reliability_runs import history, smoke_config, snapshot, train_until_killed


@pytest.fixture(autouse=True)
def no_idle_verify_workers():
    yield
    from scope_lib import verify_worker

    verify_worker._POOL.shutdown()


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    train(smoke_config(run_dir))
    return run_dir


def flip_tensor_byte(path, rng):
    """Flip one bit inside the bytes of a stored tensor (not in zip or pickle metadata), so that
    the file still loads: only a content hash can tell."""
    raw = bytearray(path.read_bytes())
    state = torch.load(path, weights_only=False)
    tensors = state["model"] if "model" in state else state
    tensor = max(tensors.values(), key=lambda t: t.numel())
    needle = tensor.contiguous().numpy().tobytes()[:256]
    start = raw.find(needle)
    assert start > 0
    raw[start + rng.randrange(len(needle))] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(raw))


def test_altered_checkpoint_is_named_and_the_previous_one_resumes(tmp_path, monkeypatch, straight):
    rng = random.Random(11)
    run_dir = tmp_path / "run"
    cfg = smoke_config(run_dir, checkpoint_every=1)
    train_until_killed(cfg, monkeypatch, after_steps=2)
    newest = run_dir / "checkpoints" / "step_000002" / "state.pt"
    flip_tensor_byte(newest, rng)
    torch.load(newest, weights_only=False)  # still loads: before the fix it was resumed from
    (run_dir / ".metrics.jsonl.999999.tmp").write_text('{"step": 1')  # a write killed before its rename
    with pytest.warns(RuntimeWarning, match=r"skipping checkpoint .*step_000002/state\.pt: .*does not match its SHA-256"):
        train(cfg)
    assert history(run_dir) == history(straight)  # resumed from step 1: the uninterrupted run
    assert not list(run_dir.glob(".*.tmp"))  # the stale temporary file is gone


def test_finished_run_says_done_and_trains_nothing(tmp_path, capsys, straight):
    run_dir = tmp_path / "run"
    shutil.copytree(straight, run_dir)
    before = snapshot(run_dir)
    result = train(smoke_config(run_dir))
    assert f"run {run_dir} is done (3 steps): nothing to train" in capsys.readouterr().out
    assert snapshot(run_dir) == before  # before the fix the last steps were trained again
    assert [row["step"] for row in result.history] == [1, 2, 3]


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_altered_final_model_is_refused_naming_the_file(tmp_path, straight, damage):
    rng = random.Random(5 if damage == "flip" else 6)
    run_dir = tmp_path / "run"
    shutil.copytree(straight, run_dir)
    weights = run_dir / "final" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    if damage == "flip":
        position = rng.randrange(len(raw) // 2, len(raw))  # in the tensor data, past the header
        raw[position] ^= 1 << rng.randrange(8)
    else:
        raw = raw[: rng.randrange(4, 8)]  # before the fix: SafetensorError naming no file
    weights.write_bytes(bytes(raw))
    with pytest.raises(runs.RunDirError, match=rf"{weights} does not match its SHA-256"):
        runs.load_final_model(run_dir)
    with pytest.raises(runs.RunDirError, match=rf"{weights} does not match"):
        train(smoke_config(run_dir))  # nor is the run reported done on it


def test_swapped_registry_directory_is_refused_naming_the_file(tmp_path, straight):
    cfg_seed1 = smoke_config(tmp_path / "unused", seed=1)
    path = tmp_path / "registry" / runs.run_key(cfg_seed1)
    shutil.copytree(straight, path)  # the seed-0 run, under seed 1's key
    with pytest.raises(runs.RunDirError, match=rf"{path / 'done.json'} records the run of config"):
        runs.get_run(cfg_seed1, root=tmp_path / "registry")
    # done.json patched to seed 1's fingerprint: config.yaml still says seed 0
    done = json.loads((path / "done.json").read_text())
    (path / "done.json").write_text(json.dumps({**done, "fingerprint": cfg_seed1.fingerprint()}))
    with pytest.raises(runs.RunDirError, match=r"seed: 0 -> 1"):
        runs.get_run(cfg_seed1, root=tmp_path / "registry")


# --- evaluation caches


def fake_world(rng):
    sets = {name: [Problem(id=f"{name}/{i}", question=f"q{i}", answer=str(rng.randrange(100)))
                   for i in range(rng.randrange(3, 7))] for name in ("easy", "hard")}
    return SimpleNamespace(eval_sets=sets, student=torch.nn.Linear(1, 1), tokenizer=None, format_prompt=None)


def fresh_result(world, k, rng):
    return EvalResult(k=k, correct={name: np.array([[rng.random() < 0.3 for _ in range(k)] for _ in items])
                                    for name, items in world.eval_sets.items()}, settings={"k": k})


@pytest.mark.parametrize("damage", ["one_by_one", "garbage", "empty_object", "edited_grade"])
def test_bad_evaluation_cache_is_named_and_recomputed(tmp_path, monkeypatch, damage):
    rng = random.Random(zlib.crc32(damage.encode()))
    cfg = smoke_config(tmp_path / "run", **{"eval.k": 4})
    world = fake_world(rng)
    truth = fresh_result(world, 4, rng)
    calls = []
    monkeypatch.setattr(runs, "evaluate", lambda *a, **k: calls.append(1) or truth)
    path = runs.evaluation_path(cfg, world.eval_sets, base=True, root=tmp_path)
    first = runs.evaluate_model(None, cfg, world=world, root=tmp_path)
    assert calls == [1] and path.exists()
    assert runs.evaluate_model(None, cfg, world=world, root=tmp_path).summary() == first.summary()  # a good cache is used
    assert calls == [1]
    data = json.loads(path.read_text())
    if damage == "one_by_one":  # before the fix: Table 1 showed 1.0 on every tier
        data = {"k": 4, "settings": {}, "correct": {name: [[1]] for name in world.eval_sets}}
        text = json.dumps(data)
    elif damage == "garbage":  # before the fix: a bare JSONDecodeError
        text = "".join(chr(rng.randrange(33, 127)) for _ in range(40))
    elif damage == "empty_object":  # before the fix: KeyError: 'k'
        text = "{}"
    else:  # a grade edited by hand: the content hash no longer matches
        name = rng.choice(sorted(data["correct"]))
        data["correct"][name][0][0] = 1 - data["correct"][name][0][0]
        text = json.dumps(data)
    path.write_text(text)
    with pytest.warns(RuntimeWarning, match=rf"evaluation cache refused, evaluating again: {path}"):
        again = runs.evaluate_model(None, cfg, world=world, root=tmp_path)
    assert calls == [1, 1] and again.summary() == truth.summary()
    assert runs._load_eval(path, world.eval_sets, 4).summary() == truth.summary()  # rewritten whole
