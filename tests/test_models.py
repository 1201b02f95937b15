"""Tiny-world models: built from a config, cached by its hash, deterministic, trained on solutions only."""

import dataclasses
import json

import torch

from scope_lib.worlds import models, chain as tasks


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_build_is_cached_and_deterministic(tmp_path):
    world = models.build_tiny_world(models.SMOKE_WORLD, cache_dir=tmp_path / "a", progress=False)
    assert (world.path / "done.json").exists() and world.path.name == models.SMOKE_WORLD.key()
    stamp = (world.path / "teacher" / "model.safetensors").stat().st_mtime_ns
    again = models.build_tiny_world(models.SMOKE_WORLD, cache_dir=tmp_path / "a", progress=False)
    assert (world.path / "teacher" / "model.safetensors").stat().st_mtime_ns == stamp  # loaded, not rebuilt
    assert _same_weights(world.teacher, again.teacher) and _same_weights(world.student, again.student)
    fresh = models.build_tiny_world(models.SMOKE_WORLD, cache_dir=tmp_path / "b", progress=False)
    assert _same_weights(world.student, fresh.student)  # same seed, same weights
    n = lambda m: sum(p.numel() for p in m.parameters())
    assert n(world.student) < n(world.teacher)
    assert world.tokenizer.pad_token_id is not None and world.teacher.config.vocab_size == len(world.tokenizer)


def test_parallel_build_gives_the_weights_of_a_sequential_one(tmp_path, monkeypatch):
    # A world past the smoke size pretrains its two models in two spawned processes on 2+ cores;
    # each is seeded on its own and runs on one thread, so the weights must not depend on that.
    def widen(spec):
        return dataclasses.replace(spec, hidden=72, heads=2, ffn=96, steps=3)

    config = dataclasses.replace(models.SMOKE_WORLD, teacher=widen(models.SMOKE_WORLD.teacher),
                                 student=widen(models.SMOKE_WORLD.student))
    monkeypatch.setattr(models, "_available_cores", lambda: 2)
    parallel = models.build_tiny_world(config, cache_dir=tmp_path / "parallel", progress=False)
    monkeypatch.setattr(models, "_available_cores", lambda: 1)
    sequential = models.build_tiny_world(config, cache_dir=tmp_path / "sequential", progress=False)
    assert _same_weights(parallel.teacher, sequential.teacher)
    assert _same_weights(parallel.student, sequential.student)
    record = json.loads((parallel.path / "done.json").read_text())
    assert record["teacher"]["threads"] == record["student"]["threads"] == 1 and record["build_seconds"] > 0


def test_config_hash_changes_with_any_field():
    other = dataclasses.replace(models.SMOKE_WORLD, student=dataclasses.replace(models.SMOKE_WORLD.student, lr=5e-4))
    assert other.key() != models.SMOKE_WORLD.key()
    assert models.WorldConfig().key() == models.TINY_WORLD.key()


def test_supervised_batch_labels_only_solution_tokens(tmp_path):
    world = models.build_tiny_world(models.SMOKE_WORLD, cache_dir=tmp_path, progress=False)
    tok = world.tokenizer
    problems = tasks.train_pool(5, seed=7)
    ids, mask, labels = models.supervised_batch(problems, tok)
    for i, p in enumerate(problems):
        target = tok(tasks.format_target(p), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert labels[i][labels[i] != -100].tolist() == target
        prompt_len = len(tok(tasks.format_prompt(p))["input_ids"])
        assert ids[i, :prompt_len].tolist() == tok(tasks.format_prompt(p))["input_ids"]
        assert int(mask[i].sum()) == prompt_len + len(target)


def test_lr_schedules():
    spec = models.ModelSpec(steps=100, warmup=10, lr=1.0, schedule="constant")
    assert models.lr_at(0, spec) == 0.1 and models.lr_at(50, spec) == models.lr_at(99, spec) == 1.0
    cos = dataclasses.replace(spec, schedule="cosine", min_lr_ratio=0.1)
    assert abs(models.lr_at(10, cos) - 1.0) < 1e-9 and models.lr_at(99, cos) < 0.11
