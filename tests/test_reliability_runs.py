"""A run directory belongs to one config: a killed run restarts with a history that
matches the step it resumes from, a damaged checkpoint or torn history line is named and
passed over, and another config never writes into the directory.

A kill is simulated in-process by raising from `Trainer.update` once `after_steps` steps are
recorded: like SIGKILL, nothing of the trainer runs after it (the kill-anywhere test in
test_reliability_processes.py kills real processes).
"""

import json
import os
import shutil

import pytest

from scope_lib.experiments import registry as runs
from scope_lib.config import load_config
from scope_lib.train import main as train_cli
from scope_lib.trainer import Trainer, train

SMOKE = {
    "model.student": "tiny_smoke", "model.teacher": "tiny_smoke", "progress": False, "method": "opd",
    "steps": 3, "optim.prompts_per_step": 2, "optim.mini_batch_prompts": 2, "optim.micro_batch_size": 8,
    "rollout.group_size": 1, "rollout.max_new_tokens": 12, "checkpoint_every": 0,
}


def smoke_config(run_dir, **overrides):
    return load_config("tiny", overrides={**SMOKE, "output_dir": str(run_dir), **overrides})


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing on the way out handles it."""


def train_until_killed(cfg, monkeypatch, after_steps: int) -> None:
    original = Trainer.update

    def update(self, batch, timer=None):
        if self.step >= after_steps:
            raise Killed
        return original(self, batch, timer)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "update", update)
        with pytest.raises(Killed):
            train(cfg)


def history(run_dir):
    """metrics.jsonl without the wall-clock columns (they differ between runs)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in rows]


def steps(run_dir):
    return [row["step"] for row in history(run_dir)]


def snapshot(run_dir):
    """Every file of the run directory with its bytes (the lock file aside)."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(autouse=True)
def no_idle_verify_workers():
    """Stop the verify workers a test started in this process: they idle on by design, and a
    later test counting this process's children would take them for leftovers."""
    yield
    from scope_lib import verify_worker

    verify_worker._POOL.shutdown()


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted 3-step run, and the destinations of every os.replace it made."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    replaced = []
    original = os.replace
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "replace", lambda src, dst: (replaced.append(os.path.basename(dst)), original(src, dst)))
        train(smoke_config(run_dir))
    return run_dir, replaced


def test_history_is_replaced_whole_never_appended(straight):
    run_dir, replaced = straight
    assert steps(run_dir) == [1, 2, 3]
    # Appending can leave a torn line when killed mid-write; a replaced file cannot.
    assert replaced.count("metrics.jsonl") >= 3 and "done.json" in replaced


def test_run_killed_before_its_first_checkpoint_restarts_with_a_fresh_history(tmp_path, monkeypatch, straight):
    cfg = smoke_config(tmp_path / "run", checkpoint_every=150)
    train_until_killed(cfg, monkeypatch, after_steps=2)
    assert steps(tmp_path / "run") == [1, 2] and not (tmp_path / "run" / "checkpoints").exists()
    train(cfg)
    # Before the fix the restart from step 0 appended: steps 1, 2, 1, 2, 3.
    assert history(tmp_path / "run") == history(straight[0])


def test_second_method_into_the_same_output_dir_is_refused_and_writes_nothing(tmp_path, capsys, straight):
    run_dir = tmp_path / "run"
    shutil.copytree(straight[0], run_dir)
    before = snapshot(run_dir)
    with pytest.raises(ValueError, match=rf"{run_dir}.*method: 'opd' -> 'scope'"):
        train(smoke_config(run_dir, method="scope", **{"rollout.group_size": 2}))
    assert snapshot(run_dir) == before  # history, final/, done.json and config.yaml untouched
    # The command line says the same, without a traceback.
    argv = ["--config", "tiny", "--method", "grpo"] + [x for k, v in SMOKE.items() if k not in ("method", "rollout.group_size")
                                                         for x in (f"--{k}", str(v))]
    assert train_cli(argv + ["--rollout.group_size", "2", "--output_dir", str(run_dir)]) == 2
    assert f"output_dir {run_dir} holds a run of another config" in capsys.readouterr().err
    assert snapshot(run_dir) == before


def test_resume_with_another_config_is_refused_before_config_yaml_is_written(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    train_until_killed(smoke_config(run_dir, checkpoint_every=1), monkeypatch, after_steps=1)
    before = snapshot(run_dir)
    assert "config.yaml" in before and "checkpoints/step_000001/state.pt" in before
    with pytest.raises(ValueError, match=r"optim\.lr: 0\.001 -> 0\.0003"):
        train(smoke_config(run_dir, checkpoint_every=1, **{"optim.lr": 3e-4}))
    assert snapshot(run_dir) == before  # before the fix config.yaml already held lr 3e-4 here


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_damaged_newest_checkpoint_is_named_and_the_previous_one_resumes(tmp_path, monkeypatch, straight, damage):
    run_dir = tmp_path / "run"
    cfg = smoke_config(run_dir, checkpoint_every=1, keep_checkpoints=1)
    train_until_killed(cfg, monkeypatch, after_steps=2)
    checkpoints = run_dir / "checkpoints"
    # At least two are kept whatever keep_checkpoints says, so there is one to fall back to.
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step_000001", "step_000002"]
    newest = checkpoints / "step_000002" / "state.pt"
    data = newest.read_bytes()
    newest.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    (checkpoints / "step_000003.tmp").mkdir()  # a save cut short by a kill
    with pytest.warns(RuntimeWarning, match=r"skipping checkpoint .*step_000002/state\.pt: it does not load"):
        train(cfg)
    assert history(run_dir) == history(straight[0])  # resumed from step 1: the same run
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step_000001", "step_000002"]  # the damaged one replaced
    assert (checkpoints / "step_000002" / "state.pt").stat().st_size > len(data) // 2


def test_torn_last_history_line_is_dropped_with_a_warning(tmp_path, monkeypatch, straight):
    run_dir = tmp_path / "run"
    cfg = smoke_config(run_dir, checkpoint_every=1)
    train_until_killed(cfg, monkeypatch, after_steps=2)
    metrics = run_dir / "metrics.jsonl"
    whole = metrics.read_text()
    metrics.write_text(whole + whole.splitlines()[-1][:25])  # older code, killed mid-append
    with pytest.warns(RuntimeWarning, match=r"metrics\.jsonl: dropped its torn last line 3"):
        train(cfg)
    assert history(run_dir) == history(straight[0])


def test_a_run_directory_is_trained_by_one_process_at_a_time(tmp_path):
    run_dir = tmp_path / "run"
    with runs.claim_run_dir(run_dir):
        with pytest.raises(ValueError, match=rf"{run_dir} is being trained by another process \(pid {os.getpid()}\)"):
            train(smoke_config(run_dir))
    assert not (run_dir / "metrics.jsonl").exists() and not (run_dir / "config.yaml").exists()
