"""bench/grading_timeline.py's per-step summary, by hand on made-up stamps."""

import importlib.util
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("grading_timeline", ROOT / "bench" / "grading_timeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Scorer:  # the three methods the bench wraps
    def grade_rows(self, grade, rows, texts, problems):
        return None

    def _run_job(self, job):
        return job

    def grade_queued_here(self):
        return None


def test_summary_splits_grading_at_the_end_of_generation():
    bench = load_bench()
    stamps = bench.Stamps(Scorer)
    rng = random.Random()
    gen_end = rng.uniform(0.2, 0.4)
    calls = [(0.05, 0.1, "teacher-scoring_0"), (0.1, gen_end + 0.03, "teacher-scoring_0"),
             (gen_end, gen_end + 0.05, "MainThread"), (gen_end + 0.05, gen_end + 0.07, "MainThread")]
    stamps.events = [("handover", 0.05, 3), ("handover", 0.09, 16), ("gen_end", gen_end)] + [("call", *c) for c in calls]
    got = stamps.summary()
    before = 0.05 + (gen_end - 0.1)
    after = 0.03 + 0.05 + 0.02
    assert abs(got["busy_before_s"] - before) < 1e-12 and abs(got["busy_after_s"] - after) < 1e-12
    assert abs(got["tail_s"] - 0.07) < 1e-12 and abs(got["tail_bound_s"] - after / 2) < 1e-12
    assert got["first_handover_s"] == 0.05 and got["gen_end_s"] == gen_end
    assert [c[2] for c in got["calls"]] == ["worker", "worker", "decoder", "decoder"]


def test_wrapped_methods_stamp_and_pass_through():
    bench = load_bench()
    stamps = bench.Stamps(Scorer)
    stamps.begin()
    scorer = Scorer()
    assert scorer._run_job(True) is True and scorer._run_job(False) is False  # a call another thread took: no stamp
    scorer.grade_rows(None, [1, 2], [], [])
    scorer.grade_queued_here()
    assert [e[0] for e in stamps.events] == ["call", "handover", "gen_end"]
    assert stamps.events[1][2] == 2


def test_the_end_of_generation_is_the_first_of_the_early_forward_pass_and_the_queued_grading():
    """With reward.overlap the decoder's thread runs the trainer's early forward pass before it
    grades the queued calls: generation ended when the first of the two began."""
    import types

    bench = load_bench()
    ran = []
    trainer_module = types.SimpleNamespace(_early_forward=lambda *a, **k: ran.append((a, k)))
    stamps = bench.Stamps(Scorer, trainer_module)
    stamps.begin()
    trainer_module._early_forward("trainer", "rollouts", step=3)
    stamps.t0 -= 0.5  # half a second passes (the forward pass)
    Scorer().grade_queued_here()
    Scorer()._run_job(True)
    assert ran == [(("trainer", "rollouts"), {"step": 3})]
    assert [e[0] for e in stamps.events] == ["gen_end", "gen_end", "call"]
    stamps.events.append(("handover", 0.0, 1))
    assert stamps.summary()["gen_end_s"] == stamps.events[0][1] < stamps.events[1][1] - 0.4
