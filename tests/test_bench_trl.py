"""bench/trl_opd.py: TRL's GKDTrainer set up as the project's OPD, and the KL both are judged by.

Skipped unless TRL is installed (`pip install -e .[bench]`); seconds, on the smoke world and
randomly initialised two-layer Llamas.
"""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl")

BENCH = Path(__file__).resolve().parents[1] / "bench" / "trl_opd.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("trl_opd_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _kl64(student_logits, teacher_logits):
    """sum_v p_S (log p_S - log p_T) per position, float64, written out from the definition."""
    log_s = torch.log_softmax(student_logits.double(), -1)
    log_t = torch.log_softmax(teacher_logits.double(), -1)
    return (log_s.exp() * (log_s - log_t)).sum(-1)


def test_gkd_beta_one_is_reverse_kl_token_mean(bench):
    """GKD's generalized JSD at beta = 1 is KL(student || teacher) averaged over unmasked tokens (beta = 0: forward)."""
    _, GKDTrainer = bench.gkd_classes()
    gen = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(3, 5, 11, generator=gen) * 2, torch.randn(3, 5, 11, generator=gen) * 2
    labels = torch.tensor([[-100, 4, 2, -100, -100], [1, 1, 1, 1, 1], [-100, -100, -100, -100, 7]])
    mask = labels != -100
    reverse = GKDTrainer.generalized_jsd_loss(student, teacher, labels=labels, beta=1.0)
    forward = GKDTrainer.generalized_jsd_loss(student, teacher, labels=labels, beta=0.0)
    assert float(reverse) == pytest.approx(float(_kl64(student, teacher)[mask].mean()), rel=1e-5)
    assert float(forward) == pytest.approx(float(_kl64(teacher, student)[mask].mean()), rel=1e-5)
    assert not math.isclose(float(reverse), float(forward), rel_tol=1e-3)  # the two directions are told apart


def test_reverse_kl_measure_matches_float64_sum(bench):
    """The bench's KL: token mean of the exact KL over the student's own completions, as a float64 loop computes it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from scope_lib.worlds import chain as tasks
    from scope_lib.rollout import Sampling, generate_rollouts
    from scope_lib.worlds.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(corpus_size=200)

    def model(seed):
        torch.manual_seed(seed)
        return LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                            num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                            max_position_embeddings=128, eos_token_id=tokenizer.eos_token_id,
                                            pad_token_id=tokenizer.pad_token_id)).eval()

    student, teacher = model(1), model(2)
    prompts = [tasks.format_prompt(p) for p in tasks.train_pool(seed=0)[:3]]  # different lengths: left padding
    got = bench.reverse_kl_to_teacher(student, teacher, tokenizer, prompts, samples=2, max_new_tokens=6, seed=5)

    batch = generate_rollouts(student, tokenizer, prompts, num_samples=2, sampling=Sampling(1.0, 6), seed=5)
    total, count, per_seq = 0.0, 0, []
    with torch.no_grad():
        for row in range(len(batch)):
            on = batch.attention_mask[row].bool()
            ids = batch.input_ids[row][on][None]  # the row without its padding
            resp = batch.response_mask[row][on].bool()
            kl = _kl64(student(input_ids=ids).logits[0, :-1], teacher(input_ids=ids).logits[0, :-1])
            kl = kl[resp[1:]]  # the distributions that predicted each completion token
            total, count = total + float(kl.sum()), count + kl.numel()
            per_seq.append(float(kl.mean()))
    assert got["tokens"] == count == int(batch.response_mask.sum())
    assert got["kl"] == pytest.approx(total / count, rel=1e-4)
    assert got["kl_seq"] == pytest.approx(sum(per_seq) / len(per_seq), rel=1e-4)
    assert got["texts"] == batch.texts


@pytest.mark.parametrize("kind", ["gkd", "distillation"])
def test_both_sides_share_prompts_lengths_and_optimiser_and_trl_steps(bench, tmp_path, kind):
    """Read back from the objects: same prompts, batch, lengths, sampling, optimiser, schedule; one TRL step is finite."""
    from scope_lib.experiments.grid import experiment_config
    from scope_lib.trainer import Trainer
    from scope_lib.world import WorldSpec, load_world

    cfg = experiment_config("tiny", "opd", 0, smoke=True, steps=3, output_dir=str(tmp_path / "p"), progress=False,
                            checkpoint_every=0)
    project = Trainer(cfg)
    world = load_world(WorldSpec.from_config(cfg))
    prompts = bench.step_prompts(project, 3)
    _, build = bench.TRL_SIDES[kind]
    trl, optimizer = build(world.student, world.teacher, world.tokenizer, prompts, cfg, 3, str(tmp_path / "t"))
    both = bench.settings_of_both(project, trl, optimizer, 3)
    assert len(both["project"]["prompts"]) == 3 * cfg.optim.prompts_per_step
    assert both["project"] == {**both["trl"], "divergence": both["project"]["divergence"]}
    assert (trl.beta, getattr(trl, "lmbda", 1.0), trl.args.gradient_checkpointing) == (1.0, 1.0, False)
    assert both["trl"]["completions_per_prompt"] == cfg.rollout.group_size == 1

    # The first TRL batch holds exactly the prompt ids the project's first step starts from.
    per_step = cfg.optim.prompts_per_step
    ids = world.tokenizer(prompts[:per_step], add_special_tokens=True)["input_ids"]
    losses, batches = [], []
    original = trl.compute_loss

    def recorded(model, inputs, *a, **k):
        batches.append(bench._batch_prompt_ids(inputs))
        losses.append(original(model, inputs, *a, **k))
        return losses[-1]

    trl.compute_loss = recorded
    trl.args.max_steps = 1
    before = [p.detach().clone() for p in trl.model.parameters()]
    trl.train()
    assert sorted(batches[0]) == sorted(ids)
    if kind == "gkd":  # GKD keeps the dataset's order within a batch
        assert batches[0] == ids
    assert len(losses) == 1 and math.isfinite(float(losses[0].detach())) and float(losses[0].detach()) > 0
    assert all(torch.isfinite(p).all() for p in trl.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, trl.model.parameters()))
