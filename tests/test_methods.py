"""Methods as objects (scope_lib/methods.py) and the refactor's no-change check: the smoke
histories and final weights recorded before it (tests/fixtures/smoke_reference.json)."""

import json
import platform
import sys
from pathlib import Path

import pytest
import torch

from scope_lib import losses
from scope_lib.config import load_config
from scope_lib.methods import GRPO, KD, OPD, Scope, make_method

ROOT = Path(__file__).resolve().parents[1]


def _cfg(**overrides):
    return load_config("tiny", overrides=overrides)


def test_make_method_and_what_each_declares():
    correct = torch.tensor([True, False, False, True, False])
    group = torch.tensor([7, 7, 7, 9, 9])
    expected = {  # needs_teacher, samples_rollouts, scored rows, normaliser
        "scope": (Scope, True, True, [1, 2, 4], 2),
        "opd": (OPD, True, True, [0, 1, 2, 3, 4], 5),
        "grpo": (GRPO, False, True, [], 5),
        "kd": (KD, True, False, [], 5),
    }
    for name, (cls, teacher, rollouts, rows, n) in expected.items():
        method = make_method(_cfg(method=name, **({"rollout.group_size": 1} if name == "opd" else {})))
        assert type(method) is cls and method.name == name
        assert (method.needs_teacher, method.samples_rollouts) == (teacher, rollouts)
        assert method.teacher_rows(correct).tolist() == rows
        assert method.normaliser(group) == n
    assert make_method(_cfg(method="grpo", **{"grpo.beta": 0.0})).needs_reference is False
    assert make_method(_cfg(method="grpo", **{"grpo.beta": 1e-3})).needs_reference is True
    assert make_method(_cfg(method="scope", **{"scope.kl_estimator": "exact"})).exact_kl
    assert not make_method(_cfg(method="kd", **{"scope.kl_estimator": "exact"})).exact_kl


def test_normalise_shares_sum_to_the_whole_batch_loss():
    torch.manual_seed(0)
    per_row = torch.randn(10, dtype=torch.float64)
    group = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4, 4])
    for unit in ("prompts", "rows"):
        whole = losses.normalise(per_row, losses.normaliser_count(group, unit))
        n_global = losses.normaliser_count(group, unit)
        parts = [slice(0, 2), slice(2, 6), slice(6, 10)]  # whole groups
        shares = sum(losses.normalise(per_row[s], losses.normaliser_count(group[s], unit), n_global) for s in parts)
        assert float(shares) == pytest.approx(float(whole), rel=1e-12)
    assert losses.normaliser_count(group, "prompts") == 5
    empty = torch.zeros(0, requires_grad=True)
    out = losses.normalise(empty, 0)
    out.backward()
    assert float(out.detach()) == 0.0 and float(empty.grad.sum()) == 0.0
    with pytest.raises(ValueError):
        losses.normalise(per_row, 10, 0)
    with pytest.raises(ValueError):
        losses.normaliser_count(group, "tokens")


def test_exact_kl_row_loss_is_the_token_mean_of_full_reverse_kl():
    torch.manual_seed(1)
    student, teacher = torch.randn(3, 5, 11, requires_grad=True), torch.randn(3, 5, 11)
    mask = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    rows = losses.exact_kl_row_loss(student, teacher, mask)
    kl = losses.full_reverse_kl(student, teacher)
    assert rows.shape == (3,) and float(rows[1]) == 0.0
    torch.testing.assert_close(rows[0], kl[0, 1:3].mean())
    torch.testing.assert_close(rows[2], kl[2].mean())


def test_opd_row_loss_option_and_global_share():
    torch.manual_seed(2)
    logp = -torch.rand(4, 6)
    mask = torch.ones(4, 6)
    row_loss = torch.rand(4)
    loss, stats = losses.opd_baseline_loss(logp, logp, logp, mask, row_loss=row_loss)
    assert float(loss) == pytest.approx(float(row_loss.mean())) and stats == {"opd_loss": pytest.approx(float(row_loss.mean()))}
    share, _ = losses.opd_baseline_loss(logp, logp, logp, mask, row_loss=row_loss, n_global=8)
    assert float(share) == pytest.approx(float(row_loss.sum()) / 8)


def test_refactor_leaves_the_smoke_histories_and_weights_unchanged(tmp_path, monkeypatch):
    """Every case of tests/helpers/reference_histories.py trains to the recorded metrics and weights."""
    sys.path.insert(0, str(ROOT / "tests" / "helpers"))
    import reference_histories

    reference = json.loads((ROOT / "tests" / "fixtures" / "smoke_reference.json").read_text())
    meta = reference.pop("_meta")
    # bit for bit only on the kind of CPU that recorded the reference (float kernels differ in the
    # last bits between CPUs: AVX-512 and AMX against AVX2)
    same_platform = (meta["torch"] == torch.__version__ and meta["machine"] == platform.machine()
                     and meta.get("cpu") == reference_histories.cpu_signature())
    threads = torch.get_num_threads()
    torch.set_num_threads(meta["threads"])
    try:
        for name, case in reference_histories.CASES.items():
            got = reference_histories.run_case(case, tmp_path / name)
            want = reference[name]
            assert [r.keys() for r in got["history"]] == [r.keys() for r in want["history"]], name
            for row_got, row_want in zip(got["history"], want["history"]):
                for key, value in row_want.items():
                    assert row_got[key] == (value if same_platform else pytest.approx(value, rel=1e-5, abs=1e-7)), (name, key)
            if same_platform:  # bit for bit where the reference was recorded
                assert got["params_sha256"] == want["params_sha256"], name
    finally:
        torch.set_num_threads(threads)
