"""Rollouts follow the project's layout: left-padded prompt, right-padded response, masks exact."""

import pytest
import torch

from scope_lib import models, tasks
from scope_lib.rollout import encode_pairs, generate_rollouts


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return models.build_tiny_world(models.SMOKE_WORLD, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


def _prompts(n):
    return [tasks.format_prompt(p) for p in tasks.train_pool(20, seed=5)][:n]


def test_layout_masks_and_groups(world):
    tok = world.tokenizer
    prompts = _prompts(3)
    batch = generate_rollouts(world.student, tok, prompts, num_samples=2, temperature=1.0,
                              max_new_tokens=12, batch_size=4, seed=0)
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
    kw = dict(num_samples=1, max_new_tokens=10, seed=3)
    a = generate_rollouts(world.teacher, world.tokenizer, prompts, temperature=1.0, batch_size=4, **kw)
    b = generate_rollouts(world.teacher, world.tokenizer, prompts, temperature=1.0, batch_size=4, **kw)
    assert torch.equal(a.input_ids, b.input_ids)
    # Greedy decoding of a left-padded batch equals decoding each prompt alone.
    batched = generate_rollouts(world.teacher, world.tokenizer, prompts, temperature=0.0, batch_size=4, **kw)
    for i, p in enumerate(prompts):
        alone = generate_rollouts(world.teacher, world.tokenizer, [p], temperature=0.0, batch_size=1, **kw)
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
        generate_rollouts(world.student, world.tokenizer, ["x"], num_samples=0, temperature=1.0, max_new_tokens=2)
    with pytest.raises(ValueError, match="temperature"):
        generate_rollouts(world.student, world.tokenizer, ["x"], num_samples=1, temperature=-1.0, max_new_tokens=2)


def test_scoring_the_layout_reproduces_greedy_choices(world):
    # Teacher-forced logits on the assembled batch (positions from the attention mask) must pick
    # exactly the tokens that greedy generation produced: generation and scoring agree on layout.
    from scope_lib.logprobs import position_ids_from_mask

    batch = generate_rollouts(world.teacher, world.tokenizer, _prompts(5), num_samples=1, temperature=0.0,
                              max_new_tokens=8, batch_size=5, seed=0)
    with torch.no_grad():
        logits = world.teacher(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                               position_ids=position_ids_from_mask(batch.attention_mask)).logits
    predicted = logits[:, :-1].argmax(-1)  # predicts input_ids[:, 1:]
    on = batch.response_mask[:, 1:].bool()
    assert torch.equal(predicted[on], batch.input_ids[:, 1:][on])
