"""Losses (Eq. 1-3, 6, GRPO, KD, OPD) and token log-probs against float64 hand computations and identities."""

import math
import os
import random

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from scope_lib.logprobs import full_reverse_kl, token_logprobs, token_logprobs_from_logits
from scope_lib.losses import (
    DPAWWeights,
    group_advantages,
    grpo_loss,
    mle_loss,
    opd_baseline_loss,
    opd_loss,
    scope_loss,
    sft_loss,
)
from scope_lib.weights import DPAW


@pytest.fixture
def gen():
    # Fresh inputs every run; the seed is printed so a failure can be replayed with SCOPE_TEST_SEED.
    seed = int(os.environ.get("SCOPE_TEST_SEED", random.SystemRandom().randrange(2**32)))
    print(f"seed={seed}")
    return torch.Generator().manual_seed(seed)


def randint(gen, low, high):
    return int(torch.randint(low, high + 1, (1,), generator=gen))


def random_rollouts(gen, n_rows=None, length=None, group_size=None):
    """Random (B, T) token log-probs with a response mask (one row may be empty) and prompt groups."""
    B = n_rows or randint(gen, 3, 10)
    T = length or randint(gen, 3, 12)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for i in range(B):
        start = randint(gen, 1, T - 1)
        mask[i, start : start + randint(gen, 0, T - start)] = True
    logp = (-torch.rand(B, T, generator=gen) * 4).requires_grad_(True)
    old_logp = logp.detach() + torch.randn(B, T, generator=gen) * 0.3  # some ratios leave [0.8, 1.2]
    teacher_logp = -torch.rand(B, T, generator=gen) * 5
    n_prompts = randint(gen, 1, 4)
    ids = torch.randperm(1000, generator=gen)[:n_prompts] * 13  # non-contiguous ids
    group = ids[torch.randint(0, n_prompts, (B,), generator=gen)]
    correct = torch.rand(B, generator=gen) < 0.5
    return logp, old_logp, teacher_logp, mask, correct, group


# ---------------------------------------------------------------------------------------------
# float64 hand computations, loops over rows and tokens


def hand_rows(mask):
    return [[t for t in range(mask.shape[1]) if mask[i, t]] for i in range(mask.shape[0])]


def hand_mle(lp, old, mask):
    out = []
    for i, toks in enumerate(hand_rows(mask)):
        terms = [torch.exp(lp[i, t] - old[i, t]) for t in toks]
        out.append(-sum(terms) / len(toks) if toks else lp[i, 0] * 0)
    return out


def hand_opd(lp, old, teacher, mask, clip_eps=None):
    out = []
    for i, toks in enumerate(hand_rows(mask)):
        terms = []
        for t in toks:
            rho = torch.exp(lp[i, t] - old[i, t])
            if clip_eps is None:
                terms.append(-rho * (teacher[i, t] - lp[i, t].detach()))
            else:
                adv = teacher[i, t] - old[i, t]
                terms.append(torch.maximum(-adv * rho, -adv * rho.clamp(1 - clip_eps, 1 + clip_eps)))
        out.append(sum(terms) / len(toks) if toks else lp[i, 0] * 0)
    return out


def hand_path_weights(scores, on_path, group, tau, sign, normalize):
    w = [0.0] * len(scores)
    for g in set(group.tolist()):
        rows = [i for i in range(len(scores)) if group[i] == g and on_path[i]]
        unnorm = [math.exp(sign * scores[i] / tau) for i in rows]
        for i, u in zip(rows, unnorm):
            w[i] = u / sum(unnorm) * (len(rows) if normalize == "mean" else 1)
    return w


def hand_mean(x, toks):
    return sum(float(x[t].detach()) for t in toks) / len(toks) if toks else 0.0


SIGN = {"paper": 1.0, "reversed": -1.0, "uniform": 0.0}


def hand_scope(lp, old, teacher, mask, correct, group, tau, s_dir, t_dir, normalize, incorrect_path, clip_eps):
    rows = hand_rows(mask)
    s_student = [hand_mean(old[i], toks) for i, toks in enumerate(rows)]
    s_teacher = [hand_mean(teacher[i], toks) for i, toks in enumerate(rows)]
    # Eq. 4: exp(-s_S/tau) ; Eq. 5: exp(+s_T/tau)
    w_s = hand_path_weights(s_student, correct.tolist(), group, tau, -SIGN[s_dir], normalize)
    w_t = hand_path_weights(s_teacher, (~correct).tolist(), group, tau, SIGN[t_dir], normalize)
    l_mle = hand_mle(lp, old, mask)
    l_opd = hand_opd(lp, old, teacher, mask, clip_eps if incorrect_path == "clipped_ppo" else None)
    total = sum(w_s[i] * l_mle[i] if correct[i] else w_t[i] * l_opd[i] for i in range(len(rows)))
    return total / len(set(group.tolist()))


def as64(*tensors):
    return [t.detach().double().requires_grad_(t.requires_grad) for t in tensors]


# ---------------------------------------------------------------------------------------------
# Eq. 2, Eq. 3, SFT and OPD baseline


def test_mle_loss_matches_hand(gen):
    logp, old, _, mask, _, _ = random_rollouts(gen)
    got = mle_loss(logp, old, mask)
    lp64, = as64(logp)
    want = torch.stack(hand_mle(lp64, old.double(), mask))
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
    got.sum().backward()
    want.sum().backward()
    torch.testing.assert_close(logp.grad.double(), lp64.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("clip_eps", [None, 0.2])
def test_opd_loss_matches_hand(gen, clip_eps):
    logp, old, teacher, mask, _, _ = random_rollouts(gen)
    got = opd_loss(logp, old, teacher, mask, clip_eps=clip_eps)
    lp64, = as64(logp)
    want = torch.stack(hand_opd(lp64, old.double(), teacher.double(), mask, clip_eps))
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
    got.sum().backward()
    want.sum().backward()
    torch.testing.assert_close(logp.grad.double(), lp64.grad, rtol=1e-5, atol=1e-6)
    base, stats = opd_baseline_loss(logp, old, teacher, mask, clip_eps=clip_eps)
    torch.testing.assert_close(base, got.mean())
    assert math.isclose(stats["opd_loss"], float(got.detach().mean()), rel_tol=1e-6, abs_tol=1e-7)


def test_sft_loss_matches_hand(gen):
    logp, _, _, mask, _, _ = random_rollouts(gen)
    want = -sum(hand_mean(logp[i].double(), toks) for i, toks in enumerate(hand_rows(mask))) / mask.shape[0]
    assert math.isclose(float(sft_loss(logp, mask)), want, rel_tol=1e-5, abs_tol=1e-6)


def test_eq2_gradient_at_ratio_one_is_nll_gradient(gen):
    logp, _, _, mask, _, _ = random_rollouts(gen)
    (g_mle,) = torch.autograd.grad(mle_loss(logp, logp.detach(), mask).mean(), logp)
    (g_nll,) = torch.autograd.grad(sft_loss(logp, mask), logp)
    torch.testing.assert_close(g_mle, g_nll)
    assert g_mle.abs().sum() > 0


def logit_table_logp(theta, tokens):
    """A tiny "model": position t's next-token logits are theta[t]. logp aligned like the project: (1, T+1)."""
    lp = torch.log_softmax(theta, -1).gather(-1, tokens[:, None]).squeeze(-1)  # (T,)
    return torch.cat([lp.new_zeros(1), lp])[None]


@pytest.mark.parametrize("clip_eps", [None, 0.2])
def test_eq3_gradient_at_theta_old_is_single_sample_reverse_kl_gradient(gen, clip_eps):
    T, V = randint(gen, 2, 6), randint(gen, 3, 8)
    theta = torch.randn(T, V, generator=gen, dtype=torch.float64, requires_grad=True)
    tokens = torch.randint(0, V, (T,), generator=gen)
    teacher = torch.log_softmax(torch.randn(T, V, generator=gen, dtype=torch.float64), -1)
    teacher_logp = torch.cat([torch.zeros(1, dtype=torch.float64), teacher.gather(-1, tokens[:, None]).squeeze(-1)])[None]
    mask = torch.ones(1, T + 1, dtype=torch.bool)
    mask[0, 0] = False
    logp = logit_table_logp(theta, tokens)
    (got,) = torch.autograd.grad(opd_loss(logp, logp.detach(), teacher_logp, mask, clip_eps=clip_eps).sum(), theta)
    logp = logit_table_logp(theta, tokens)
    surrogate = (logp[0, 1:] * (logp[0, 1:] - teacher_logp[0, 1:]).detach()).sum() / T
    (want,) = torch.autograd.grad(surrogate, theta)
    torch.testing.assert_close(got, want)


def test_eq3_expectation_is_exact_reverse_kl_gradient(gen):
    # Enumerate every token at one position: E_{y~p_S}[grad L_OPD(y)] = grad KL(p_S || p_T).
    V = randint(gen, 3, 9)
    theta = torch.randn(V, generator=gen, dtype=torch.float64, requires_grad=True)
    teacher_logits = torch.randn(V, generator=gen, dtype=torch.float64)
    p = torch.softmax(theta.detach(), -1)
    expected_grad = torch.zeros(V, dtype=torch.float64)
    mask = torch.tensor([[False, True]])
    for y in range(V):
        lp = torch.log_softmax(theta, -1)[y]
        logp = torch.stack([lp.new_zeros(()), lp])[None]
        teacher_logp = torch.tensor([[0.0, torch.log_softmax(teacher_logits, -1)[y].item()]], dtype=torch.float64)
        (g,) = torch.autograd.grad(opd_loss(logp, logp.detach(), teacher_logp, mask).sum(), theta)
        expected_grad += p[y] * g
    student_logits = torch.stack([theta, torch.zeros_like(theta)])[None]  # (1, 2, V)
    teacher_all = torch.stack([teacher_logits, torch.zeros_like(teacher_logits)])[None]
    (kl_grad,) = torch.autograd.grad(full_reverse_kl(student_logits, teacher_all)[0, 1], theta)
    assert kl_grad.dtype == torch.float64
    torch.testing.assert_close(expected_grad, kl_grad)


def test_full_reverse_kl(gen):
    B, T, V = 3, 5, randint(gen, 4, 30)
    student = torch.randn(B, T, V, generator=gen, requires_grad=True)
    teacher = torch.randn(B, T, V, generator=gen, requires_grad=True)
    temperature = float(torch.empty(1).uniform_(0.5, 2, generator=gen))
    kl = full_reverse_kl(student, teacher, temperature=temperature)
    assert kl.shape == (B, T) and torch.all(kl[:, 0] == 0)
    ls = torch.log_softmax(student.detach().double() / temperature, -1)
    lt = torch.log_softmax(teacher.detach().double() / temperature, -1)
    want = (ls.exp() * (ls - lt)).sum(-1)[:, :-1]
    torch.testing.assert_close(kl[:, 1:].double(), want, rtol=1e-5, atol=1e-6)
    via_kl_div = F.kl_div(lt, ls, log_target=True, reduction="none").sum(-1)[:, :-1]
    torch.testing.assert_close(kl[:, 1:].double(), via_kl_div, rtol=1e-5, atol=1e-6)
    same = full_reverse_kl(student, student)
    torch.testing.assert_close(same, torch.zeros(B, T), atol=1e-6, rtol=0)
    kl.sum().backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="vocabular"):
        full_reverse_kl(student, torch.zeros(B, T, V + 1))


# ---------------------------------------------------------------------------------------------
# Eq. 6


SCOPE_SETTINGS = [
    ("paper", "paper", "sum", "paper"),
    ("paper", "paper", "mean", "clipped_ppo"),
    ("reversed", "paper", "mean", "clipped_ppo"),  # the released scripts
    ("uniform", "uniform", "sum", "paper"),  # no DPAW
    ("uniform", "paper", "sum", "paper"),  # no student weight
    ("paper", "reversed", "mean", "paper"),  # reversed teacher weight
    ("paper", "uniform", "sum", "clipped_ppo"),  # no teacher weight
]


@pytest.mark.parametrize("s_dir, t_dir, normalize, incorrect_path", SCOPE_SETTINGS)
def test_scope_loss_matches_hand_eq6(gen, s_dir, t_dir, normalize, incorrect_path):
    logp, old, teacher, mask, correct, group = random_rollouts(gen)
    tau = float(torch.empty(1).uniform_(0.4, 2.5, generator=gen))
    clip_eps = float(torch.empty(1).uniform_(0.05, 0.3, generator=gen))
    loss, stats = scope_loss(
        logp, old, teacher, mask, correct, group,
        weights=DPAW(tau=tau, student_direction=s_dir, teacher_direction=t_dir, normalize=normalize),
        clip_eps=clip_eps if incorrect_path == "clipped_ppo" else None,
    )
    lp64, = as64(logp)
    want = hand_scope(lp64, old.double(), teacher.double(), mask, correct, group, tau, s_dir, t_dir, normalize,
                      incorrect_path, clip_eps)
    want = want if isinstance(want, torch.Tensor) else torch.tensor(float(want), dtype=torch.float64)
    assert loss.dim() == 0
    torch.testing.assert_close(loss.double(), want, rtol=1e-5, atol=1e-6)
    loss.backward()
    if want.requires_grad:
        want.backward()
        torch.testing.assert_close(logp.grad.double(), lp64.grad, rtol=1e-5, atol=1e-6)
    assert stats["n_correct"] == int(correct.sum()) and stats["n_incorrect"] == int((~correct).sum())
    assert all(isinstance(v, float) for v in stats.values())
    for key in ("mle_loss", "opd_loss", "clip_frac", "opd_adv_mean", "student_w_ess", "teacher_w_max"):
        assert key in stats


def test_scope_given_weights_are_used(gen):
    from scope_lib.weights import student_weights, teacher_weights

    logp, old, teacher, mask, correct, group = random_rollouts(gen)
    scores_s = torch.randn(len(correct), generator=gen)
    scores_t = torch.randn(len(correct), generator=gen)
    given = DPAWWeights(student_weights(scores_s, correct, group), teacher_weights(scores_t, correct, group),
                        scores_s, scores_t)
    loss, _ = scope_loss(logp, old, teacher, mask, correct, group, weights=given)
    l_mle, l_opd = mle_loss(logp, old, mask), opd_loss(logp, old, teacher, mask)
    w_s = hand_path_weights(scores_s.tolist(), correct.tolist(), group, 1.0, -1.0, "sum")
    w_t = hand_path_weights(scores_t.tolist(), (~correct).tolist(), group, 1.0, 1.0, "sum")
    want = sum(w_s[i] * float(l_mle[i]) if correct[i] else w_t[i] * float(l_opd[i]) for i in range(len(correct)))
    assert math.isclose(float(loss), want / len(set(group.tolist())), rel_tol=1e-5, abs_tol=1e-6)


def test_scope_micro_batches_with_full_batch_weights_sum_to_full_loss(gen):
    from scope_lib.weights import student_weights, teacher_weights, sequence_logp

    logp, old, teacher, mask, correct, group = random_rollouts(gen, n_rows=randint(gen, 4, 10))
    kwargs = dict(clip_eps=0.2)
    full, _ = scope_loss(logp, old, teacher, mask, correct, group, weights=DPAW(tau=0.7, normalize="mean"), **kwargs)
    (g_full,) = torch.autograd.grad(full, logp)
    w_s = student_weights(sequence_logp(old, mask), correct, group, 0.7, normalize="mean")
    w_t = teacher_weights(sequence_logp(teacher, mask), correct, group, 0.7, normalize="mean")
    n_prompts = len(set(group.tolist()))
    cut = randint(gen, 1, len(correct) - 1)
    total = 0
    for rows in (slice(0, cut), slice(cut, None)):
        part, _ = scope_loss(logp[rows], old[rows], teacher[rows], mask[rows], correct[rows], group[rows],
                             weights=DPAWWeights(w_s[rows], w_t[rows], w_s[rows], w_t[rows]), n_global=n_prompts,
                             **kwargs)
        total = total + part
    (g_parts,) = torch.autograd.grad(total, logp)
    torch.testing.assert_close(total, full)
    torch.testing.assert_close(g_parts, g_full)


def test_scope_with_exact_kl_rows(gen):
    logp, old, teacher, mask, correct, group = random_rollouts(gen)
    rows = torch.rand(len(correct), generator=gen, requires_grad=True)
    loss, stats = scope_loss(logp, old, teacher, mask, correct, group, opd_row_loss=rows)
    w_s = hand_path_weights([hand_mean(old[i], t) for i, t in enumerate(hand_rows(mask))], correct.tolist(), group,
                            1.0, -1.0, "sum")
    w_t = hand_path_weights([hand_mean(teacher[i], t) for i, t in enumerate(hand_rows(mask))], (~correct).tolist(),
                            group, 1.0, 1.0, "sum")
    l_mle = mle_loss(logp, old, mask)
    want = sum(w_s[i] * float(l_mle[i]) if correct[i] else w_t[i] * float(rows[i]) for i in range(len(correct)))
    assert math.isclose(float(loss), want / len(set(group.tolist())), rel_tol=1e-5, abs_tol=1e-6)
    (g,) = torch.autograd.grad(loss, rows)
    assert torch.all(g[correct] == 0)


@pytest.mark.parametrize("incorrect_path", ["paper", "clipped_ppo"])
def test_scope_ignores_teacher_on_correct_rows_and_padding(gen, incorrect_path):
    logp, old, teacher, mask, correct, group = random_rollouts(gen)
    correct[0], correct[-1] = True, False  # both paths present, with tokens
    mask[0, 1] = mask[-1, 1] = True
    clip_eps = 0.2 if incorrect_path == "clipped_ppo" else None
    loss, _ = scope_loss(logp, old, teacher, mask, correct, group, clip_eps=clip_eps)
    (grad,) = torch.autograd.grad(loss, logp)
    junk = torch.tensor([float("nan"), float("inf"), -float("inf")])
    noisy_teacher = teacher.clone()
    noisy_old = old.clone()
    pick = torch.randint(0, 3, teacher.shape, generator=gen)
    noisy_teacher[correct] = junk[pick[correct]]
    noisy_teacher[~mask] = junk[pick[~mask]]
    noisy_old[~mask] = junk[pick[~mask]]
    noisy_logp = torch.where(mask, logp.detach(), junk[pick]).requires_grad_(True)
    loss2, stats2 = scope_loss(noisy_logp, noisy_old, noisy_teacher, mask, correct, group, clip_eps=clip_eps)
    (grad2,) = torch.autograd.grad(loss2, noisy_logp)
    assert torch.isfinite(loss2) and torch.isfinite(grad2).all()
    torch.testing.assert_close(loss2, loss)
    torch.testing.assert_close(grad2, grad)
    assert math.isfinite(stats2["opd_adv_mean"])


def test_scope_errors(gen):
    logp, old, teacher, mask, correct, group = random_rollouts(gen)
    with pytest.raises(ValueError, match="clip_eps"):
        scope_loss(logp, old, teacher, mask, correct, group, clip_eps=1.5)
    with pytest.raises(ValueError, match="weights"):
        scope_loss(logp, old, teacher, mask, correct, group, weights=(correct.float(), (~correct).float()))
    with pytest.raises(ValueError, match="correct"):
        scope_loss(logp, old, teacher, mask, correct.long(), group)
    with pytest.raises(ValueError, match="teacher_logp"):
        scope_loss(logp, old, teacher[:, :-1], mask, correct, group)
    with pytest.raises(ValueError, match="tau"):
        scope_loss(logp, old, teacher, mask, correct, group, weights=DPAW(tau=0))
    with pytest.raises(ValueError, match="direction"):
        scope_loss(logp, old, teacher, mask, correct, group, weights=DPAW(teacher_direction="up"))


# ---------------------------------------------------------------------------------------------
# GRPO


def hand_group_advantages(rewards, group, eps, std_normalize):
    out = []
    for i in range(len(rewards)):
        members = [float(rewards[j]) for j in range(len(rewards)) if group[j] == group[i]]
        mean = sum(members) / len(members)
        std = math.sqrt(sum((m - mean) ** 2 for m in members) / len(members))
        out.append((float(rewards[i]) - mean) / (std + eps) if std_normalize else float(rewards[i]) - mean)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("std_normalize", [True, False])
def test_grpo_loss_matches_hand(gen, std_normalize):
    logp, old, ref, mask, correct, group = random_rollouts(gen)
    rewards = correct.float() + torch.rand(len(correct), generator=gen) * 0.1
    clip_eps, beta = 0.2, float(torch.empty(1).uniform_(0.01, 1.0, generator=gen))
    loss, stats = grpo_loss(logp, old, ref, rewards, group, mask, clip_eps=clip_eps, beta=beta)
    torch.testing.assert_close(group_advantages(rewards, group, std_normalize=std_normalize).double(),
                               hand_group_advantages(rewards, group, 1e-6, std_normalize), rtol=1e-5, atol=1e-5)
    adv = hand_group_advantages(rewards, group, 1e-6, True)  # the loss: GRPO's std-normalised advantage
    lp64, = as64(logp)
    rows = []
    for i, toks in enumerate(hand_rows(mask)):
        terms = []
        for t in toks:
            rho = torch.exp(lp64[i, t] - old[i, t].double())
            pg = torch.maximum(-adv[i] * rho, -adv[i] * rho.clamp(1 - clip_eps, 1 + clip_eps))
            d = ref[i, t].double() - lp64[i, t]
            terms.append(pg + beta * (torch.exp(d) - d - 1))
        rows.append(sum(terms) / len(toks) if toks else lp64[i, 0] * 0)
    want = torch.stack(rows).mean()
    torch.testing.assert_close(loss.double(), want, rtol=1e-5, atol=1e-5)
    loss.backward()
    want.backward()
    torch.testing.assert_close(logp.grad.double(), lp64.grad, rtol=1e-4, atol=1e-6)
    assert 0 <= stats["clip_frac"] <= 1 and stats["kl"] >= 0


def test_group_advantages_single_member_and_constant_groups():
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.5])
    group = torch.tensor([10, 20, 20, 30, 30])
    adv = group_advantages(rewards, group)
    # single member -> 0; population std of two values is half their gap -> +-1
    torch.testing.assert_close(adv, torch.tensor([0.0, -1.0, 1.0, 1.0, -1.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(group_advantages(rewards, group, std_normalize=False),
                               torch.tensor([0.0, -0.5, 0.5, 0.25, -0.25]))
    assert torch.equal(group_advantages(torch.ones(4), torch.tensor([1, 1, 2, 2])), torch.zeros(4))


# ---------------------------------------------------------------------------------------------
# token log-probs on a tiny Llama


@pytest.fixture(scope="module")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    seed = random.SystemRandom().randrange(2**31)
    print(f"model seed={seed}")
    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=50, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def test_token_logprobs_match_float64_and_left_padding(gen, tiny_llama):
    lengths = [randint(gen, 3, 9) for _ in range(4)]
    T = max(lengths) + 3
    seqs = [torch.randint(0, 50, (n,), generator=gen) for n in lengths]
    input_ids = torch.zeros(4, T, dtype=torch.long)
    attention = torch.zeros(4, T, dtype=torch.long)
    offsets = []
    for i, s in enumerate(seqs):
        left = randint(gen, 0, T - len(s))  # left padding (prompt side) plus right padding after
        input_ids[i, left : left + len(s)] = s
        attention[i, left : left + len(s)] = 1
        offsets.append(left)
    temperature = float(torch.empty(1).uniform_(0.5, 1.5, generator=gen))
    with torch.no_grad():
        logp, entropy = token_logprobs(tiny_llama, input_ids, attention, temperature=temperature, with_entropy=True)
        position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
        logits = tiny_llama(input_ids=input_ids, attention_mask=attention, position_ids=position_ids).logits
        ref = torch.log_softmax(logits.double() / temperature, -1)
        want = ref[:, :-1].gather(-1, input_ids[:, 1:, None]).squeeze(-1)
        want_entropy = -(ref.exp() * ref).sum(-1)[:, :-1]
        assert logp.dtype == torch.float32 and logp.shape == (4, T) and torch.all(logp[:, 0] == 0)
        torch.testing.assert_close(logp[:, 1:].double(), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(entropy[:, 1:].double(), want_entropy, rtol=1e-5, atol=1e-5)
        chunked = token_logprobs(tiny_llama, input_ids, attention, temperature=temperature, chunk_size=1)
        torch.testing.assert_close(chunked, logp, rtol=0, atol=1e-6)
        from_logits = token_logprobs_from_logits(logits, input_ids, temperature=temperature, chunk_size=3)
        torch.testing.assert_close(from_logits, logp, rtol=0, atol=1e-6)
        for i, s in enumerate(seqs):  # padded rows score exactly like the sequence alone
            alone = token_logprobs(tiny_llama, s[None], torch.ones(1, len(s), dtype=torch.long), temperature=temperature)
            real = logp[i, offsets[i] + 1 : offsets[i] + len(s)]
            torch.testing.assert_close(real, alone[0, 1:], rtol=1e-5, atol=1e-5)


def test_token_logprobs_gradient_and_peft(gen, tiny_llama):
    from peft import LoraConfig, get_peft_model

    input_ids = torch.randint(0, 50, (3, 7), generator=gen)
    attention = torch.ones_like(input_ids)
    attention[0, :2] = 0
    logp = token_logprobs(tiny_llama, input_ids, attention, chunk_size=2)
    logp[:, 2:].sum().backward()
    assert tiny_llama.lm_head.weight.grad is not None and tiny_llama.lm_head.weight.grad.abs().sum() > 0
    tiny_llama.zero_grad(set_to_none=True)
    peft_model = get_peft_model(tiny_llama, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    try:
        lora_logp = token_logprobs(peft_model, input_ids, attention)
        torch.testing.assert_close(lora_logp, logp, rtol=1e-5, atol=1e-5)  # LoRA B starts at 0
        lora_logp[:, 2:].sum().backward()
        lora_grads = [p.grad for n, p in peft_model.named_parameters() if "lora_" in n]
        assert lora_grads and all(g is not None for g in lora_grads)
    finally:
        peft_model.unload()  # give the shared fixture model back without adapters
        tiny_llama.zero_grad(set_to_none=True)


# ---------------------------------------------------------------------------------------------
# properties


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(0.01, 30.0),
    s_dir=st.sampled_from(["paper", "reversed", "uniform"]),
    t_dir=st.sampled_from(["paper", "reversed", "uniform"]),
    normalize=st.sampled_from(["sum", "mean"]),
    incorrect_path=st.sampled_from(["paper", "clipped_ppo"]),
    tau=st.floats(1e-3, 1e3),
)
def test_property_losses_finite(seed, scale, s_dir, t_dir, normalize, incorrect_path, tau):
    gen = torch.Generator().manual_seed(seed)
    logp, old, teacher, mask, correct, group = random_rollouts(gen)
    with torch.no_grad():
        logp.mul_(scale)
        old = logp.detach() + torch.randn(old.shape, generator=gen) * scale
        teacher = teacher * scale
    loss, stats = scope_loss(logp, old, teacher, mask, correct, group,
                             weights=DPAW(tau=tau, student_direction=s_dir, teacher_direction=t_dir, normalize=normalize),
                             clip_eps=0.2 if incorrect_path == "clipped_ppo" else None)
    (grad,) = torch.autograd.grad(loss, logp)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    rewards = correct.float()
    loss, _ = grpo_loss(logp, old, teacher, rewards, group, mask)
    (grad,) = torch.autograd.grad(loss, logp)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    loss, _ = opd_baseline_loss(logp, old, teacher, mask, clip_eps=0.2 if incorrect_path == "clipped_ppo" else None)
    assert torch.isfinite(loss)
    assert torch.isfinite(sft_loss(logp, mask))
