"""The notebook batch runner on two fixture notebooks (tests/fixtures/notebooks):
01_ok echoes its parameters and interpreter, 02_fail raises in its fourth cell.

Each test works on a copy of the fixtures in tmp_path, so syncing and executing never
touch the repository. Every kernel start costs ~1-3 s; five notebook executions in all.
"""

import re
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

pytest.importorskip("papermill")
pytest.importorskip("jupytext")

from scope_lib.notebook import runner  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def nb_dir(tmp_path):
    """Fixture notebooks copied to tmp, each .ipynb made newer than its .py (no sync)."""
    target = tmp_path / "notebooks"
    shutil.copytree(FIXTURES, target)
    for ipynb in target.glob("*.ipynb"):
        py_mtime = ipynb.with_suffix(".py").stat().st_mtime
        os.utime(ipynb, (py_mtime + 10, py_mtime + 10))
    return target


def printed_text(notebook_path) -> str:
    nb = nbformat.read(str(notebook_path), as_version=4)
    return "".join(
        output.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    )


def write_notebook(path, cells):
    """cells: list of (source, tags)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source, metadata={"tags": tags}) for source, tags in cells]
    nbformat.write(nb, str(path))


# --- pure helpers (no kernel) ----------------------------------------------------------


def test_discover_and_select(nb_dir):
    (nb_dir / "notes.ipynb").write_text("{}")  # not NN_*: ignored
    notebooks = runner.discover_notebooks(nb_dir)
    assert [nb.name for nb in notebooks] == ["01_ok.ipynb", "02_fail.ipynb"]
    for key in ["2", "02", "02_fail", "02_fail.ipynb", 2]:
        assert [nb.name for nb in runner.select_notebooks(notebooks, [key])] == ["02_fail.ipynb"]
    assert runner.select_notebooks(notebooks, None) == notebooks
    # order follows the numbering, not the command line
    assert runner.select_notebooks(notebooks, ["02", "01"]) == notebooks
    with pytest.raises(ValueError, match="07"):
        runner.select_notebooks(notebooks, ["07"])


def test_paired_py_without_ipynb_is_discovered_and_synced(nb_dir):
    (nb_dir / "01_ok.ipynb").unlink()
    assert [nb.name for nb in runner.discover_notebooks(nb_dir)] == ["01_ok.ipynb", "02_fail.ipynb"]
    assert runner.sync_pair(nb_dir / "01_ok.ipynb")
    assert "GREETING" in runner.declared_parameters(nb_dir / "01_ok.ipynb")


@pytest.mark.parametrize(
    "text, expected",
    [("3", 3), ("0.5", 0.5), ("True", True), ("[0, 1, 2]", [0, 1, 2]), ("tiny", "tiny"), ("'a b'", "a b")],
)
def test_parse_parameter_value(text, expected):
    value = runner.parse_parameter_value(text)
    assert value == expected and type(value) is type(expected)


def test_undeclared_parameter_is_rejected_before_anything_runs(nb_dir, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"GREETNG.*01_ok\.ipynb"):
        runner.run_notebooks(["01"], {"GREETNG": "typo"}, out_dir=out, notebooks_dir=nb_dir)
    # also when the bad notebook comes second: validation precedes the first execution
    with pytest.raises(ValueError, match=r"N_ITEMS.*02_fail\.ipynb"):
        runner.run_notebooks(None, {"N_ITEMS": 2}, out_dir=out, notebooks_dir=nb_dir)
    assert not out.exists()


def test_notebook_without_parameters_cell_is_rejected(tmp_path):
    write_notebook(tmp_path / "01_bare.ipynb", [("x = 1", [])])
    with pytest.raises(ValueError, match=r"01_bare\.ipynb.*parameters"):
        runner.run_notebooks(out_dir=tmp_path / "out", notebooks_dir=tmp_path)


@pytest.mark.parametrize(
    "parameters_source, message",
    [("SEEDS = list(range(3))", "SEEDS.*not a literal"), ("print('x')", "line 1"), ("A, B = 1, 2", "line 1")],
)
def test_parameters_cell_holds_only_literal_assignments(tmp_path, parameters_source, message):
    write_notebook(tmp_path / "01_bad.ipynb", [(parameters_source, ["parameters"])])
    with pytest.raises(ValueError, match=message):
        runner.declared_parameters(tmp_path / "01_bad.ipynb")


def test_declared_parameters_reads_literals(nb_dir):
    declared = runner.declared_parameters(nb_dir / "01_ok.ipynb")
    assert list(declared) == ["SMOKE", "GREETING", "N_ITEMS"]
    assert [info["value"] for info in declared.values()] == [False, "default greeting", 3]


def test_smoke_needs_a_smoke_parameter(tmp_path):
    write_notebook(tmp_path / "01_nosmoke.ipynb", [("SIZE = 3", ["parameters"]), ("print(SIZE)", [])])
    with pytest.raises(ValueError, match=r"01_nosmoke\.ipynb.*SMOKE"):
        runner.run_notebooks(smoke=True, out_dir=tmp_path / "out", notebooks_dir=tmp_path)


def test_output_folder_may_not_be_the_source_folder(nb_dir):
    with pytest.raises(ValueError, match="out_dir"):
        runner.run_notebooks(["01"], out_dir=nb_dir, notebooks_dir=nb_dir)


def test_kernel_runs_this_interpreter():
    from jupyter_client.kernelspec import KernelSpecManager

    name = runner.resolve_kernel_name()
    argv = KernelSpecManager().get_kernel_spec(name).argv
    assert runner._spec_runs_this_interpreter(argv)
    assert not runner._spec_runs_this_interpreter(["/somewhere/else/bin/python", "-m", "ipykernel"])


# --- execution -------------------------------------------------------------------------


def test_parameter_is_injected_and_source_untouched(nb_dir, tmp_path):
    source = nb_dir / "01_ok.ipynb"
    before = source.read_bytes()
    out = tmp_path / "executed"
    results = runner.run_notebooks(
        ["01"], {"GREETING": "hello from the test"}, out_dir=out, notebooks_dir=nb_dir, progress_bar=False
    )
    assert [(r.notebook, r.status) for r in results] == [("01_ok.ipynb", "ok")]
    text = printed_text(out / "01_ok.ipynb")
    assert "GREETING=hello from the test" in text
    assert "SMOKE=False" in text and "n_items=3" in text
    # the kernel is this interpreter (the venv), not some other python3 on the machine
    assert f"EXECUTABLE={sys.executable}\n" in text
    assert source.read_bytes() == before
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["notebooks"][0]["status"] == "ok"


def test_newer_py_is_synced_before_running(nb_dir, tmp_path):
    py = nb_dir / "01_ok.py"
    py.write_text(py.read_text().replace('"default greeting"', '"edited in the py file"'))
    ipynb_mtime = (nb_dir / "01_ok.ipynb").stat().st_mtime
    os.utime(py, (ipynb_mtime + 10, ipynb_mtime + 10))
    out = tmp_path / "executed"
    runner.run_notebooks(["01"], out_dir=out, notebooks_dir=nb_dir, progress_bar=False)
    assert "GREETING=edited in the py file" in printed_text(out / "01_ok.ipynb")
    assert "edited in the py file" in (nb_dir / "01_ok.ipynb").read_text()


def test_failure_stops_the_batch_without_keep_going(nb_dir, tmp_path):
    shutil.copy(nb_dir / "01_ok.ipynb", nb_dir / "03_ok_again.ipynb")
    results = runner.run_notebooks(
        ["02", "03"], smoke=True, out_dir=tmp_path / "out", notebooks_dir=nb_dir, progress_bar=False
    )
    statuses = [(r.notebook, r.status) for r in results]
    assert statuses == [("02_fail.ipynb", "failed"), ("03_ok_again.ipynb", "skipped")]
    failed = results[0]
    # source cell 3 (markdown, parameters, assignment, then the raise); the executed copy
    # has papermill's injected cell too, which the reported index must not count
    assert failed.cell_index == 3
    assert failed.cell_first_line.startswith("ratio = 1 / denominator")
    assert failed.ename == "ZeroDivisionError"


def test_cli_smoke_keep_going_names_the_failing_notebook_and_cell(nb_dir, tmp_path):
    out = tmp_path / "out"
    completed = subprocess.run(
        [sys.executable, "-m", "scope_lib.notebook.runner", "--notebooks-dir", str(nb_dir),
         "--out", str(out), "--smoke", "--keep-going", "--no-progress"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 1, completed.stderr
    assert "02_fail.ipynb" in completed.stderr
    assert "cell 3" in completed.stderr
    assert "ratio = 1 / denominator" in completed.stderr
    assert "ZeroDivisionError" in completed.stderr
    # --smoke reached the notebook that ran to the end
    text = printed_text(out / "01_ok.ipynb")
    assert "SMOKE=True" in text and "n_items=1" in text
    summary = json.loads((out / "run_summary.json").read_text())
    assert [(n["notebook"], n["status"]) for n in summary["notebooks"]] == [
        ("01_ok.ipynb", "ok"),
        ("02_fail.ipynb", "failed"),
    ]
    assert "01_ok.ipynb" in completed.stdout and "failed" in completed.stdout  # summary table


def test_cli_rejects_undeclared_parameter(nb_dir, tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "scope_lib.notebook.runner", "01", "--notebooks-dir", str(nb_dir),
         "--out", str(tmp_path / "out"), "-p", "NOT_A_PARAMETER", "1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode != 0
    assert "NOT_A_PARAMETER" in completed.stderr and "01_ok.ipynb" in completed.stderr
    assert not (tmp_path / "out").exists()


def _figures_notebook(folder, smooth=5):
    """A notebook declaring FIGURES_DIR and SMOOTH that prints the folder it was given."""
    folder.mkdir(exist_ok=True)
    path = folder / "05_figures.ipynb"
    write_notebook(path, [(f'SMOKE = False\nSMOOTH = {smooth}\nFIGURES_DIR = "figures"', ["parameters"]),
                          ('print(f"FIGURES_DIR={FIGURES_DIR}")', [])])
    return path


def test_declared_parameters_reads_the_py_pair_too(nb_dir):
    assert runner.declared_parameters(nb_dir / "01_ok.py") == runner.declared_parameters(nb_dir / "01_ok.ipynb")


def test_figures_destination_sends_a_variant_to_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("SCOPE_WRITE_FIGURES", raising=False)
    smooth = int(np.random.default_rng(0).integers(1, 40))
    notebook = _figures_notebook(tmp_path / "nbs", smooth)
    figures = REPO_ROOT / "figures"
    out = tmp_path / "out"
    assert runner.figures_destination(notebook, {}, False, out) == figures
    assert runner.figures_destination(notebook, {"SMOOTH": smooth}, False, out) == figures  # the default, given
    assert runner.figures_destination(notebook, {"SMOOTH": smooth + 1}, False, out) == \
        figures / "variants" / f"SMOOTH={smooth + 1}"
    assert runner.figures_destination(notebook, {"SMOOTH": smooth + 1}, True, out) == \
        out.resolve() / "figures" / "variants" / f"SMOOTH={smooth + 1}"
    assert runner.figures_destination(notebook, {"SMOOTH": smooth + 1, "FIGURES_DIR": str(tmp_path)}, True, out) == tmp_path
    monkeypatch.setenv("SCOPE_WRITE_FIGURES", "1")
    assert runner.figures_destination(notebook, {"SMOOTH": smooth + 1}, False, out) == figures
    without = tmp_path / "06_without.ipynb"
    write_notebook(without, [("SMOKE = False", ["parameters"])])
    assert runner.figures_destination(without, {}, False, out) is None  # it writes no figures


def test_smoke_variant_is_run_into_its_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("SCOPE_WRITE_FIGURES", raising=False)
    notebooks = tmp_path / "nbs"
    _figures_notebook(notebooks, smooth=5)
    out = tmp_path / "out"
    results = runner.run_notebooks(["05"], {"SMOOTH": 3}, smoke=True, out_dir=out, notebooks_dir=notebooks,
                                   progress_bar=False)
    expected = out.resolve() / "figures" / "variants" / "SMOOTH=3"
    assert [(r.status, r.figures_dir) for r in results] == [("ok", str(expected))]
    assert f"FIGURES_DIR={expected}\n" in printed_text(out / "05_figures.ipynb")
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["notebooks"][0]["figures_dir"] == str(expected)


# --- a clean clone stays clean ----------------------------------------------------------


def test_pairs_are_synced_by_content_not_modification_time(nb_dir):
    """A touched .py (newer, same cells) or another jupytext version in its header syncs nothing."""
    py, ipynb = nb_dir / "01_ok.py", nb_dir / "01_ok.ipynb"
    py.write_text(py.read_text().replace("jupytext_version: 1.19.6", "jupytext_version: 0.0.1"))
    later = ipynb.stat().st_mtime + 10
    os.utime(py, (later, later))
    before = py.read_bytes(), ipynb.read_bytes()
    assert not runner.pair_differs(ipynb)
    assert runner.sync_pair(ipynb) is False
    assert (py.read_bytes(), ipynb.read_bytes()) == before
    py.write_text(py.read_text().replace("N_ITEMS = 3", "N_ITEMS = 4"))  # a real edit
    os.utime(py, (later + 10, later + 10))
    assert runner.pair_differs(ipynb) and runner.sync_pair(ipynb)
    assert runner.declared_parameters(ipynb)["N_ITEMS"]["value"] == 4


def test_list_reads_the_pairs_and_writes_nothing(nb_dir, capsys):
    for py in nb_dir.glob("*.py"):  # the .py newer than the .ipynb, as after a checkout or a touch
        os.utime(py, (py.stat().st_mtime + 100, py.stat().st_mtime + 100))
    before = {p.name: p.read_bytes() for p in nb_dir.iterdir()}
    assert runner.main(["--list", "--notebooks-dir", str(nb_dir)]) == 0
    assert "01_ok.ipynb: SMOKE=False, GREETING=\"default greeting\", N_ITEMS=3" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in nb_dir.iterdir()} == before


def _git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=True).stdout


def test_list_on_the_repository_changes_no_tracked_file():
    if not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    before = _git_status()
    assert runner.main(["--list"]) == 0
    assert _git_status() == before


def test_writing_a_pair_with_this_jupytext_rewrites_no_header():
    """jupytext's version stays out of the .py headers (jupytext.toml), so a sync with whatever
    jupytext is installed leaves the tracked files as they are."""
    import jupytext
    from jupytext.config import load_jupytext_config

    config = load_jupytext_config(str(REPO_ROOT / "notebooks" / "00_setup_tiny_world.py"))
    assert config is not None and "jupytext_version" in config.notebook_metadata_filter
    for py in sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        text = py.read_text()
        header = text.split("# ---", 2)[1]  # the filter line names the key; no line sets it
        assert not re.search(r"^#\s+jupytext_version:", header, re.MULTILINE), f"{py.name}: jupytext's version in the header"
        assert jupytext.writes(jupytext.read(str(py)), fmt="py:percent", config=config) == text, py.name


def test_an_uncommitted_edit_of_a_default_sends_the_runner_to_a_variant_folder(tmp_path, monkeypatch):
    """The runner's destination agrees with nb.setup's: defaults are git HEAD's parameters cell."""
    import jupytext

    monkeypatch.delenv("SCOPE_WRITE_FIGURES", raising=False)
    repo = tmp_path / "repo"
    folder = repo / "nbs"
    folder.mkdir(parents=True)
    smooth = int(np.random.default_rng(1).integers(1, 40))

    def write(value):
        text = f'# %% tags=["parameters"]\nSMOKE = False\nSMOOTH = {value}\nFIGURES_DIR = "figures"\n\n# %%\nprint(SMOOTH)\n'
        (folder / "05_figures.py").write_text(text)
        jupytext.write(jupytext.reads(text, fmt="py:percent"), str(folder / "05_figures.ipynb"))

    write(smooth)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "notebook"], check=True)
    notebook, out, figures = folder / "05_figures.ipynb", tmp_path / "out", REPO_ROOT / "figures"
    assert runner.figures_destination(notebook, {}, False, out) == figures
    write(smooth + 1)  # edited (as Lab autosaves), not committed
    assert runner.figures_destination(notebook, {}, False, out) == figures / "variants" / f"SMOOTH={smooth + 1}"
    assert runner.figures_destination(notebook, {"SMOOTH": smooth}, False, out) == figures  # back at HEAD's value
