"""The gate and calibration modules (python -m scope_lib.studies.gate, ...) run end to end (smoke world, a couple of steps)."""

import importlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    return importlib.import_module(f"scope_lib.{name}")


@pytest.mark.parametrize("estimator", ["exact_kl", "sampled", "sft"])
def test_gate_runs_and_writes_record(tmp_path, tmp_path_factory, monkeypatch, estimator):
    cache = tmp_path_factory.getbasetemp() / "shared_smoke_cache"  # built once, reused by each estimator
    monkeypatch.setenv("SCOPE_CACHE_DIR", str(cache))
    gate = _load("studies.gate")
    out = tmp_path / "gate.json"
    record = gate.main(["--smoke", "--estimator", estimator, "--seeds", "0", "1", "--steps", "2", "--prompts", "3",
                        "--eval-per-set", "2", "--eval-k", "1", "--max-new-tokens", "8", "--threads", "1",
                        "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["mean_gain"] == record["mean_gain"]
    assert [r["seed"] for r in saved["runs"]] == [0, 1] and all(r["steps_done"] == 2 for r in saved["runs"])
    assert set(saved["before"]) == {"chain2", "chain3", "chain4", "chain5", "average"}
    assert out.with_suffix(".md").exists()
