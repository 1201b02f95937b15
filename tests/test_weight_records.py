"""Per-step weight records (scope_lib/weight_records.py): a few smoke-world training steps are
read back and must hold exactly the DPAW weights `losses.scope_loss` was given, sum per group
and path as Eq. 4-5 prescribe, find their texts, match a float64 hand computation of the
log-PPL, and be cut to the resumed step when a run resumes; the summaries notebook 10 draws
are checked against hand computations on fresh random records."""

import math

import numpy as np
import pandas as pd
import pytest
from pathlib import Path
import torch

import scope_lib.losses as losses_module
import scope_lib.trainer as trainer_module
from scope_lib import weight_records as wr
from scope_lib.config import load_config
from scope_lib.trainer import Trainer, train

SMOKE = {
    "model.student": "tiny_smoke", "model.teacher": "tiny_smoke", "progress": False,
    "steps": 3, "optim.prompts_per_step": 4, "optim.mini_batch_prompts": 2, "optim.micro_batch_size": 8,
    "rollout.group_size": 4, "rollout.max_new_tokens": 16, "checkpoint_every": 2,
}


def smoke_config(tmp_path, **overrides):
    return load_config("tiny", overrides={**SMOKE, "output_dir": str(tmp_path / "run"), **overrides})


@pytest.fixture
def captured(monkeypatch):
    """Fixed rewards on both paths; records the texts graded and what scope_loss was given."""
    seen = {"texts": [], "loss_calls": []}

    def grade(texts, problems):
        seen["texts"].extend(texts)
        return [i % 3 == 0 for i in range(len(texts))]

    real_scope_loss = losses_module.scope_loss

    def scope_loss(*args, **kwargs):
        correct, group = args[4], args[5]
        weights = kwargs.get("weights")
        given = isinstance(weights, losses_module.DPAWWeights)  # computed weights, not settings to compute them with
        seen["loss_calls"].append({"correct": correct.cpu().clone(), "group": group.cpu().clone(),
                                   "weights": tuple(w.detach().cpu().clone() for w in weights[:2]) if given else None})
        return real_scope_loss(*args, **kwargs)

    monkeypatch.setattr(trainer_module.Trainer, "grade", staticmethod(grade))
    monkeypatch.setattr(losses_module, "scope_loss", scope_loss)
    return seen


SCOPE_VARIANTS = [
    {},  # the tiny preset: exact KL, normalize sum, paper directions; two mini-batches (separate pi_old pass)
    {"optim.mini_batch_prompts": 4, "optim.old_logp_pass": "when_needed", "scope.normalize": "mean",
     "scope.student_direction": "reversed", "scope.kl_estimator": "sampled", "scope.tau": 0.5},
    {"scope.student_direction": "ones", "scope.teacher_direction": "ones"},  # no_dpaw (Fig. 5)
]


@pytest.mark.parametrize("overrides", SCOPE_VARIANTS, ids=["paper", "mean-reversed-tau0.5", "ones"])
def test_records_hold_the_weights_the_loss_used(tmp_path, captured, overrides):
    cfg = smoke_config(tmp_path, method="scope", **overrides)
    train(cfg)
    records = wr.read_weight_records(cfg.output_dir)
    rows_per_step = cfg.optim.prompts_per_step * cfg.rollout.group_size
    assert records["step"].tolist() == [s for s in range(1, cfg.steps + 1) for _ in range(rows_per_step)]
    assert records["row"].tolist() == list(range(rows_per_step)) * cfg.steps

    # The loss was given its weights (`weights`, a DPAWWeights), and the records are those very numbers.
    calls = captured["loss_calls"]
    assert all(call["weights"] is not None for call in calls)
    correct = torch.cat([c["correct"] for c in calls]).numpy()
    w_student = torch.cat([c["weights"][0] for c in calls]).numpy()
    w_teacher = torch.cat([c["weights"][1] for c in calls]).numpy()
    assert len(correct) == len(records)  # every rollout went through the loss exactly once
    np.testing.assert_array_equal(records["correct"].to_numpy(), correct)
    np.testing.assert_array_equal(records["student_weight"].to_numpy()[correct], w_student[correct])
    np.testing.assert_array_equal(records["teacher_weight"].to_numpy()[~correct], w_teacher[~correct])
    assert records["student_weight"][~correct].isna().all() and records["teacher_weight"][correct].isna().all()
    raw_group = torch.cat([c["group"] for c in calls]).numpy()
    for step, part in records.groupby("step"):
        dense = np.unique(raw_group[part.index], return_inverse=True)[1]
        np.testing.assert_array_equal(part["group"].to_numpy(), dense)

    # Eq. 4-5 per group and path: sums of 1 (sum), of the path size (mean), or weight 1 each (ones).
    s = cfg.scope
    assert wr.path_sum_error(records, normalize=s.normalize, student_direction=s.student_direction,
                             teacher_direction=s.teacher_direction) < 1e-5
    if s.student_direction == "ones":
        assert (records["student_weight"][correct] == 1).all() and (records["teacher_weight"][~correct] == 1).all()
    else:  # the weights are the per-group softmax of the recorded log-PPLs (float64 by hand)
        sign = {"paper": 1.0, "reversed": -1.0}
        for path, on_path, direction, flip in (("student", correct, s.student_direction, 1.0),
                                               ("teacher", ~correct, s.teacher_direction, -1.0)):
            part = records[on_path]
            z = flip * sign[direction] * part[f"{path}_log_ppl"].astype(np.float64) / s.tau
            expected = np.exp(z - z.groupby([part["step"], part["group"]]).transform("max"))
            expected = expected / expected.groupby([part["step"], part["group"]]).transform("sum")
            if s.normalize == "mean":
                expected = expected * part.groupby(["step", "group"])["row"].transform("size")
            np.testing.assert_allclose(part[f"{path}_weight"], expected, rtol=1e-4, atol=1e-6)
    recomputed = wr.eq45_weights(records, tau=s.tau, student_direction=s.student_direction,
                                 teacher_direction=s.teacher_direction, normalize=s.normalize)
    np.testing.assert_allclose(recomputed, records[["student_weight", "teacher_weight"]], rtol=1e-4, atol=1e-6)

    # Every scored row has a teacher log-PPL (the incorrect ones), the correct ones have none.
    assert records["teacher_log_ppl"][~correct].notna().all() and records["teacher_log_ppl"][correct].isna().all()
    assert (records["student_log_ppl"] > 0).all() and (records["length"].between(1, cfg.rollout.max_new_tokens)).all()
    # Each id finds the text that was graded.
    texts = wr.rollout_texts(cfg.output_dir, records["rollout_id"])
    assert texts["text"].tolist() == captured["texts"]
    top = wr.top_group_rollouts(cfg.output_dir, records, 2, top=2)
    assert top["text"].tolist() == [captured["texts"][i] for i in top["rollout_id"] - 2 * wr.ROLLOUT_ID_STRIDE + rows_per_step]
    assert top["ess_frac"].is_monotonic_increasing and top[["group", "path"]].drop_duplicates().shape[0] <= 2


@pytest.mark.parametrize("method,group_size", [("opd", 1), ("grpo", 4)])
def test_opd_and_grpo_record_their_rollouts_without_weights(tmp_path, captured, method, group_size):
    cfg = smoke_config(tmp_path, method=method, steps=2, checkpoint_every=0, **{"rollout.group_size": group_size})
    train(cfg)
    records = wr.read_weight_records(cfg.output_dir)
    assert len(records) == 2 * 4 * group_size
    assert records["student_weight"].isna().all() and records["teacher_weight"].isna().all()
    assert records["student_log_ppl"].notna().all()
    assert records["teacher_log_ppl"].notna().all() if method == "opd" else records["teacher_log_ppl"].isna().all()
    assert wr.rollout_texts(cfg.output_dir, records["rollout_id"])["text"].tolist() == captured["texts"]
    assert math.isnan(wr.path_sum_error(records, normalize="sum", student_direction="paper", teacher_direction="paper"))


def test_log_ppl_columns_match_a_float64_hand_computation(tmp_path, captured, monkeypatch):
    # One update per batch (pi_old = the base student at step 1): the first row's recorded
    # log-PPL is recomputed in float64 from a fresh copy of the base student, token by token.
    micro_batches = []
    real = Trainer._micro_loss

    def micro_loss(self, micro, n_global):
        micro_batches.append({k: v.detach().cpu().clone() for k, v in micro.items() if k != "teacher_logits"})
        return real(self, micro, n_global)

    monkeypatch.setattr(Trainer, "_micro_loss", micro_loss)
    cfg = smoke_config(tmp_path, method="scope", steps=1, checkpoint_every=0,
                       **{"optim.mini_batch_prompts": 4, "optim.old_logp_pass": "when_needed"})
    train(cfg)
    records = wr.read_weight_records(cfg.output_dir)
    first = micro_batches[0]
    from scope_lib.logprobs import position_ids_from_mask
    from scope_lib.weights import sequence_logp
    from scope_lib.world import WorldSpec, load_world

    world = load_world(WorldSpec.from_config(cfg))
    ids, att, mask = first["input_ids"], first["attention_mask"], first["response_mask"]
    for row, model, column in ((0, world.student, "student_log_ppl"),
                               (int((~first["correct"]).nonzero()[0]), world.teacher, "teacher_log_ppl")):
        with torch.no_grad():
            logits = model.double()(input_ids=ids[row:row + 1], attention_mask=att[row:row + 1],
                                    position_ids=position_ids_from_mask(att[row:row + 1])).logits[0]
        log_probs = torch.log_softmax(logits, dim=-1)
        tokens = [t for t in range(1, ids.shape[1]) if mask[row, t]]
        by_hand = sum(float(log_probs[t - 1, ids[row, t]]) for t in tokens) / len(tokens)
        token_logp = torch.zeros(ids.shape[1], dtype=torch.float64)
        token_logp[1:] = log_probs[:-1].gather(-1, ids[row, 1:, None])[:, 0]
        assert float(sequence_logp(token_logp[None], mask[row:row + 1])[0]) == pytest.approx(by_hand, abs=1e-12)
        assert float(records[column].iloc[row]) == pytest.approx(-by_hand, rel=1e-5), column


def test_resume_drops_the_records_of_later_steps(tmp_path, captured):
    cfg = smoke_config(tmp_path, method="scope")  # 3 steps, a checkpoint after step 2
    train(cfg)
    folder = wr.records_dir(cfg.output_dir)
    assert sorted(p.name for p in folder.glob("weights-*")) == ["weights-000001-000002.parquet", "weights-000003-000003.parquet"]
    first_attempt = wr.read_weight_records(cfg.output_dir)
    first_texts = wr.rollout_texts(cfg.output_dir, first_attempt["rollout_id"])["text"].tolist()
    (folder / ".weights-000003-000004.parquet.99.tmp").write_bytes(b"PAR1 torn")  # a write cut short
    assert wr.read_weight_records(cfg.output_dir).equals(first_attempt)  # a temporary is never read

    # The records of a run take up a small share of one of its checkpoints.
    size = wr.record_bytes(cfg.output_dir)
    assert size["steps"] == 3 and size["total_bytes_per_step"] < 0.05 * wr.checkpoint_bytes(cfg.output_dir)

    trainer = Trainer(cfg)
    assert trainer.maybe_resume() and trainer.step == 2
    assert sorted(wr.read_weight_records(cfg.output_dir)["step"].unique()) == [1, 2]
    assert sorted(p.name for p in folder.iterdir()) == ["texts-000001-000002.parquet", "weights-000001-000002.parquet"]
    with pytest.raises(KeyError, match="no text"):
        wr.rollout_texts(cfg.output_dir, [3 * wr.ROLLOUT_ID_STRIDE])

    # a finished run says done and trains nothing; as a run killed after step 3, before it was done,
    # it resumes from step 2 and trains step 3 again, as the run did the first time
    (Path(cfg.output_dir) / "done.json").unlink()
    train(cfg)
    again = wr.read_weight_records(cfg.output_dir)
    pd.testing.assert_frame_equal(again, first_attempt)
    assert wr.rollout_texts(cfg.output_dir, again["rollout_id"])["text"].tolist() == first_texts


def _random_step(rng, prompts=3, group_size=4):
    n = prompts * group_size
    correct = rng.random(n) < 0.5
    w = rng.random(n).astype(np.float32)
    return dict(group=np.repeat(rng.permutation(100)[:prompts] + 1000, group_size), correct=correct,
                length=rng.integers(1, 50, n), student_log_ppl=rng.random(n), teacher_log_ppl=rng.random(n),
                student_weight=np.where(correct, w, np.nan), teacher_weight=np.where(~correct, w, np.nan),
                texts=[f"text {rng.integers(1 << 30)}" for _ in range(n)], questions=["q"] * n)


def test_truncate_cuts_a_part_that_straddles_the_resumed_step(tmp_path):
    rng = np.random.default_rng(0)
    recorder = wr.WeightRecorder(tmp_path)
    steps = {s: _random_step(rng) for s in range(1, 6)}
    for s in (1, 2):
        recorder.add_step(s, **steps[s])
    recorder.flush()
    for s in (3, 4, 5):
        recorder.add_step(s, **steps[s])
    recorder.flush()
    with pytest.raises(ValueError, match="steps must increase"):
        recorder.add_step(2, **steps[2])
    whole = wr.read_weight_records(tmp_path)
    np.testing.assert_array_equal(whole["length"], np.concatenate([steps[s]["length"] for s in steps]))
    np.testing.assert_array_equal(whole["student_weight"],
                                  np.concatenate([steps[s]["student_weight"] for s in steps]).astype(np.float32))

    wr.truncate_records(tmp_path, 4)
    names = sorted(p.name for p in wr.records_dir(tmp_path).iterdir())
    assert names == ["texts-000001-000002.parquet", "texts-000003-000004.parquet",
                     "weights-000001-000002.parquet", "weights-000003-000004.parquet"]
    pd.testing.assert_frame_equal(wr.read_weight_records(tmp_path), whole[whole["step"] <= 4].reset_index(drop=True))
    assert wr.rollout_texts(tmp_path, [4 * wr.ROLLOUT_ID_STRIDE + 11])["text"].tolist() == [steps[4]["texts"][11]]
    with pytest.raises(KeyError, match=str(5 * wr.ROLLOUT_ID_STRIDE)):
        wr.rollout_texts(tmp_path, [5 * wr.ROLLOUT_ID_STRIDE])

    # Overlapping parts are refused, naming both; a damaged whole-named file is never read silently.
    again = wr.WeightRecorder(tmp_path)  # as a resumed trainer's recorder: it knows no earlier step
    again.add_step(4, **steps[5])
    again.flush()
    with pytest.raises(ValueError, match="weights-000003-000004.parquet and weights-000004-000004.parquet overlap"):
        wr.read_weight_records(tmp_path)
    (wr.records_dir(tmp_path) / "weights-000004-000004.parquet").write_bytes(b"not parquet")
    with pytest.raises(Exception):
        wr.read_weight_records(tmp_path)
    wr.truncate_records(tmp_path, 0)
    assert not wr.has_weight_records(tmp_path) and not list(wr.records_dir(tmp_path).iterdir())
    with pytest.raises(FileNotFoundError, match="no weight records"):
        wr.read_weight_records(tmp_path)


def test_summaries_match_a_hand_computation():
    rng = np.random.default_rng(1)
    recorder_rows = []
    for step in (1, 2, 3):
        part = _random_step(rng, prompts=5, group_size=6)
        n = len(part["correct"])
        recorder_rows.append(pd.DataFrame({
            "step": step, "row": np.arange(n), "group": np.repeat(np.arange(5), 6), "rollout_id": step * wr.ROLLOUT_ID_STRIDE + np.arange(n),
            "correct": part["correct"], "student_log_ppl": part["student_log_ppl"], "teacher_log_ppl": part["teacher_log_ppl"],
            "student_weight": part["student_weight"], "teacher_weight": part["teacher_weight"]}))
    records = pd.concat(recorder_rows, ignore_index=True)
    ess = wr.group_ess(records).set_index(["step", "group", "path"])
    for (step, group), members in records.groupby(["step", "group"]):
        for path, on in (("student", members["correct"]), ("teacher", ~members["correct"])):
            w = [float(x) for x in members.loc[on, f"{path}_weight"]]
            if not w:
                assert (step, group, path) not in ess.index
                continue
            row = ess.loc[(step, group, path)]
            total = sum(w)
            assert row["n"] == len(w) and row["weight_sum"] == pytest.approx(total)
            assert row["ess"] == pytest.approx(total ** 2 / sum(x * x for x in w))
            assert row["ess_frac"] == pytest.approx(total ** 2 / sum(x * x for x in w) / len(w))
            assert row["max_share"] == pytest.approx(max(w) / total)
    top = wr.most_concentrated_groups(records, 2, top=3)
    candidates = ess.loc[2][ess.loc[2]["n"] >= 2]["ess_frac"].sort_values()
    assert top["ess_frac"].tolist() == pytest.approx(candidates.iloc[:3].tolist())
    by_step = wr.ess_by_step(records)
    assert by_step.set_index(["step", "path"]).loc[(2, "teacher"), "ess_frac"] == pytest.approx(
        candidates.loc[(slice(None), "teacher")].mean())
    long = wr.path_rows(records)
    for _, members in long.groupby(["step", "group", "path"]):
        w = members["weight"].to_numpy()
        np.testing.assert_allclose(members["rel_weight"], [x * len(w) / sum(w) for x in w], rtol=1e-12)
    assert wr.pick_steps([5, 1, 3, 2, 4]) == [1, 3, 5] and wr.pick_steps([1, 2], [2]) == [2]
    with pytest.raises(ValueError, match=r"steps \[9\] are not recorded"):
        wr.pick_steps([1, 2], [9])
    # Each path sums to 1 after normalising per group: the check notebook 10 runs reads 0.
    normalised = records.copy()
    for path, on in (("student", normalised["correct"]), ("teacher", ~normalised["correct"])):
        col = normalised.loc[on, f"{path}_weight"]
        normalised.loc[on, f"{path}_weight"] = col / col.groupby([normalised["step"], normalised["group"]]).transform("sum")
    assert wr.path_sum_error(normalised, normalize="sum", student_direction="paper", teacher_direction="paper") < 1e-6
    assert wr.path_sum_error(records, normalize="sum", student_direction="paper", teacher_direction="paper") > 1e-3


def test_a_micro_batch_that_splits_a_group_is_refused():
    from collections import Counter

    from scope_lib.batching import check_whole_groups

    groups = torch.tensor([7, 7, 7, 9, 9])
    check_whole_groups(groups[:3], Counter(groups.tolist()))  # whole: fine
    with pytest.raises(RuntimeError, match="holds 2 of the 3 rows of prompt group 7"):
        check_whole_groups(groups[:2], Counter(groups.tolist()))
