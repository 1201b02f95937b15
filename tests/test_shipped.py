"""Shipped worlds: export writes a sha256sum manifest and a build record, the loader refuses any
missing, truncated, altered or unlisted file, and compare_worlds measures weight differences."""

import json
import os
import re
import shutil
import subprocess
from importlib import metadata

import pytest
import torch
from safetensors.torch import load_file, save_file

from scope_lib.worlds import models, shipped, chain as tasks

ACCURACY = {"teacher": {"chain2": 0.5, "chain3": 0.25}, "student": {"chain2": 0.125}}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return models.build_tiny_world(models.SMOKE_WORLD, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


@pytest.fixture(scope="module")
def exported(built, tmp_path_factory):
    return shipped.export_world(built.path, tmp_path_factory.mktemp("repo") / "worlds" / "smoke",
                                build_record={"accuracy": ACCURACY})


@pytest.fixture
def world_copy(exported, tmp_path):
    """A fresh copy of the exported world that a test may damage."""
    return shutil.copytree(exported, tmp_path / "smoke")


def test_export_writes_a_sorted_sha256_manifest_and_the_build_record(exported, built):
    lines = (exported / shipped.MANIFEST_NAME).read_text().splitlines()
    names = [re.fullmatch(r"[0-9a-f]{64}  (\S+)", line).group(1) for line in lines]
    assert names == sorted(names)
    assert {"build.json", "done.json", "teacher/model.safetensors", "student/model.safetensors",
            "tokenizer/tokenizer.json"} <= set(names)
    assert shipped.MANIFEST_NAME not in names
    record = json.loads((exported / "build.json").read_text())
    assert record["world_key"] == models.SMOKE_WORLD.key() == built.path.name
    assert record["config"] == json.loads((built.path / "done.json").read_text())["config"]
    assert record["build"]["teacher"]["params"] > 0 and "build_seconds" in record["build"]
    assert record["accuracy"] == ACCURACY and record["versions"]["torch"] == metadata.version("torch")
    assert record["machine"]["cpu"] and record["files"]["teacher/model.safetensors"] > 0
    if shutil.which("sha256sum"):  # the manifest checks by hand with the standard tool
        subprocess.run(["sha256sum", "--quiet", "--strict", "-c", shipped.MANIFEST_NAME], cwd=exported, check=True)


def test_loaded_world_gives_the_built_models_logits(exported, built):
    world = shipped.load_shipped_world(exported)
    assert world.config == models.SMOKE_WORLD and world.path == exported
    prompts = [tasks.format_prompt(problem) for problem in tasks.train_pool(3, seed=5)]
    batch = built.tokenizer(prompts, return_tensors="pt", padding=True)
    assert torch.equal(world.tokenizer(prompts, return_tensors="pt", padding=True)["input_ids"], batch["input_ids"])
    with torch.no_grad():
        for name in ("teacher", "student"):
            assert torch.equal(getattr(world, name)(**batch).logits, getattr(built, name)(**batch).logits), name


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-100])


@pytest.mark.parametrize("damage, name, what", [
    (lambda world: _flip_byte(world / "teacher" / "model.safetensors"), "teacher/model.safetensors", "hash differs"),
    (lambda world: _truncate(world / "student" / "model.safetensors"), "student/model.safetensors", "size differs"),
    (lambda world: (world / "tokenizer" / "tokenizer.json").unlink(), "tokenizer/tokenizer.json", "missing"),
    (lambda world: torch.save({}, world / "student" / "pytorch_model.bin"), "student/pytorch_model.bin", "not in the manifest"),
    (lambda world: torch.save({}, world / "extra.bin"), "extra.bin", "not in the manifest"),
    (lambda world: _flip_byte(world / "build.json"), "build.json", "hash differs"),
])
def test_damaged_world_is_refused_naming_the_file_and_the_rebuild_command(world_copy, damage, name, what):
    shipped.verify_world(world_copy)
    damage(world_copy)
    for check in (shipped.verify_world, shipped.load_shipped_world):
        with pytest.raises(shipped.WorldIntegrityError) as caught:
            check(world_copy)
        message = str(caught.value)
        assert f"{name}: {what}" in message, message
        assert "python -m scope_lib.worlds.rebuild smoke" in message
        assert caught.value.problems[0][0] == name


def test_missing_manifest_is_refused(world_copy):
    (world_copy / shipped.MANIFEST_NAME).unlink()
    with pytest.raises(shipped.WorldIntegrityError, match=r"MANIFEST\.sha256: missing"):
        shipped.verify_world(world_copy, rebuild_command="make world {name}")


def test_a_world_is_hashed_once_per_process_until_a_file_changes(world_copy, monkeypatch):
    shipped.load_shipped_world(world_copy)
    hashed = []
    real_sha256 = shipped._sha256
    monkeypatch.setattr(shipped, "_sha256", lambda path: hashed.append(path) or real_sha256(path))
    shipped.load_shipped_world(world_copy)
    assert hashed == []
    _flip_byte(world_copy / "teacher" / "model.safetensors")
    weights = world_copy / "teacher" / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # same size, later mtime
    with pytest.raises(shipped.WorldIntegrityError, match="teacher/model.safetensors: hash differs"):
        shipped.load_shipped_world(world_copy)


def test_load_refuses_a_config_with_another_key(exported):
    other = models.WorldConfig(teacher=models.SMOKE_WORLD.teacher, student=models.SMOKE_WORLD.teacher)
    with pytest.raises(ValueError, match="config: its key"):
        shipped.load_shipped_world(exported, other)


def test_export_refuses_pickle_weights_and_an_existing_dest(built, tmp_path):
    src = shutil.copytree(built.path, tmp_path / "src")
    torch.save({}, src / "teacher" / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"teacher/pytorch_model\.bin is a pickle weight file"):
        shipped.export_world(src, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    (src / "teacher" / "pytorch_model.bin").unlink()
    dest = shipped.export_world(src, tmp_path / "dest")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        shipped.export_world(src, dest)
    with pytest.raises(ValueError, match=r"\['world_key'\] are written by export_world"):
        shipped.export_world(src, dest, overwrite=True, build_record={"world_key": "x"})
    with pytest.raises(ValueError, match=r"accuracy'\]\['teacher'\]\['chain2'\]: expected a fraction"):
        shipped.export_world(src, dest, overwrite=True, build_record={"accuracy": {"teacher": {"chain2": 87.5}}})
    shipped.export_world(src, dest, overwrite=True)
    shipped.verify_world(dest)
    assert not list(tmp_path.glob("dest.*"))  # no temporary or old folder left behind


def test_compare_worlds_identical_and_perturbed(exported, world_copy):
    same = shipped.compare_worlds(exported, world_copy)
    assert all(result["identical"] and result["max_abs_diff"] == 0.0 for result in same["models"].values())
    assert same["tokenizer_identical"] and same["world_key"]["a"] == same["world_key"]["b"] == models.SMOKE_WORLD.key()
    assert same["accuracy"]["teacher"]["chain3"] == {"a": 0.25, "b": 0.25, "diff": 0.0}

    weights = world_copy / "student" / "model.safetensors"
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    old = tensors[name].reshape(-1)[7].item()
    tensors[name].reshape(-1)[7] = 5.0
    save_file(tensors, weights, metadata={"format": "pt"})
    record = json.loads((world_copy / "build.json").read_text())
    record["accuracy"]["teacher"]["chain2"] = 0.75
    (world_copy / "build.json").write_text(json.dumps(record))

    changed = shipped.compare_worlds(exported, world_copy)
    student = changed["models"]["student"]
    assert not student["identical"] and student["differing_tensors"] == 1
    assert student["max_abs_diff"] == abs(5.0 - old)
    assert changed["models"]["teacher"]["identical"]
    assert changed["accuracy"]["teacher"]["chain2"]["diff"] == pytest.approx(0.25)
    markdown = shipped.format_comparison(changed)
    assert "| student | no |" in markdown and "| teacher | yes | 0 |" in markdown
    assert "| teacher | chain2 | 50.0% | 75.0% | +25.0 |" in markdown
