"""scope.tau_student: Eq. 4's own temperature (the student path), Eq. 5 keeping scope.tau; the
variant family that sweeps it; and the ESS helpers that choose it (scope_lib/weights.py)."""

import math

import numpy as np
import pytest
import torch

from scope_lib import losses
from scope_lib.config import ConfigError, load_config
from scope_lib.experiments.grid import experiment_config, variant_overrides
from scope_lib.methods import MicroBatch, make_method
from scope_lib.weights import DPAW, student_ess_frac, student_weights, tau_student_for_ess, teacher_weights


def _batch(seed, dtype=torch.float64):
    """A seeded batch of 3 prompts x 4 rollouts with both paths in every group."""
    g = torch.Generator().manual_seed(seed)
    B, T = 12, 6
    old = -torch.rand(B, T, generator=g, dtype=dtype) * 2
    logp = (old + 0.1 * torch.randn(B, T, generator=g, dtype=dtype)).requires_grad_()
    teacher = -torch.rand(B, T, generator=g, dtype=dtype) * 2
    mask = torch.zeros(B, T, dtype=dtype)
    for i, length in enumerate(torch.randint(1, T - 1, (B,), generator=g).tolist()):
        mask[i, 2 : 2 + length] = 1  # after a 2-token prompt, responses of 1..3 tokens
    correct = torch.tensor([True, True, True, False, True, False, True, False, False, True, True, False])
    group = torch.tensor([5] * 4 + [9] * 4 + [2] * 4)
    return logp, old, teacher, mask, correct, group


def _hand_softmax(scores, on, group, tau):
    w = np.zeros(len(scores))
    for gid in set(group):
        rows = [i for i in range(len(scores)) if group[i] == gid and on[i]]
        e = np.exp(np.array([scores[i] for i in rows]) / tau)
        for i, v in zip(rows, e / e.sum()):
            w[i] = v
    return w


def test_tau_student_sets_eq4_alone_against_a_float64_hand_computation():
    logp, old, teacher, mask, correct, group = _batch(0)
    tau, tau_student = 1.5, 0.25
    on = mask.numpy() != 0
    s_student = [old.numpy()[i][on[i]].mean() for i in range(len(correct))]
    s_teacher = [teacher.numpy()[i][on[i]].mean() for i in range(len(correct))]
    ok, grp = correct.numpy(), group.numpy()
    w_s = _hand_softmax(-np.array(s_student), ok, grp, tau_student)  # Eq. 4: PPL_S^(1/tau_student)
    w_t = _hand_softmax(np.array(s_teacher), ~ok, grp, tau)  # Eq. 5 at tau
    dpaw = losses.dpaw_weights(old, teacher, mask, correct, group, DPAW(tau=tau, tau_student=tau_student))
    np.testing.assert_allclose(dpaw.student.numpy(), w_s, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dpaw.teacher.numpy(), w_t, rtol=1e-12, atol=1e-15)
    # Eq. 6 by hand: per prompt, sum of w_S * L_MLE over correct rows and w_T * L_OPD over incorrect ones
    lp, o, t = logp.detach().numpy(), old.numpy(), teacher.numpy()
    total = 0.0
    for i in range(len(correct)):
        rho = np.exp(lp[i][on[i]] - o[i][on[i]])
        if ok[i]:
            total += w_s[i] * -rho.mean()
        else:
            total += w_t[i] * -(rho * (t[i][on[i]] - lp[i][on[i]])).mean()
    loss, stats = losses.scope_loss(logp, old, teacher, mask, correct, group, weights=DPAW(tau=tau, tau_student=tau_student))
    assert float(loss.detach()) == pytest.approx(total / 3, rel=1e-12)
    # the teacher path is the one-temperature loss's, the student path is not
    one = losses.dpaw_weights(old, teacher, mask, correct, group, DPAW(tau=tau))
    assert torch.equal(one.teacher, dpaw.teacher) and not torch.allclose(one.student, dpaw.student)


def test_tau_student_none_is_the_one_temperature_behaviour_exactly():
    logp, old, teacher, mask, correct, group = _batch(1, torch.float32)
    for tau in (0.5, 1.0, 2.0):
        a = losses.dpaw_weights(old, teacher, mask, correct, group, DPAW(tau=tau))
        b = losses.dpaw_weights(old, teacher, mask, correct, group, DPAW(tau=tau, tau_student=None))
        c = losses.dpaw_weights(old, teacher, mask, correct, group, DPAW(tau=tau, tau_student=tau))
        s = losses.sequence_logp(old, mask)
        assert torch.equal(a.student, student_weights(s, correct, group, tau))  # what Eq. 4 always computed
        assert all(torch.equal(x, y) and torch.equal(x, z) for x, y, z in zip(a, b, c))
    # through the method object, loss and gradient: unset equals tau_student = tau, bit for bit
    grads = []
    for extra in ({}, {"scope.tau_student": 0.7}):
        cfg = load_config("tiny", overrides={"scope.tau": 0.7, "scope.kl_estimator": "sampled", **extra})
        x = logp.detach().clone().requires_grad_()
        rows = {"response_mask": mask, "group": group, "correct": correct, "old_logp": old, "teacher_logp": teacher}
        result = make_method(cfg).loss(MicroBatch(rows, logits=None, logp=x), n_global=3)
        result.loss.backward()
        grads.append((result.loss.detach(), x.grad, result.dpaw.student))
    assert all(torch.equal(a, b) for a, b in zip(*grads))
    assert load_config("tiny").scope.tau_student is None


def test_scope_method_uses_tau_student_for_the_student_path_only():
    logp, old, teacher, mask, correct, group = _batch(2, torch.float32)
    rows = {"response_mask": mask, "group": group, "correct": correct, "old_logp": old, "teacher_logp": teacher}
    cfg = load_config("tiny", overrides={"scope.kl_estimator": "sampled", "scope.tau_student": 0.1})
    dpaw = make_method(cfg).loss(MicroBatch(rows, logits=None, logp=logp), n_global=3).dpaw
    s, st = losses.sequence_logp(old, mask), losses.sequence_logp(teacher, mask)
    assert torch.equal(dpaw.student, student_weights(s, correct, group, 0.1))
    assert torch.equal(dpaw.teacher, teacher_weights(st, correct, group, 1.0))


@pytest.mark.parametrize("value", [0, 0.0, -0.5, float("inf"), float("nan"), "nan", True])
def test_bad_tau_student_is_refused_at_load_naming_the_key(value):
    with pytest.raises(ConfigError, match="scope.tau_student"):
        load_config("tiny", overrides={"scope.tau_student": value})


def test_bad_tau_student_in_a_file_names_the_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("scope:\n  tau_student: -1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*'scope.tau_student': must be > 0"):
        load_config(path)
    path.write_text("scope:\n  tau_student: null\n")
    assert load_config(path).scope.tau_student is None


def test_tau_student_variant_family():
    assert variant_overrides("scope_tau_student0.05") == {"method": "scope", "scope.tau_student": 0.05}
    assert variant_overrides("scope_tau0.5") == {"method": "scope", "scope.tau": 0.5}  # Fig. 6's, unchanged
    cfg = experiment_config("tiny", "scope_tau_student0.05", 0)
    assert (cfg.method, cfg.scope.tau_student, cfg.scope.tau) == ("scope", 0.05, 1.0)
    assert cfg.fingerprint() != experiment_config("tiny", "scope", 0).fingerprint()
    with pytest.raises(ValueError, match="expected a number after 'scope_tau_student'"):
        variant_overrides("scope_tau_studentx")
    with pytest.raises(ConfigError, match="scope.tau_student"):
        experiment_config("tiny", "scope_tau_student0", 0)


def test_eq45_weights_recompute_with_tau_student():
    import pandas as pd

    from scope_lib import weight_records as wr

    rng = np.random.default_rng(3)
    records = pd.DataFrame({"step": [1] * 6, "group": [0, 0, 0, 1, 1, 1],
                            "correct": [True, True, False, True, True, False],
                            "student_log_ppl": rng.uniform(0.1, 1.0, 6), "teacher_log_ppl": rng.uniform(0.1, 1.0, 6)})
    out = wr.eq45_weights(records, tau=1.0, tau_student=0.2, student_direction="paper", teacher_direction="paper",
                          normalize="sum")
    for g in (0, 1):
        l = records.student_log_ppl.to_numpy()[3 * g : 3 * g + 2]
        e = np.exp(l / 0.2)
        np.testing.assert_allclose(out.student_weight.to_numpy()[3 * g : 3 * g + 2], e / e.sum(), rtol=1e-12)
    same = wr.eq45_weights(records, tau=1.0, student_direction="paper", teacher_direction="paper", normalize="sum")
    np.testing.assert_array_equal(out.teacher_weight.to_numpy(), same.teacher_weight.to_numpy())


# --- the ESS helpers --------------------------------------------------------------------------


def test_student_ess_frac_against_a_hand_computation():
    groups = [[0.1, 0.5], [0.2, 0.2, 0.9], [1.0], [0.3, 0.4, 0.35, 0.8]]
    for tau in (0.05, 0.3, 1.0, 4.0):
        fracs = []
        for members in groups:
            if len(members) < 2:  # a lone correct rollout is left out (ESS 1 at every tau)
                continue
            w = np.exp(np.array(members) / tau)  # Eq. 4: PPL^(1/tau) = exp(log_ppl / tau)
            w /= w.sum()
            fracs.append(w.sum() ** 2 / (w ** 2).sum() / len(members))
        assert student_ess_frac(groups, tau) == pytest.approx(np.mean(fracs), rel=1e-12)
    with pytest.raises(ValueError, match="no group"):
        student_ess_frac([[0.5], [0.7]], 1.0)
    with pytest.raises(ValueError, match="finite"):
        student_ess_frac([[0.5, float("nan")]], 1.0)


def test_tau_student_for_ess_bisects_to_the_closed_form_of_one_pair():
    # one group of two with log-PPL gap d: weights p, 1-p with p = 1/(1+exp(-d/tau)); ESS/n = 1/(2(p^2+(1-p)^2))
    d = 0.6
    for target in (0.95, 0.85, 0.70):
        p = (1 + math.sqrt(1 / target - 1)) / 2
        want = d / math.log(p / (1 - p))
        got = tau_student_for_ess([[0.2, 0.2 + d]], target)
        assert got == pytest.approx(want, rel=1e-8)


def test_tau_student_for_ess_on_seeded_groups_is_monotone_and_hits_the_target():
    rng = np.random.default_rng(4)
    groups = [rng.normal(0.5, 0.2, size=rng.integers(1, 8)) for _ in range(40)]
    taus = [tau_student_for_ess(groups, t) for t in (0.95, 0.85, 0.70)]
    assert taus[0] > taus[1] > taus[2] > 0  # a lower ESS needs a lower temperature
    for target, tau in zip((0.95, 0.85, 0.70), taus):
        assert student_ess_frac(groups, tau) == pytest.approx(target, abs=1e-7)
    grid = [student_ess_frac(groups, t) for t in np.geomspace(1e-3, 1e3, 25)]
    assert all(a <= b + 1e-15 for a, b in zip(grid, grid[1:]))
    with pytest.raises(ValueError, match="runs from"):
        tau_student_for_ess([[0.3, 0.3], [0.1, 0.1, 0.1]], 0.9)  # equal log-PPLs: ESS 1 at every tau
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        tau_student_for_ess(groups, 1.0)


def test_the_helpers_agree_with_the_preconditions_record():
    """preconditions.ess_at_tau / tau_for_ess (the world's record) take a student_path_table; the
    helpers here take the groups' log-PPLs: on the same rollouts they give the same numbers."""
    import pandas as pd

    from scope_lib.studies import preconditions

    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 7, size=30)
    table = pd.DataFrame({"group": np.repeat(np.arange(30), sizes), "correct": rng.random(sizes.sum()) < 0.7,
                          "log_ppl": rng.normal(0.4, 0.15, sizes.sum())})
    right = table[table.correct]
    groups = [rows.to_numpy() for _, rows in right.groupby("group")["log_ppl"]]
    for tau in (0.05, 0.5, 2.0):
        assert student_ess_frac(groups, tau) == pytest.approx(preconditions.ess_at_tau(table, tau), rel=1e-12)
    for target in (0.95, 0.85, 0.70):
        assert tau_student_for_ess(groups, target) == pytest.approx(preconditions.tau_for_ess(table, target), rel=1e-6)
