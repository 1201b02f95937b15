"""The KDRL-style hybrid baseline (scope_lib/losses.py hybrid_loss, scope_lib/methods.py Hybrid):
a float64 hand computation, beta = 0 is GRPO exactly, the teacher term is OPD's per-token
advantage, hybrid.beta is checked at load and left out of existing run keys, and it learns."""

import json

import numpy as np
import pytest
import torch

from scope_lib import losses
from scope_lib.config import ConfigError, TrainConfig, load_config, without_neutral_additions
from scope_lib.methods import GRPO, OPD, Hybrid, MicroBatch, make_method
from scope_lib.logprobs import token_logprobs_from_logits


def _inputs(seed, dtype=torch.float64, drift=0.3):
    """3 prompts x 3 rollouts, 2-token prompts, responses of 1..5 tokens; NaN under the mask."""
    g = torch.Generator().manual_seed(seed)
    B, T = 9, 7
    old = -torch.rand(B, T, generator=g, dtype=dtype) * 3
    logp = (old + drift * torch.randn(B, T, generator=g, dtype=dtype)).requires_grad_()  # rho far from 1: clips
    teacher = -torch.rand(B, T, generator=g, dtype=dtype) * 3
    ref = old + 0.2 * torch.randn(B, T, generator=g, dtype=dtype)
    mask = torch.zeros(B, T, dtype=dtype)
    for i, length in enumerate(torch.randint(1, 6, (B,), generator=g).tolist()):
        mask[i, 2 : 2 + length] = 1
    teacher = torch.where(mask != 0, teacher, torch.full_like(teacher, float("nan")))  # never read off the response
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0], dtype=dtype)
    group = torch.tensor([4, 4, 4, 8, 8, 8, 1, 1, 1])
    return logp, old, ref, teacher, rewards, group, mask


def _hand(logp, old, ref, teacher, rewards, group, mask, *, hb, form, clip, kl_beta):
    """Loss and d loss / d logp in float64, one token at a time."""
    lp, o, r, t, m = (x.detach().numpy().astype(np.float64) for x in (logp, old, ref, teacher, mask))
    rw, gr = rewards.numpy().astype(np.float64), group.numpy()
    B = len(rw)
    adv = np.zeros(B)
    for gid in set(gr.tolist()):
        rows = gr == gid
        adv[rows] = (rw[rows] - rw[rows].mean()) / (rw[rows].std() + 1e-6)  # population std
    loss, grad = 0.0, np.zeros_like(lp)
    for i in range(B):
        on = np.nonzero(m[i])[0]
        for tok in on:
            a_teacher = t[i, tok] - (lp[i, tok] if form == "paper" else o[i, tok])
            A = adv[i] + hb * a_teacher
            rho = np.exp(lp[i, tok] - o[i, tok])
            unclipped, clipped = -A * rho, -A * np.clip(rho, 1 - clip, 1 + clip)
            d = r[i, tok] - lp[i, tok]
            k3 = np.exp(d) - d - 1
            loss += (max(unclipped, clipped) + kl_beta * k3) / len(on) / B
            grad[i, tok] = ((-A * rho if not clipped > unclipped else 0.0) + kl_beta * (1 - np.exp(d))) / len(on) / B
    return loss, grad


@pytest.mark.parametrize("form", ["paper", "clipped_ppo"])
def test_hybrid_loss_and_gradient_match_a_float64_hand_computation(form):
    logp, old, ref, teacher, rewards, group, mask = _inputs(0)
    loss, stats = losses.hybrid_loss(logp, old, ref, teacher, rewards, group, mask, hybrid_beta=0.7, opd_form=form,
                                     clip_eps=0.2, beta=0.05)
    loss.backward()
    want, want_grad = _hand(logp, old, ref, teacher, rewards, group, mask, hb=0.7, form=form, clip=0.2, kl_beta=0.05)
    # the group advantages are float32 (group_advantages), so agreement is to float32's precision
    assert float(loss.detach()) == pytest.approx(want, rel=1e-6)
    np.testing.assert_allclose(logp.grad.numpy(), want_grad, rtol=1e-6, atol=1e-9)
    assert 0 < stats["clip_frac"] < 1  # the case exercises both sides of the clip
    assert np.isfinite(stats["teacher_adv_mean"])


def test_hybrid_beta_zero_is_grpo_loss_and_gradient_exactly():
    for seed in range(3):
        logp, old, ref, _, rewards, group, mask = _inputs(seed, torch.float32)
        nan_teacher = torch.full_like(old, float("nan"))  # beta 0 never reads the teacher
        x = logp.detach().clone().requires_grad_()
        hyb, hyb_stats = losses.hybrid_loss(x, old, ref, nan_teacher, rewards, group, mask, hybrid_beta=0.0,
                                            clip_eps=0.2, beta=1e-3, n_global=12)
        hyb.backward()
        y = logp.detach().clone().requires_grad_()
        grpo, grpo_stats = losses.grpo_loss(y, old, ref, rewards, group, mask, clip_eps=0.2, beta=1e-3, n_global=12)
        grpo.backward()
        assert torch.equal(hyb, grpo) and torch.equal(x.grad, y.grad)
        assert hyb_stats == grpo_stats


def _micro_batch(seed, exact: bool, equal_rewards: bool):
    """A MicroBatch from a random small 'model' (logits), with the teacher's token log-probs and logits."""
    g = torch.Generator().manual_seed(seed)
    B, T, V = 6, 6, 11
    ids = torch.randint(0, V, (B, T), generator=g)
    logits = torch.randn(B, T, V, generator=g).requires_grad_()
    teacher_logits = torch.randn(B, T, V, generator=g)
    mask = torch.zeros(B, T, dtype=torch.long)
    for i, length in enumerate(torch.randint(1, 4, (B,), generator=g).tolist()):
        mask[i, 2 : 2 + length] = 1
    logp = token_logprobs_from_logits(logits, ids)
    correct = torch.tensor([True, True, True, False, False, False]) if equal_rewards else \
        torch.tensor([True, False, False, True, False, True])
    rows = {"input_ids": ids, "response_mask": mask, "group": torch.tensor([3, 3, 3, 7, 7, 7]), "correct": correct,
            "old_logp": logp.detach(), "teacher_logp": token_logprobs_from_logits(teacher_logits, ids)}
    batch = MicroBatch(rows, logits, logp, teacher_logits=lambda: teacher_logits if exact else None)
    return batch, logits


@pytest.mark.parametrize("estimator,form", [("sampled", "paper"), ("sampled", "clipped_ppo"), ("exact", "paper")])
def test_with_the_reward_advantage_off_the_teacher_term_is_opds(estimator, form):
    """Every reward of a group equal (GRPO's advantage 0): the hybrid's loss and gradient are
    hybrid.beta times OPD's, under the same estimator (the tiny preset's exact KL, or the sampled
    Eq. 3 advantage in either form); at beta = 1 they are OPD's."""
    for beta in (1.0, 0.4):
        common = {"scope.kl_estimator": estimator, "scope.incorrect_path": form, "grpo.beta": 0.0}
        hybrid = make_method(load_config("tiny", overrides={**common, "method": "hybrid", "hybrid.beta": beta}))
        opd = make_method(load_config("tiny", overrides={**common, "method": "opd", "rollout.group_size": 1}))
        assert isinstance(hybrid, Hybrid) and isinstance(opd, OPD) and hybrid.exact_kl == opd.exact_kl == (estimator == "exact")
        got = []
        for method in (hybrid, opd):
            batch, logits = _micro_batch(5, estimator == "exact", equal_rewards=True)
            result = method.loss(batch, n_global=6)
            result.loss.backward()
            got.append((result.loss.detach(), logits.grad, result.stats))
        (h_loss, h_grad, h_stats), (o_loss, o_grad, o_stats) = got
        torch.testing.assert_close(h_loss, beta * o_loss, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(h_grad, beta * o_grad, rtol=1e-5, atol=1e-8)
        assert float(o_grad.abs().max()) > 1e-4  # a real gradient, not 0 = 0
        if estimator == "sampled":  # the per-token advantages themselves: OPD's mean token advantage
            assert h_stats["teacher_adv_mean"] == pytest.approx(o_stats["adv_mean"], rel=1e-6)
        if beta == 1.0 and (estimator == "exact" or form == "clipped_ppo"):
            assert torch.equal(h_loss, o_loss)  # the same expression, bit for bit


def test_the_teacher_term_is_opds_per_token_advantage_recovered_from_the_gradient():
    # at theta = theta_old (rho = 1, the trainer's one update per batch) with GRPO's advantage 0,
    # d loss / d logp_t = -beta * a_t / (|y_i| B): a_t = sg[teacher - logp], OPD's Eq. 3 advantage
    logp, old, _, teacher, _, group, mask = _inputs(3, drift=0.0)
    beta = 0.6
    loss, _ = losses.hybrid_loss(logp, old, None, teacher, torch.ones(9, dtype=torch.float64), group, mask,
                                 hybrid_beta=beta, beta=0.0)
    loss.backward()
    lengths = mask.sum(1, keepdim=True)
    a = -logp.grad * lengths * 9 / beta
    on = mask != 0
    want = (teacher - logp.detach())[on]
    torch.testing.assert_close(a[on], want, rtol=1e-12, atol=1e-12)
    _, opd_adv, _ = losses._opd_token_terms(logp, old, teacher, on, None)
    torch.testing.assert_close(a[on], opd_adv[on], rtol=1e-12, atol=1e-12)


def test_hybrid_declares_what_the_trainer_needs():
    correct = torch.tensor([True, False, True, False])
    method = make_method(load_config("tiny", overrides={"method": "hybrid"}))
    assert (method.needs_teacher, method.samples_rollouts, method.exact_kl) == (True, True, True)
    assert method.teacher_rows(correct).tolist() == [0, 1, 2, 3]  # every rollout, correct or not
    assert method.normaliser(torch.tensor([1, 1, 2, 2])) == 4  # rows, like GRPO
    assert method.needs_reference is True  # grpo.beta 1e-4: GRPO's reference KL, nothing beyond it
    assert make_method(load_config("tiny", overrides={"method": "hybrid", "grpo.beta": 0.0})).needs_reference is False
    with pytest.raises(ConfigError, match="rollout.group_size"):
        load_config("tiny", overrides={"method": "hybrid", "rollout.group_size": 1})


@pytest.mark.parametrize("value", [-0.5, -1e-9, float("inf"), float("-inf"), float("nan"), "nan", True])
def test_bad_hybrid_beta_is_refused_at_load_naming_the_key(value):
    with pytest.raises(ConfigError, match="'hybrid.beta'"):
        load_config("tiny", overrides={"method": "hybrid", "hybrid.beta": value})


def test_bad_hybrid_beta_in_a_file_names_the_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("method: hybrid\nhybrid:\n  beta: -2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*'hybrid.beta': must be >= 0"):
        load_config(path)
    assert load_config("tiny", overrides={"hybrid.beta": 0}).hybrid.beta == 0.0  # 0 (GRPO) is allowed


PRESETS = ("tiny", "tiny_code", "smol", "paper_distill_1p5b", "paper_qwen3_1p7b", "paper_code")


def _fingerprint_before_the_settings(cfg) -> str:
    """TrainConfig.fingerprint as the code before scope.tau_student and hybrid.beta computed it:
    the same hash of the same dict, which held neither setting."""
    import hashlib

    data = cfg.to_dict()
    del data["hybrid"], data["scope"]["tau_student"]
    for key in ("output_dir", "progress", "checkpoint_every", "keep_checkpoints", "eval"):
        data.pop(key)
    data["data"].pop("benchmarks_dir")
    data["teacher"].pop("overlap")
    # settings added beside these (tests/test_keys_and_resume.py covers them), at their neutral values here
    for section, leaf, neutral in (("rollout", "logprob_temperature", 1.0), ("teacher", "logprob_temperature", 1.0)):
        if data[section].get(leaf) == neutral:
            data[section].pop(leaf)
    data["reward"].pop("overlap", None)
    data["rollout"].pop("vllm_enforce_eager", None)  # how vLLM runs, left out of every fingerprint
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def test_new_settings_at_their_neutral_values_leave_run_keys_unchanged():
    """The registry's committed runs are found by their run keys: adding the settings changed none."""
    from scope_lib.experiments.registry import config_differences

    from scope_lib.config import ConfigError

    for preset in PRESETS:
        for method in ("scope", "opd", "grpo", "kd"):
            try:
                cfg = load_config(preset, overrides={"method": method})
            except ConfigError as error:  # a combination the preset refuses (KD needs an in-process teacher)
                assert method == "kd" and "teacher.backend" in str(error), (preset, method, error)
                continue
            assert cfg.fingerprint() == _fingerprint_before_the_settings(cfg), (preset, method)
    cfg = load_config("tiny")
    old_dict = cfg.to_dict()  # a config.yaml saved by the code before the settings
    del old_dict["hybrid"], old_dict["scope"]["tau_student"]
    del old_dict["rollout"]["logprob_temperature"], old_dict["teacher"]["logprob_temperature"]  # also added later
    assert without_neutral_additions(cfg.to_dict()) == old_dict
    assert config_differences(old_dict, cfg) == []  # a run saved by the older code resumes
    for override in ({"scope.tau_student": 0.5}, {"hybrid.beta": 0.5}):
        changed = load_config("tiny", overrides=override)
        assert changed.fingerprint() != cfg.fingerprint()
        assert config_differences(old_dict, changed) != []
    assert load_config("tiny", overrides={"hybrid.beta": 1.0, "scope.tau_student": None}).fingerprint() == cfg.fingerprint()
    assert TrainConfig().hybrid.beta == 1.0 and TrainConfig().scope.tau_student is None  # the neutral values


def test_hybrid_learns_on_the_smoke_world(tmp_path):
    """It learns: on held-out teacher rollouts, the exact reverse KL to the teacher falls after 3
    smoke steps (~0.053 -> ~0.009 here). The smoke models solve nothing, so GRPO's advantage is 0
    and the teacher term does the work; the reward term is the GRPO code path that
    test_hybrid_beta_zero_is_grpo_loss_and_gradient_exactly pins to GRPO."""
    import copy
    import dataclasses

    from scope_lib.logprobs import full_reverse_kl, position_ids_from_mask
    from scope_lib.rollout import Sampling, generate_rollouts
    from scope_lib.worlds.chain import eval_sets, format_prompt
    from scope_lib.trainer import train
    from scope_lib.world import WorldSpec, load_world

    cfg = load_config("tiny", overrides={
        "model.student": "tiny_smoke", "model.teacher": "tiny_smoke", "progress": False, "checkpoint_every": 0,
        "output_dir": str(tmp_path / "run"), "method": "hybrid", "steps": 3, "rollout.max_new_tokens": 16,
        "rollout.group_size": 4, "optim.micro_batch_size": 16, "optim.lr": 1e-2, "optim.warmup_steps": 0,
        "optim.prompts_per_step": 4, "optim.mini_batch_prompts": 4})
    world = load_world(WorldSpec.from_config(cfg))
    prompts = [format_prompt(p) for p in eval_sets(8, seed=0)["chain3"]]
    held_out = generate_rollouts(world.teacher, world.tokenizer, prompts, num_samples=2,
                                 sampling=Sampling(temperature=1.0, max_new_tokens=16), seed=123)

    @torch.no_grad()
    def mean_kl(student):
        ids, att, mask = held_out.input_ids, held_out.attention_mask, held_out.response_mask.float()
        pos = position_ids_from_mask(att)
        kl = full_reverse_kl(student(input_ids=ids, attention_mask=att, position_ids=pos).logits,
                             world.teacher(input_ids=ids, attention_mask=att, position_ids=pos).logits)
        return float((kl * mask).sum() / mask.sum())

    before = mean_kl(world.student)
    result = train(cfg, world=dataclasses.replace(world, student=copy.deepcopy(world.student)))  # a copy is trained
    after = mean_kl(result.model)
    assert after < 0.5 * before, f"KL to teacher {before:.4f} -> {after:.4f}"
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in history] == [1, 2, 3]
    assert history[-1]["teacher_kl"] < history[0]["teacher_kl"]  # on its own rollouts too
    assert all(row["adv_mean"] == 0.0 for row in history)  # as said: no reward signal on the smoke world
