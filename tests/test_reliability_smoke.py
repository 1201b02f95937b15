"""Smoke runs never write into the committed figures/ or the shared run registry:
`python -m scope_lib.notebook.runner --smoke --keep-going`, a README command, rewrote 63
committed files with toy-world numbers."""

import json
import os

import nbformat
import pytest

pytest.importorskip("papermill")

from scope_lib.notebook import report  # noqa: E402
from scope_lib.notebook import runner  # noqa: E402


def write_notebook(path, cells):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source, metadata={"tags": tags}) for source, tags in cells]
    nbformat.write(notebook, str(path))


WHERE = """
import json
from scope_lib.common.plotting import resolve_figures_dir
from scope_lib.experiments.registry import runs_dir
json.dump({"figures": str(resolve_figures_dir(FIGURES_DIR)), "runs": str(runs_dir())}, open("where.json", "w"))
"""


def test_smoke_run_writes_figures_and_runs_beside_its_executed_notebooks(tmp_path, monkeypatch):
    monkeypatch.setenv("SCOPE_RUNS_DIR", str(tmp_path / "shared_registry"))  # stands for runs/
    notebooks, out = tmp_path / "notebooks", tmp_path / "executed"
    notebooks.mkdir()
    write_notebook(notebooks / "01_where.ipynb", [('SMOKE = False\nFIGURES_DIR = "figures"', ["parameters"]), (WHERE, [])])
    results = runner.run_notebooks(smoke=True, out_dir=out, notebooks_dir=notebooks, progress_bar=False)
    assert [r.status for r in results] == ["ok"], [r.describe_failure() for r in results]
    where = json.loads((notebooks / "where.json").read_text())
    assert where == {"figures": str((out / "figures").resolve()), "runs": str((out / "runs").resolve())}
    assert os.environ["SCOPE_RUNS_DIR"] == str(tmp_path / "shared_registry")  # this process's registry is restored


def test_smoke_run_into_the_committed_figures_is_refused_before_anything_runs(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks / "01_where.ipynb", [('SMOKE = False\nFIGURES_DIR = "figures"', ["parameters"]), ("1/0", [])])
    with pytest.raises(ValueError, match=r"FIGURES_DIR: .figures. is the committed .*/figures; a smoke run would overwrite"):
        runner.run_notebooks(smoke=True, parameters={"FIGURES_DIR": "figures"}, out_dir=tmp_path / "out",
                             notebooks_dir=notebooks, progress_bar=False)
    assert not (tmp_path / "out").exists()


def test_smoke_command_builds_its_results_page_beside_its_figures(tmp_path, monkeypatch):
    pages = []
    # The notebooks are not executed; everything else of a smoke batch (where each one writes) is real.
    monkeypatch.setattr(runner, "_execute_all", lambda selected, *a, **k: [runner.NotebookResult(n.name, "ok", 0.0) for n in selected])
    monkeypatch.setattr(report, "build_results_page", lambda figures_dir: pages.append(figures_dir) or figures_dir)
    assert runner.main(["--smoke", "--keep-going", "--out", str(tmp_path / "out")]) == 0
    assert pages == [str((tmp_path / "out" / "figures").resolve())]  # before the fix: the committed "figures"


def test_smoke_run_out_to_the_repository_root_is_refused_in_one_line(monkeypatch, capsys):
    # `run_notebooks 09 --smoke --out .` from the repository root: its figures would be the committed ones
    monkeypatch.chdir(runner.REPO_ROOT)
    monkeypatch.setattr(runner, "_execute_all", lambda *a, **k: pytest.fail("a notebook ran"))
    assert runner.main(["09", "--smoke", "--out", "."]) == 2  # before: KeyError: 'FIGURES_DIR'
    err = capsys.readouterr().err
    assert err.startswith("error: out_dir: '.' puts the smoke figures in") and err.count("\n") == 1, err
    assert "--out" in err
