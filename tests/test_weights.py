"""DPAW weights (Eq. 4, 5) against float64 hand computations, identities and properties."""

import math
import os
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scope_lib.weights import sequence_logp, student_weights, teacher_weights, weight_stats

WEIGHT_FNS = {"student": student_weights, "teacher": teacher_weights}


@pytest.fixture
def gen():
    # Fresh inputs every run; the seed is printed so a failure can be replayed with SCOPE_TEST_SEED.
    seed = int(os.environ.get("SCOPE_TEST_SEED", random.SystemRandom().randrange(2**32)))
    print(f"seed={seed}")
    return torch.Generator().manual_seed(seed)


def random_batch(gen, n_max=40, dtype=torch.float32):
    n = int(torch.randint(1, n_max + 1, (1,), generator=gen))
    n_prompts = int(torch.randint(1, 8, (1,), generator=gen))
    prompt_ids = torch.randperm(10_000, generator=gen)[:n_prompts] * 7 - 5_000  # non-contiguous, signed
    group = prompt_ids[torch.randint(0, n_prompts, (n,), generator=gen)]
    correct = torch.rand(n, generator=gen) < 0.5
    seq_logp = (torch.randn(n, generator=gen, dtype=torch.float64) * 2 - 1.5).to(dtype)
    tau = float(torch.empty(1).uniform_(0.3, 3.0, generator=gen))
    return seq_logp, correct, group, tau


def hand_weights(seq_logp, correct, group, tau, which, direction, normalize):
    """Python loops over groups, float64, straight from Eq. 4 / Eq. 5 as written in docs/DESIGN.md §2.6-2.7."""
    s = seq_logp.double().tolist()
    on_path = correct.tolist() if which == "student" else (~correct).tolist()
    out = [0.0] * len(s)
    for g in set(group.tolist()):
        rows = [i for i, gi in enumerate(group.tolist()) if gi == g and on_path[i]]
        if not rows:
            continue
        if direction == "uniform":
            unnorm = [1.0 for _ in rows]
        elif which == "student":  # PPL_S^(+-1/tau) = exp(-+s/tau)
            sign = 1.0 if direction == "paper" else -1.0
            unnorm = [math.exp(-sign * s[i] / tau) for i in rows]
        else:  # PPL_T^(-+1/tau) = exp(+-s/tau)
            sign = 1.0 if direction == "paper" else -1.0
            unnorm = [math.exp(sign * s[i] / tau) for i in rows]
        total = sum(unnorm)
        scale = len(rows) if normalize == "mean" else 1.0
        for i, u in zip(rows, unnorm):
            out[i] = u / total * scale
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("which", ["student", "teacher"])
@pytest.mark.parametrize("direction", ["paper", "reversed", "uniform"])
@pytest.mark.parametrize("normalize", ["sum", "mean"])
def test_matches_hand_computation(gen, which, direction, normalize):
    for _ in range(5):
        seq_logp, correct, group, tau = random_batch(gen)
        got = WEIGHT_FNS[which](seq_logp, correct, group, tau, direction, normalize)
        want = hand_weights(seq_logp, correct, group, tau, which, direction, normalize)
        assert got.dtype == torch.float32 and got.shape == seq_logp.shape
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
        off_path = ~correct if which == "student" else correct
        assert torch.all(got[off_path] == 0)
        got64 = WEIGHT_FNS[which](seq_logp.double(), correct, group, tau, direction, normalize)
        assert got64.dtype == torch.float64
        torch.testing.assert_close(got64, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("which", ["student", "teacher"])
def test_paper_direction_orders_by_perplexity(gen, which):
    # Eq. 4: the correct rollout the student finds hardest weighs most; Eq. 5: the wrong rollout the teacher finds likeliest.
    seq_logp = torch.tensor([-0.2, -1.0, -3.0])
    correct = torch.full((3,), which == "student")
    w = WEIGHT_FNS[which](seq_logp, correct, torch.zeros(3, dtype=torch.long))
    expected_top = 2 if which == "student" else 0
    assert int(w.argmax()) == expected_top


@pytest.mark.parametrize("which", ["student", "teacher"])
@pytest.mark.parametrize("direction", ["paper", "reversed"])
def test_invariant_to_per_group_constant_and_permutation(gen, which, direction):
    seq_logp, correct, group, tau = random_batch(gen)
    fn = WEIGHT_FNS[which]
    base = fn(seq_logp, correct, group, tau, direction)
    _, gidx = torch.unique(group, return_inverse=True)
    shift = torch.randn(int(gidx.max()) + 1, generator=gen) * 50
    torch.testing.assert_close(fn(seq_logp + shift[gidx], correct, group, tau, direction), base, rtol=1e-4, atol=1e-5)
    perm = torch.randperm(len(seq_logp), generator=gen)
    torch.testing.assert_close(fn(seq_logp[perm], correct[perm], group[perm], tau, direction), base[perm])


@pytest.mark.parametrize("which", ["student", "teacher"])
def test_large_tau_is_uniform_and_reversed_is_negated(gen, which):
    seq_logp, correct, group, _ = random_batch(gen)
    fn = WEIGHT_FNS[which]
    uniform = fn(seq_logp, correct, group, direction="uniform")
    torch.testing.assert_close(fn(seq_logp, correct, group, tau=1e7), uniform, rtol=1e-5, atol=1e-6)
    tau = float(torch.empty(1).uniform_(0.2, 5, generator=gen))
    torch.testing.assert_close(
        fn(seq_logp, correct, group, tau, direction="reversed"), fn(-seq_logp, correct, group, tau, direction="paper")
    )


@pytest.mark.parametrize("which", ["student", "teacher"])
@pytest.mark.parametrize("direction", ["paper", "reversed", "uniform"])
def test_mean_is_sum_times_path_size(gen, which, direction):
    seq_logp, correct, group, tau = random_batch(gen)
    fn = WEIGHT_FNS[which]
    w_sum = fn(seq_logp, correct, group, tau, direction, "sum")
    w_mean = fn(seq_logp, correct, group, tau, direction, "mean")
    on_path = correct if which == "student" else ~correct
    size = torch.tensor([int((on_path & (group == g)).sum()) for g in group.tolist()], dtype=torch.float32)
    torch.testing.assert_close(w_mean, w_sum * size)
    for g in set(group.tolist()):
        rows = on_path & (group == g)
        if rows.any():
            torch.testing.assert_close(w_sum[rows].sum(), torch.tensor(1.0))
            torch.testing.assert_close(w_mean[rows].mean(), torch.tensor(1.0))


def test_extreme_inputs_stay_finite(gen):
    group = torch.tensor([3, 3, 3, 9, 9, 42])
    correct = torch.tensor([True, True, False, True, False, False])
    seq_logp = torch.tensor([-1e4, -0.1, -1e4, -1e4, -1e4, -0.3])
    for fn in WEIGHT_FNS.values():
        for tau in (1e-30, 0.5, 1.0, 1e30):
            for direction in ("paper", "reversed", "uniform"):
                for normalize in ("sum", "mean"):
                    w = fn(seq_logp, correct, group, tau, direction, normalize)
                    assert torch.isfinite(w).all() and (w >= 0).all()
    # Eq. 4 at tau=1: the -1e4 row takes all of group 3's weight; single-member paths get 1.
    w = student_weights(seq_logp, correct, group)
    torch.testing.assert_close(w, torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]))
    w = teacher_weights(seq_logp, correct, group, normalize="mean")
    torch.testing.assert_close(w, torch.tensor([0.0, 0.0, 1.0, 0.0, 1.0, 1.0]))


def test_bf16_input(gen):
    seq_logp, correct, group, tau = random_batch(gen)
    half = seq_logp.bfloat16()
    for fn in WEIGHT_FNS.values():
        w = fn(half, correct, group, tau)
        assert w.dtype == torch.float32 and torch.isfinite(w).all()
        torch.testing.assert_close(w, fn(half.float(), correct, group, tau))


def test_empty_path_and_empty_batch():
    group = torch.tensor([5, 5, 6])
    everyone_right = torch.ones(3, dtype=torch.bool)
    seq_logp = torch.randn(3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(teacher_weights(seq_logp, everyone_right, group), torch.zeros(3))
    assert torch.equal(student_weights(seq_logp, ~everyone_right, group, normalize="mean"), torch.zeros(3))
    empty = student_weights(torch.zeros(0), torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.long))
    assert empty.shape == (0,)


def test_off_path_nan_is_ignored_but_on_path_nan_is_an_error():
    group = torch.tensor([1, 1, 1])
    correct = torch.tensor([True, False, False])
    seq_logp = torch.tensor([float("nan"), -1.0, -2.0])
    w = teacher_weights(seq_logp, correct, group)
    assert torch.isfinite(w).all() and w[0] == 0
    with pytest.raises(ValueError, match="seq_logp"):
        student_weights(seq_logp, correct, group)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(seq_logp=torch.zeros(2, 2)), "seq_logp"),
        (dict(correct=torch.ones(4, dtype=torch.bool)), "correct"),
        (dict(group=torch.zeros(2, dtype=torch.long)), "group"),
        (dict(correct=torch.ones(3, dtype=torch.long)), "correct"),
        (dict(group=torch.zeros(3)), "group"),
        (dict(seq_logp=torch.zeros(3, dtype=torch.long)), "seq_logp"),
        (dict(tau=0.0), "tau"),
        (dict(tau=-1.0), "tau"),
        (dict(tau=float("nan")), "tau"),
        (dict(tau=float("inf")), "tau"),
        (dict(direction="inverse"), "direction"),
        (dict(normalize="softmax"), "normalize"),
    ],
)
def test_value_errors_name_the_argument(kwargs, name):
    args = dict(seq_logp=torch.zeros(3), correct=torch.ones(3, dtype=torch.bool), group=torch.zeros(3, dtype=torch.long))
    args.update(kwargs)
    for fn in WEIGHT_FNS.values():
        with pytest.raises(ValueError, match=name):
            fn(**args)


finite32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.tuples(finite32, st.booleans(), st.integers(-3, 3)), min_size=1, max_size=12),
    tau=st.floats(min_value=1e-6, max_value=1e6),
    direction=st.sampled_from(["paper", "reversed", "uniform"]),
    normalize=st.sampled_from(["sum", "mean"]),
)
def test_property_finite_and_normalised(rows, tau, direction, normalize):
    seq_logp = torch.tensor([r[0] for r in rows], dtype=torch.float32)
    correct = torch.tensor([r[1] for r in rows])
    group = torch.tensor([r[2] for r in rows])
    for which, fn in WEIGHT_FNS.items():
        w = fn(seq_logp, correct, group, tau, direction, normalize)
        assert torch.isfinite(w).all() and (w >= 0).all()
        on_path = correct if which == "student" else ~correct
        for g in set(group.tolist()):
            members = on_path & (group == g)
            if members.any():
                target = float(members.sum()) if normalize == "mean" else 1.0
                assert math.isclose(float(w[members].double().sum()), target, rel_tol=1e-5)


# ---------------------------------------------------------------------------------------------


def test_sequence_logp(gen):
    logp = -torch.rand(6, 9, generator=gen, dtype=torch.float64) * 5
    mask = torch.rand(6, 9, generator=gen) < 0.6
    mask[0] = False
    logp_with_junk = torch.where(mask, logp, torch.full_like(logp, float("nan")))
    got = sequence_logp(logp_with_junk, mask)
    for i in range(6):
        toks = [logp[i, t].item() for t in range(9) if mask[i, t]]
        want = sum(toks) / len(toks) if toks else 0.0
        assert math.isclose(got[i].item(), want, rel_tol=1e-12, abs_tol=1e-12)
    assert sequence_logp(logp.bfloat16(), mask.long()).dtype == torch.float32
    with pytest.raises(ValueError, match="mask"):
        sequence_logp(logp, mask[:, :3])


def test_weight_stats(gen):
    group = torch.tensor([0, 0, 0, 0, 7, 7, 8])
    on = torch.tensor([True, True, True, True, True, True, False])
    uniform = torch.tensor([0.25, 0.25, 0.25, 0.25, 0.5, 0.5, 0.0])
    stats = weight_stats(uniform, on, group)
    assert math.isclose(stats["entropy"], 1.0) and math.isclose(stats["ess"], 3.0)  # mean of 4 and 2
    assert math.isclose(stats["ess_frac"], 1.0) and stats["n_groups"] == 2 and stats["max"] == 0.5
    one_hot = torch.tensor([1.0, 0, 0, 0, 0, 1.0, 0])
    stats = weight_stats(one_hot, on, group)
    assert math.isclose(stats["ess"], 1.0) and math.isclose(stats["entropy"], 0.0, abs_tol=1e-12)
    # against a direct computation on random weights, and invariant to the normalisation
    seq_logp, correct, grp, tau = random_batch(gen)
    w = student_weights(seq_logp, correct, grp, tau)
    stats = weight_stats(w, correct, grp)
    ess = [float(w[correct & (grp == g)].sum() ** 2 / (w[correct & (grp == g)] ** 2).sum())
           for g in set(grp.tolist()) if (correct & (grp == g)).any()]
    if ess:
        assert math.isclose(stats["ess"], sum(ess) / len(ess), rel_tol=1e-5)
        stats_mean = weight_stats(student_weights(seq_logp, correct, grp, tau, normalize="mean"), correct, grp)
        assert math.isclose(stats_mean["ess"], stats["ess"], rel_tol=1e-5)
        assert math.isclose(stats_mean["entropy"], stats["entropy"], rel_tol=1e-5, abs_tol=1e-9) or (
            math.isnan(stats["entropy"]) and math.isnan(stats_mean["entropy"])
        )
    assert weight_stats(torch.zeros(3), torch.zeros(3, dtype=torch.bool), torch.zeros(3))["max"] == 0.0


def test_ones_direction_gives_weight_one_on_the_path_whatever_the_normalisation():
    """'ones' (the released code's switched-off weights): 1 per rollout of the path, 0 elsewhere."""
    gen = torch.Generator().manual_seed(11)
    n = 40
    seq = -torch.rand(n, generator=gen, dtype=torch.float64) * 3
    correct = torch.rand(n, generator=gen) < 0.5
    group = torch.randint(0, 6, (n,), generator=gen)
    for normalize in ("sum", "mean"):
        for tau in (0.5, 1.0, 3.0):
            ws = student_weights(seq, correct, group, tau=tau, direction="ones", normalize=normalize)
            wt = teacher_weights(seq, correct, group, tau=tau, direction="ones", normalize=normalize)
            assert torch.equal(ws, correct.to(torch.float64))
            assert torch.equal(wt, (~correct).to(torch.float64))
    # 'uniform' keeps the group normalisation: 1/n per rollout of a group's path
    wu = student_weights(seq, correct, group, direction="uniform")
    for g in group.unique():
        rows = (group == g) & correct
        if rows.any():
            assert torch.allclose(wu[rows], torch.full((int(rows.sum()),), 1.0 / int(rows.sum()), dtype=torch.float64))


def test_dpaw_settings_object_computes_the_functions_weights_and_refuses_bad_settings():
    from scope_lib.config import load_config
    from scope_lib.weights import DPAW

    gen = torch.Generator().manual_seed(3)
    seq = torch.randn(12, generator=gen, dtype=torch.float64)
    correct = torch.rand(12, generator=gen) < 0.5
    group = torch.tensor([4] * 6 + [1] * 6)
    cfg = load_config("tiny", overrides={"scope.tau": 0.7, "scope.tau_student": 0.2, "scope.normalize": "mean",
                                         "scope.student_direction": "reversed"})
    dpaw = DPAW.from_config(cfg.scope)
    assert dpaw == DPAW(tau=0.7, tau_student=0.2, student_direction="reversed", teacher_direction="paper", normalize="mean")
    assert torch.equal(dpaw.student(seq, correct, group), student_weights(seq, correct, group, 0.2, "reversed", "mean"))
    assert torch.equal(dpaw.teacher(seq, correct, group), teacher_weights(seq, correct, group, 0.7, "paper", "mean"))
    assert DPAW(tau=0.7).student_tau == 0.7  # tau_student None: Eq. 4 at tau
    for bad in ({"tau": 0}, {"tau_student": -1.0}, {"student_direction": "up"}, {"normalize": "max"}):
        with pytest.raises(ValueError):
            DPAW(**bad)
