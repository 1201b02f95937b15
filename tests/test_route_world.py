"""The route world's builder: the teacher's repair stage (continued training on repair traces,
stopped by a measured repair rate), teacher reuse, and configs read back from a build record."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from scope_lib.worlds import routes
from scope_lib.worlds.models import ModelSpec
from scope_lib.worlds.routes_build import (FIRST_ROUTE_WORLD, ROUTE_SMOKE_WORLD, ROUTE_WORLD, RepairStage, StopRule,
                                   build_route_world)
from scope_lib.worlds.shipped import _config_from_dict

REPAIR = RepairStage(
    mix=routes.SolutionMix(max_value=routes.TEACHER_MAX, rare_route_prob=0.03, slip_prob=0.5, misread_prob=1.0),
    spec=ModelSpec(layers=2, hidden=32, heads=2, ffn=64, steps=20, batch_size=16, warmup=2, schedule="constant",
                   seed=3, tiers=routes.TRAIN_TIERS),
    stop=StopRule(target=1.0, check_every=10, min_steps=10), cases_per_kind=4)
REPAIRED = dataclasses.replace(ROUTE_SMOKE_WORLD, teacher_repair=REPAIR)


def test_the_shipped_worlds_keys_are_unchanged_by_fields_added_later():
    assert FIRST_ROUTE_WORLD.key() == "6fa936182eb0"  # the first shipped route world, whose teacher is reused
    assert ROUTE_WORLD.key() == "6a2a7a87b767"  # worlds/tiny_routes (the re-deriving teacher) was built under this key
    assert REPAIRED.key() != ROUTE_SMOKE_WORLD.key()
    first = FIRST_ROUTE_WORLD.as_dict()
    assert "teacher_repair" not in first and "misread_prob" not in first["teacher_mix"] and "max_new_tokens" not in first
    assert "recheck_prob" not in ROUTE_WORLD.as_dict()["teacher_mix"]  # at its default there
    assert ROUTE_WORLD.as_dict()["teacher_repair"]["mix"]["recheck_prob"] == 1.0


def test_config_with_a_repair_stage_reads_back_from_its_record(tmp_path):
    record = json.loads(json.dumps(REPAIRED.as_dict()))
    back = _config_from_dict(record, tmp_path / "build.json", "routes")
    assert back == REPAIRED and back.key() == REPAIRED.key()
    assert _config_from_dict(json.loads(json.dumps(ROUTE_WORLD.as_dict())), tmp_path, "routes") == ROUTE_WORLD
    first = _config_from_dict(json.loads(json.dumps(FIRST_ROUTE_WORLD.as_dict())), tmp_path, "routes")
    assert first == FIRST_ROUTE_WORLD


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    torch.manual_seed(0)
    return build_route_world(ROUTE_SMOKE_WORLD, tmp_path_factory.mktemp("w") / "plain", progress=False)


def test_repair_stage_continues_the_reused_teacher_and_records_its_checks(plain, tmp_path):
    dest = build_route_world(REPAIRED, tmp_path / "repaired", progress=False, reuse_teacher=plain)
    done = json.loads((dest / "done.json").read_text())
    repair = done["teacher"]["repair"]
    assert done["key"] == REPAIRED.key() and done["teacher"]["reused_from"] == ROUTE_SMOKE_WORLD.key()
    assert [c["step"] for c in repair["checks"]] == [10, 20] and repair["steps"] == 20
    for check in repair["checks"] + [repair["before"]]:
        assert set(check["repair"]) == set(routes.FLAW_KINDS)
        assert check["accuracy"] == pytest.approx(sum(check["repair"].values()) / len(routes.FLAW_KINDS))
        assert 0.0 <= check["clean"] <= 1.0
    before = load_file(plain / "teacher" / "model.safetensors")
    after = load_file(dest / "teacher" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the stage trained the teacher
    tokenizer_files = sorted(p.name for p in (dest / "tokenizer").iterdir())
    assert tokenizer_files == sorted(p.name for p in (plain / "tokenizer").iterdir())
    # a teacher repaired under other settings is not reused as if it were this one
    other = dataclasses.replace(REPAIRED, teacher_repair=dataclasses.replace(REPAIR, cases_per_kind=5))
    with pytest.raises(ValueError, match="another repair stage"):
        build_route_world(other, tmp_path / "other", progress=False, reuse_teacher=dest)


def test_flaw_masked_batch_learns_everything_but_the_flawed_lines(plain):
    from scope_lib.worlds.models import pair_batch
    from scope_lib.worlds.routes_build import flaw_masked_batch
    from scope_lib.worlds.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(plain / "tokenizer")
    clean = routes.pretraining_texts(40, routes.TEACHER_MIX, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(pair_batch(clean, tokenizer), flaw_masked_batch(clean, tokenizer)))
    mix = routes.SolutionMix(max_value=routes.TEACHER_MAX, rare_route_prob=0.0, slip_prob=0.0, line_flaw_prob=0.5,
                             mask_flaws=True)
    marked = routes.pretraining_texts(40, mix, seed=2)
    unmarked = [(p, s.replace(routes.OUT_OF_LOSS, "")) for p, s in marked]
    ids, mask, labels = flaw_masked_batch(marked, tokenizer)
    plain_ids, plain_mask, plain_labels = pair_batch(unmarked, tokenizer)
    assert torch.equal(ids, plain_ids) and torch.equal(mask, plain_mask)  # the model reads the flawed lines
    for i, (_, solution) in enumerate(marked):
        left_out = tokenizer.decode(plain_labels[i][(labels[i] == -100) & (plain_labels[i] != -100)])
        flawed = [line[1:] + "\n" for line in solution.split("\n") if line.startswith(routes.OUT_OF_LOSS)]
        assert left_out.replace(" ", "") == "".join(flawed).replace(" ", "")
