"""The numbered notebooks' smoke runs, executed at most once per test session and shared by the tests
that read them (tests/test_notebooks.py, tests/test_notebooks_analysis.py, tests/test_bench_table8.py).

`NotebookSmoke.results(numbers)` runs, through the batch runner, those of `numbers` not run yet in
this session (in one call per set of parameters) and returns every asked result, so a test asking
for notebooks another test already ran waits for nothing. All write into one temporary folder:
figures to `<root>/figures`, runs to the registry `<root>/runs` (never the repository's), executed
copies to `<root>/executed`. `git status` is taken before the first run and after each, so a test can
check that the runs left the repository as they found it.

Notebook 09 reads `BENCH_RECORD`: its smoke run reads a made-up bench record (`made_up_record`, written
by bench/table8_speed.py's own `write_outputs`), and tests/test_bench_table8.py asserts what the
notebook says of it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH = REPO_ROOT / "bench" / "table8_speed.py"
COMPONENTS = ["generation", "reward", "teacher_scoring", "old_logprob", "actor_update"]
# The made-up record notebook 09's session smoke run reads: overlapped SCOPE at 1.07x GRPO's step, DPAW 0.06% of it.
NOTEBOOK_RECORD = {"overlapped_step": 1.07, "dpaw": 0.0006}


def bench_module():
    """bench/table8_speed.py, imported from its file."""
    spec = importlib.util.spec_from_file_location("table8_speed_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def made_up_steps(step, generation, scoring=0.0, worker=None, dpaw=None, n=3):
    """n counted steps of one variant whose median step is `step` (the others 10% off either way)."""
    out = []
    for factor in [1.0, 0.9, 1.1][:n]:
        t = {"step": step * factor, "generation": generation, "reward": 0.001, "teacher_scoring": scoring,
             "old_logprob": 0.0, "actor_update": 0.5}
        if worker is not None:
            t["teacher_scoring_worker"] = worker
        if dpaw is not None:
            t["dpaw"] = dpaw
        out.append(t)
    return out


def made_up_record(bench, *, overlapped_step, dpaw, load=(0.1, 0.1, 0.1), cores=16):
    """A bench record (`bench.build_record`) of made-up step times: GRPO at 1 s a step."""
    times = {"GRPO": made_up_steps(1.0, 0.5), "SCOPE (synchronous)": made_up_steps(1.2, 0.5, 0.2, dpaw=dpaw),
             "SCOPE (overlapped)": made_up_steps(overlapped_step, 0.6, 0.03, worker=0.25),
             "OPD (G=1)": made_up_steps(0.2, 0.1, 0.05)}
    return bench.build_record(times, components=COMPONENTS, parameters={"teacher": 1_090_000, "student": 330_000},
                              world="tiny_routes", steps=4, gen_batch=32, threads=1, torch_version="2.x",
                              cpu="Test CPU", cores=cores, load_start=load, load_end=load, date="2026-01-01T00:00:00",
                              command="python bench/table8_speed.py --steps 4 --out x",
                              setting={"prompts_per_step": 16, "group_size": 8, "max_new_tokens": 64})


def git_status() -> str | None:
    """`git status --porcelain` of the repository (untracked files too); None outside a checkout."""
    done = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


class NotebookSmoke:
    """Smoke runs of the numbered notebooks in `root`, each notebook executed at most once."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.figures = self.root / "figures"
        self.bench_record = self.root / "bench" / "table8_bench.json"
        self._results: dict[str, object] = {}
        self.status_before: str | None = None
        self.status_after: str | None = None

    def parameters(self, number: str) -> dict:
        """The parameters notebook `number` runs with (beyond the smoke values the runner injects)."""
        parameters = {"FIGURES_DIR": str(self.figures)}
        if number == "09":
            parameters["BENCH_RECORD"] = str(self.bench_record)
        return parameters

    def results(self, numbers: Iterable[str]) -> dict:
        """{number: NotebookResult} of `numbers`, running the ones not run yet."""
        from scope_lib.notebook.runner import run_notebooks

        numbers = list(numbers)
        missing = [n for n in numbers if n not in self._results]
        if missing and self.status_before is None:
            self.status_before = git_status()
        groups: dict[tuple, list[str]] = {}
        for number in missing:
            groups.setdefault(tuple(sorted(self.parameters(number).items())), []).append(number)
        saved = os.environ.get("SCOPE_RUNS_DIR")
        os.environ["SCOPE_RUNS_DIR"] = str(self.root / "runs")  # never the repository's run registry
        try:
            for key, group in groups.items():
                if "09" in group and not self.bench_record.exists():
                    bench = bench_module()
                    bench.write_outputs(made_up_record(bench, **NOTEBOOK_RECORD), self.bench_record.parent)
                ran = run_notebooks(group, smoke=True, parameters=dict(key), out_dir=self.root / "executed",
                                    keep_going=True, progress_bar=False)
                self._results.update({result.notebook[:2]: result for result in ran})
        finally:
            if saved is None:
                os.environ.pop("SCOPE_RUNS_DIR", None)
            else:
                os.environ["SCOPE_RUNS_DIR"] = saved
        if missing:
            self.status_after = git_status()
        return {number: self._results[number] for number in numbers}
