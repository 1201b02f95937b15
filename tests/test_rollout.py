"""Rollouts follow the project's layout: left-padded prompt, right-padded response, masks exact."""

import pytest
import torch

from scope_lib.worlds import models, chain as tasks
from scope_lib.rollout import Sampling, encode_pairs, generate_rollouts


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return models.build_tiny_world(models.SMOKE_WORLD, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


def _prompts(n):
    return [tasks.format_prompt(p) for p in tasks.train_pool(20, seed=5)][:n]


def test_layout_masks_and_groups(world):
    tok = world.tokenizer
    prompts = _prompts(3)
    batch = generate_rollouts(world.student, tok, prompts, num_samples=2,
                              sampling=Sampling(temperature=1.0, max_new_tokens=12, batch_size=4), seed=0)
    width = batch.prompt_width
    assert batch.group.tolist() == [0, 0, 1, 1, 2, 2]
    assert batch.input_ids.shape[1] == width + int(batch.response_lengths.max())
    for i in range(len(batch)):
        prompt = tok(prompts[int(batch.group[i])])["input_ids"]
        row, att, resp = batch.input_ids[i], batch.attention_mask[i], batch.response_mask[i]
        assert row[width - len(prompt): width].tolist() == prompt  # left-padded prompt
        assert att[:width].tolist() == [0] * (width - len(prompt)) + [1] * len(prompt)
        assert resp[:width].sum() == 0
        n = int(batch.response_lengths[i])
        assert resp[width:].tolist() == [1] * n + [0] * (len(resp) - width - n)  # right-padded response
        assert torch.equal(att[width:], resp[width:])
        generated = row[width: width + n].tolist()
        assert tok.eos_token_id not in generated[:-1]
        assert n == 12 or generated[-1] == tok.eos_token_id
        assert tok.decode(generated, skip_special_tokens=True) == batch.texts[i]
        assert (row[width + n:] == tok.pad_token_id).all()


def test_seeded_and_padding_invariant_greedy(world):
    prompts = _prompts(4)
    kw = dict(num_samples=1, seed=3)
    sampled = Sampling(temperature=1.0, max_new_tokens=10, batch_size=4)
    a = generate_rollouts(world.teacher, world.tokenizer, prompts, sampling=sampled, **kw)
    b = generate_rollouts(world.teacher, world.tokenizer, prompts, sampling=sampled, **kw)
    assert torch.equal(a.input_ids, b.input_ids)
    # Greedy decoding of a left-padded batch equals decoding each prompt alone.
    greedy = Sampling(temperature=0.0, max_new_tokens=10, batch_size=4)
    batched = generate_rollouts(world.teacher, world.tokenizer, prompts, sampling=greedy, **kw)
    for i, p in enumerate(prompts):
        alone = generate_rollouts(world.teacher, world.tokenizer, [p], sampling=Sampling(0.0, 10, batch_size=1), **kw)
        assert alone.texts[0] == batched.texts[i]


def test_encode_pairs_layout(world):
    tok = world.tokenizer
    out = encode_pairs(tok, [("ab\n", "1+1=2"), ("a longer prompt\n", "x")])
    for i, (p, r) in enumerate([("ab\n", "1+1=2"), ("a longer prompt\n", "x")]):
        resp = out["input_ids"][i][out["response_mask"][i].bool()].tolist()
        assert resp == tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert out["input_ids"][i][out["attention_mask"][i].bool()].tolist() == tok(p)["input_ids"] + resp


def test_bad_arguments(world):
    with pytest.raises(ValueError, match="num_samples"):
        generate_rollouts(world.student, world.tokenizer, ["x"], num_samples=0, sampling=Sampling(1.0, 2))
    with pytest.raises(ValueError, match="temperature"):
        generate_rollouts(world.student, world.tokenizer, ["x"], num_samples=1, sampling=Sampling(-1.0, 2))
    with pytest.raises(ValueError, match="sampling: expected a rollout.Sampling, got dict"):
        generate_rollouts(world.student, world.tokenizer, ["x"], num_samples=1,
                          sampling={"temperature": 1.0, "max_new_tokens": 2})


def test_scoring_the_layout_reproduces_greedy_choices(world):
    # Teacher-forced logits on the assembled batch (positions from the attention mask) must pick
    # exactly the tokens that greedy generation produced: generation and scoring agree on layout.
    from scope_lib.logprobs import position_ids_from_mask

    batch = generate_rollouts(world.teacher, world.tokenizer, _prompts(5), num_samples=1,
                              sampling=Sampling(temperature=0.0, max_new_tokens=8, batch_size=5), seed=0)
    with torch.no_grad():
        logits = world.teacher(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                               position_ids=position_ids_from_mask(batch.attention_mask)).logits
    predicted = logits[:, :-1].argmax(-1)  # predicts input_ids[:, 1:]
    on = batch.response_mask[:, 1:].bool()
    assert torch.equal(predicted[on], batch.input_ids[:, 1:][on])


def _left_padded(world, prompts):
    from scope_lib.rollout import assemble

    tok = world.tokenizer
    encoded = tok(prompts, add_special_tokens=True)["input_ids"]
    batch = assemble(encoded, [[]] * len(encoded), tok.pad_token_id)
    width = max(map(len, encoded))
    return batch["input_ids"][:, :width], batch["attention_mask"][:, :width]


def _chaotic_model(world):
    """A fresh model with large random weights: peaked next-token distributions that vary by
    prompt (the smoke models' outputs barely depend on the prompt)."""
    spec = models.ModelSpec(layers=2, hidden=64, heads=2, ffn=128, seed=7)
    model = models.make_model(spec, world.tokenizer, 128).eval()
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() == 2:
                weight.normal_(0, 0.3)
    return model


def test_decode_loop_equals_generate_when_rows_stop_at_different_steps(world):
    # The project's loop drops a row (and its KV cache) when it emits EOS. Make rows stop at
    # different steps by declaring as "EOS" a token that greedy decoding emits at various
    # positions, then compare with transformers' generate on the same left-padded batch.
    from scope_lib.rollout import _cut_at_eos, _decode

    ids, mask = _left_padded(world, _prompts(8))
    model = _chaotic_model(world)
    free = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=12,
                          eos_token_id=None, pad_token_id=world.tokenizer.pad_token_id)[:, ids.shape[1]:]

    def first_positions(token):  # where each row would stop with `token` as EOS (12: never)
        return {row.index(token) if token in row else 12 for row in free.tolist()}

    stop = max(free.unique().tolist(), key=lambda t: len(first_positions(t)))  # rows stop at the most different steps
    reference = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=12,
                               eos_token_id=stop, pad_token_id=world.tokenizer.pad_token_id)[:, ids.shape[1]:]
    expected = [_cut_at_eos(row, stop) for row in reference.tolist()]
    got = _decode(model, ids, mask, max_new_tokens=12, temperature=0.0, top_p=1.0, top_k=0, eos_id=stop)
    assert got == expected
    lengths = {len(row) for row in got}
    assert len(lengths) > 1 and min(lengths) < 12, "the test needs rows that stop early, at different steps"


def test_decode_loop_samples_from_the_tempered_distribution(world):
    # First sampled token of one prompt, many times: its frequencies must match softmax(z / T)
    # (total variation within sampling noise), and a filtered-out token must never appear.
    from scope_lib.rollout import _decode, filter_logits

    temperature = float(torch.empty(()).uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(0)))
    model = _chaotic_model(world)
    ids, mask = _left_padded(world, _prompts(1))
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits[0, -1].double()
    n = 4000
    got = _decode(model, ids.repeat(n, 1), mask.repeat(n, 1), max_new_tokens=1, temperature=temperature,
                  top_p=1.0, top_k=0, eos_id=-1)
    freq = torch.bincount(torch.tensor([row[0] for row in got]), minlength=logits.numel()).double() / n
    expected = (logits / temperature).softmax(-1)
    noise = 0.5 * (expected * (1 - expected) / n).sqrt().sum()  # >= the expected total variation of n draws
    tv = 0.5 * (freq - expected).abs().sum()
    assert tv < 3 * noise
    wrong = (logits / (temperature * 1.5)).softmax(-1)  # the check can tell a wrong temperature apart
    assert 0.5 * (freq - wrong).abs().sum() > 3 * noise
    got = _decode(model, ids.repeat(200, 1), mask.repeat(200, 1), max_new_tokens=1, temperature=temperature,
                  top_p=1.0, top_k=3, eos_id=-1)
    allowed = set(torch.isfinite(filter_logits(logits[None], top_k=3)[0]).nonzero().squeeze(-1).tolist())
    assert {row[0] for row in got} <= allowed and len(allowed) >= 3


@pytest.mark.parametrize("top_k, top_p", [(0, 0.9), (5, 1.0), (7, 0.5), (0, 0.3)])
def test_filter_logits_keeps_what_transformers_warpers_keep(top_k, top_p):
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    from scope_lib.rollout import filter_logits

    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(0)) * 3
    logits[0, :4] = logits[0, 0]  # ties at the top
    expected = logits.clone()
    if top_k:
        expected = TopKLogitsWarper(top_k)(None, expected)
    if top_p < 1:
        expected = TopPLogitsWarper(top_p)(None, expected)
    got = filter_logits(logits, top_k=top_k, top_p=top_p)
    assert torch.equal(torch.isfinite(got), torch.isfinite(expected))
    assert torch.equal(got[torch.isfinite(got)], logits[torch.isfinite(got)])


def test_sampling_from_a_config_section_with_overrides():
    from scope_lib.config import load_config

    cfg = load_config("paper_qwen3_1p7b")
    sampling = Sampling.from_config(cfg.eval)
    assert (sampling.temperature, sampling.top_p, sampling.top_k, sampling.max_new_tokens, sampling.repetition_penalty,
            sampling.batch_size) == (cfg.eval.temperature, cfg.eval.top_p, cfg.eval.top_k, cfg.eval.max_new_tokens,
                                     cfg.eval.repetition_penalty, cfg.eval.batch_size)
    assert cfg.eval.repetition_penalty != 1.0  # so the override below is seen
    plain = Sampling.from_config(cfg.eval, repetition_penalty=1.0)
    assert plain.repetition_penalty == 1.0 and plain.temperature == sampling.temperature
