"""The synthetic task: deterministic, disjoint from training, solutions that verify."""

import random

import pytest

from scope_lib.worlds import chain as tasks
from scope_lib.worlds.tokenizer import build_tokenizer, load_tokenizer
from scope_lib.verify import is_correct


def _replay(problem):
    """Recompute the answer from the question text alone (independent of make_problem)."""
    words = problem.question.removesuffix(".").split(". ")
    value = int(words[0].removeprefix("Start with "))
    for w in words[1:]:
        if w.startswith("Add "):
            value += int(w[4:])
        elif w.startswith("Subtract "):
            value -= int(w[9:])
        else:
            value *= int(w.removeprefix("Multiply by "))
        assert 0 <= value <= tasks.MAX_VALUE
    return value


def test_deterministic_by_seed():
    assert tasks.eval_sets(20, seed=3) == tasks.eval_sets(20, seed=3)
    assert tasks.train_pool(50, seed=3) == tasks.train_pool(50, seed=3)
    assert tasks.train_pool(50, seed=3) != tasks.train_pool(50, seed=4)


def test_eval_sets_disjoint_from_training_by_content():
    rng = random.Random(0)
    evals = tasks.eval_sets(100, seed=rng.randrange(100))
    train = {p.question for p in tasks.train_pool(3000, seed=rng.randrange(100))}
    train |= {p.question for p in tasks.train_stream(3000, seed=rng.randrange(100))}
    for name, problems in evals.items():
        questions = [p.question for p in problems]
        assert len(set(questions)) == len(questions) == 100
        assert not set(questions) & train, name


def test_tiers_increase_and_solutions_are_correct_multiline():
    evals = tasks.eval_sets(30, seed=random.Random(1).randrange(1000))
    assert list(evals) == ["chain2", "chain3", "chain4", "chain5"]
    for name, problems in evals.items():
        for p in problems:
            assert p.tier == int(name[-1]) == p.solution.count("\n")
            assert str(_replay(p)) == p.answer
            assert p.solution.endswith(f"\\boxed{{{p.answer}}}")
            assert is_correct(p.solution, p.answer)
            assert not is_correct(p.solution, str(int(p.answer) + 1))


def test_bad_arguments():
    with pytest.raises(ValueError, match="num"):
        tasks.train_pool(-1)
    with pytest.raises(ValueError, match="steps"):
        tasks.make_problem(3, [], source="x", index=0)


def test_tokenizer_round_trips_and_survives_save_load(tmp_path):
    tok = build_tokenizer()
    texts = tasks.corpus(50, seed=11) + ["\\boxed{42}", "odd text: é ∑ {}\n\n  tabs\t", ""]
    for text in texts:
        ids = tok(text)["input_ids"]
        assert ids[0] == tok.bos_token_id
        assert tok.decode(ids, skip_special_tokens=True) == text
    digits = tok.convert_ids_to_tokens(tok("\\boxed{907}", add_special_tokens=False)["input_ids"])
    assert [t for t in digits if t.isdigit()] == ["9", "0", "7"]
    tok.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded.padding_side == "left"
    assert (loaded.bos_token_id, loaded.eos_token_id, loaded.pad_token_id) == (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    for text in texts:
        assert loaded(text)["input_ids"] == tok(text)["input_ids"]
