"""The notebooks' shared set-up (scope_lib.notebook.nb): defaults read from a notebook's parameters cell
(git HEAD's), which parameters count as changed, the variant folder's name, where outputs go,
papermill parameters the notebook does not declare, the smoke registry, the parameter record
beside each artefact that the results page prints, and `show_committed`."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from scope_lib.notebook import nb, params as nb_params, report
from scope_lib.common import plotting  # noqa: E402

NOTEBOOK = '''# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
# ---

# %% [markdown]
# # 99 · a test notebook

# %% tags=["parameters"]
SCALE = "tiny"
SMOKE = False
SEEDS = [0, 1, 2]
SMOOTH = {smooth}
FIGURES_DIR = "figures"

# %%
print(SCALE)
'''


@pytest.fixture
def notebooks(tmp_path):
    """A notebooks folder holding one paired `.py` whose SMOOTH default is random."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    smooth = int(np.random.default_rng(0).integers(2, 50))
    (folder / "99_test_notebook.py").write_text(NOTEBOOK.format(smooth=smooth))
    return folder, smooth


def values(smooth, **changes):
    return {"SCALE": "tiny", "SMOKE": False, "SEEDS": [0, 1, 2], "SMOOTH": smooth, "FIGURES_DIR": "figures", **changes}


def test_defaults_are_read_from_the_notebooks_parameters_cell(notebooks):
    folder, smooth = notebooks
    assert nb_params.notebook_defaults("99_test_notebook", folder) == values(smooth)
    with pytest.raises(ValueError, match="'98_missing' has no paired file"):
        nb_params.notebook_defaults("98_missing", folder)


def test_the_committed_notebooks_defaults_are_their_parameters_cells():
    defaults = nb_params.notebook_defaults("05_fig3_training_dynamics")
    assert defaults["FIGURES_DIR"] == "figures" and defaults["SMOKE"] is False
    assert isinstance(defaults["SEEDS"], list) and isinstance(defaults["SMOOTH"], int)


def test_changed_parameters_leave_out_smoke_and_figures_dir():
    defaults = values(5)
    assert nb_params.changed_parameters(values(5, SMOKE=True, FIGURES_DIR="/tmp/x"), defaults) == {}
    assert nb_params.changed_parameters(values(5, SEEDS=(0, 1, 2)), defaults) == {}  # a tuple equals its list
    assert nb_params.changed_parameters(values(3, SEEDS=[0, 1]), defaults) == {"SEEDS": [0, 1], "SMOOTH": 3}


def test_variant_slug_names_the_changed_parameters():
    assert nb.variant_slug({"SMOOTH": 3}) == "SMOOTH=3"
    assert nb.variant_slug({"SEEDS": [0, 1], "SMOOTH": 3}) == "SEEDS=0-1__SMOOTH=3"
    assert nb.variant_slug({"SCALE": "paper/qwen 3", "TAUS": [0.5, 2.0], "M": []}) == \
        "SCALE=paper-qwen-3__TAUS=0.5-2.0__M=empty"
    with pytest.raises(ValueError, match="at least one"):
        nb.variant_slug({})


def test_a_long_slug_is_cut_and_ends_in_a_hash_of_the_values():
    seeds = np.random.default_rng(1).permutation(60).tolist()
    slug = nb.variant_slug({"SEEDS": seeds})
    assert len(slug) <= nb.MAX_SLUG_LENGTH
    assert re.fullmatch(r"SEEDS=[0-9\-]+-[0-9a-f]{8}", slug), slug
    assert nb.variant_slug({"SEEDS": list(seeds)}) == slug  # deterministic
    other = seeds[:-2] + seeds[-1:] + seeds[-2:-1]  # same prefix, last two swapped
    assert nb.variant_slug({"SEEDS": other}) != slug


def test_output_folder_rules(tmp_path):
    figures = plotting.resolve_figures_dir("figures")
    assert nb.output_folder("figures", "figures", {}) == (figures, "notebook defaults")
    folder, why = nb.output_folder("figures", "figures", {"SMOOTH": 3})
    assert folder == figures / "variants" / "SMOOTH=3" and "non-default SMOOTH=3" in why
    folder, why = nb.output_folder("figures", "figures", {"SMOOTH": 3}, force=True)
    assert folder == figures and "SCOPE_WRITE_FIGURES=1" in why
    assert nb.output_folder(tmp_path, "figures", {"SMOOTH": 3})[0] == tmp_path  # an explicit folder, as given
    smoke = tmp_path / "smoke"
    assert nb.output_folder("figures", "figures", {}, smoke_dir=smoke)[0] == smoke
    assert nb.output_folder("figures", "figures", {"SMOOTH": 3}, smoke_dir=smoke)[0] == smoke / "variants" / "SMOOTH=3"


@pytest.mark.parametrize("text, forced", [("", False), ("0", False), ("1", True), ("true", True), ("no", False)])
def test_write_figures_environment_variable(text, forced):
    assert nb.write_figures_forced({nb.WRITE_FIGURES_ENV: text}) is forced
    assert nb.write_figures_forced({}) is False


def test_write_figures_environment_variable_rejects_other_values():
    with pytest.raises(ValueError, match="SCOPE_WRITE_FIGURES: expected 1 or 0, got 'maybe'"):
        nb.write_figures_forced({nb.WRITE_FIGURES_ENV: "maybe"})


def test_setup_sends_a_variant_to_its_folder_and_records_its_parameters(notebooks, tmp_path, capsys):
    folder, smooth = notebooks
    base = tmp_path / "figures"
    params = values(smooth + 1, FIGURES_DIR=str(base))
    # FIGURES_DIR is not its default here, so the folder is used as given ...
    ctx = nb.setup("99_test_notebook", params, notebooks_dir=folder, environ={})
    assert ctx.figures_dir == base and ctx.non_default == {"SMOOTH": smooth + 1}
    assert ctx.scale_label == "tiny" and ctx.device in ("cpu", "cuda")
    assert f"outputs: {base} (FIGURES_DIR set to {base})" in capsys.readouterr().out
    # ... and at its default, a changed parameter lands in the variant folder, unless forced.
    ctx = nb.setup("99_test_notebook", {**params, "FIGURES_DIR": "figures"}, notebooks_dir=folder, environ={})
    assert ctx.figures_dir == plotting.resolve_figures_dir("figures") / "variants" / f"SMOOTH={smooth + 1}"
    forced = nb.setup("99_test_notebook", {**params, "FIGURES_DIR": "figures"}, notebooks_dir=folder,
                      environ={nb.WRITE_FIGURES_ENV: "1"})
    assert forced.figures_dir == plotting.resolve_figures_dir("figures")
    smoke = nb.setup("99_test_notebook", values(smooth, SMOKE=True), notebooks_dir=folder, environ={})
    assert smoke.figures_dir == nb.SMOKE_FIGURES_DIR and smoke.scale_label == "tiny (smoke world)"
    with pytest.raises(ValueError, match="SMOOTH of notebook 99_test_notebook's parameters cell not given"):
        nb.setup("99_test_notebook", {k: v for k, v in params.items() if k != "SMOOTH"}, notebooks_dir=folder)


def test_context_writes_artefacts_with_their_parameters_for_the_results_page(notebooks, tmp_path):
    folder, smooth = notebooks
    figures = tmp_path / "figures"
    ctx = nb.setup("99_test_notebook", values(smooth + 2, FIGURES_DIR=str(figures)), notebooks_dir=folder, environ={})
    fig, ax = plt.subplots()
    ax.plot([1, 2], [0.1, 0.2])
    ctx.savefig(fig, "fig3_training_dynamics", caption="Mean over seeds, 95% t interval.")
    plt.close(fig)
    ctx.save_table(pd.DataFrame({"a": [1.0]}), "fig3_training_dynamics")  # same name: the caption stays
    ctx.show_claims("fig3_training_dynamics", ["- **inconclusive** — claim 7f3e"])
    record = json.loads((figures / "fig3_training_dynamics.params.json").read_text())
    assert record["parameters"]["SMOOTH"] == smooth + 2 and record["non_default"] == {"SMOOTH": smooth + 2}
    assert record["caption"] == "Mean over seeds, 95% t interval." and record["notebook"] == "99_test_notebook"
    page = report.build_results_page(str(figures)).read_text()
    expected = (f"*Mean over seeds, 95% t interval. parameters: SCALE='tiny', SMOKE=False, SEEDS=[0, 1, 2], "
                f"SMOOTH={smooth + 2} (non-default: SMOOTH={smooth + 2}).*")
    assert page.count(expected) == 1  # under the figure, with its caption ...
    assert page.index("![fig3_training_dynamics]") < page.index(expected) < page.index("claim 7f3e")
    parameters_only = f"*parameters: SCALE='tiny', SMOKE=False, SEEDS=[0, 1, 2], SMOOTH={smooth + 2} (non-default"
    assert page.index("claim 7f3e") < page.index(parameters_only)  # ... and under its claims, without it
    # A fresh run of the same notebook replaces the record (no caption left from before).
    nb.setup("99_test_notebook", values(smooth, FIGURES_DIR=str(figures)), notebooks_dir=folder,
             environ={}).save_table(pd.DataFrame({"a": [2.0]}), "fig3_training_dynamics")
    record = json.loads((figures / "fig3_training_dynamics.params.json").read_text())
    assert "caption" not in record and record["non_default"] == {}
    assert nb_params.parameters_text(record).endswith(f"SMOOTH={smooth} (notebook defaults)")


# --- defaults from git's HEAD, papermill's injected parameters, the smoke registry ---------------


def _git(folder, *args):
    subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                   check=True, capture_output=True)


def test_defaults_come_from_the_committed_parameters_cell_not_the_working_tree(tmp_path, capsys):
    """An edit to the parameters cell (what Lab autosaves into the .py) is a variant until committed."""
    repo = tmp_path / "repo"
    folder = repo / "notebooks"
    folder.mkdir(parents=True)
    smooth = int(np.random.default_rng(2).integers(2, 50))
    (folder / "99_test_notebook.py").write_text(NOTEBOOK.format(smooth=smooth))
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "notebook")
    edited = NOTEBOOK.format(smooth=smooth + 1).replace('FIGURES_DIR = "figures"', 'FIGURES_DIR = "figures"\nNEW = 1')
    (folder / "99_test_notebook.py").write_text(edited)
    assert nb_params.notebook_defaults("99_test_notebook", folder)["SMOOTH"] == smooth + 1  # the working tree ...
    defaults, source = nb_params.committed_defaults("99_test_notebook", folder)
    assert source == "HEAD" and defaults == {**values(smooth), "NEW": 1}  # ... HEAD's, a new one at its own
    ctx = nb.setup("99_test_notebook", {**values(smooth + 1), "NEW": 1}, notebooks_dir=folder, environ={})
    assert ctx.non_default == {"SMOOTH": smooth + 1}
    assert ctx.figures_dir == plotting.resolve_figures_dir("figures") / "variants" / f"SMOOTH={smooth + 1}"
    assert "defaults: the parameters cell at git HEAD" in capsys.readouterr().out
    # committed, the edit is the default; a file HEAD does not hold falls back to the working tree
    _git(repo, "commit", "-qam", "new default")
    assert nb_params.committed_defaults("99_test_notebook", folder) == ({**values(smooth + 1), "NEW": 1}, "HEAD")
    (folder / "98_untracked.py").write_text(NOTEBOOK.format(smooth=smooth))
    assert nb_params.committed_defaults("98_untracked", folder) == (values(smooth), "working tree")


def test_the_repositorys_notebooks_defaults_are_read_from_head():
    defaults, source = nb_params.committed_defaults("10_dpaw_weights_by_step")
    assert source == "HEAD" and defaults["INTERACTIVE"] is False and defaults["TOP_GROUPS"] == 3


def test_variant_folder_reads_like_the_parameter():
    assert nb.variant_slug({"TOP_GROUPS": 2}) == "TOP_GROUPS=2"
    assert nb.variant_slug({"METHOD": "no_dpaw", "TOP_GROUPS": 2}) == "METHOD=no_dpaw__TOP_GROUPS=2"


def test_a_papermill_parameter_the_notebook_does_not_declare_is_refused(notebooks):
    folder, smooth = notebooks
    injected = "# Parameters\nSMOOTH = 3\nNOPE_PARAM = 1\n"
    assert nb_params.injected_parameters({"In": ["", "SCALE = 'tiny'", injected, "x = 1"]}) == ["SMOOTH", "NOPE_PARAM"]
    assert nb_params.injected_parameters({"In": ["", "# Parameters are set above", "x = 1"]}) == []
    assert nb_params.injected_parameters({}) == []
    with pytest.raises(ValueError, match=r"NOPE_PARAM not declared by notebook 99_test_notebook's parameters cell"):
        nb.setup("99_test_notebook", {**values(smooth), "NOPE_PARAM": 1, "In": ["", injected]},
                 notebooks_dir=folder, environ={})
    nb.setup("99_test_notebook", {**values(3), "In": ["", "# Parameters\nSMOOTH = 3\n"]}, notebooks_dir=folder,
             environ={})  # declared: accepted


def test_a_smoke_run_trains_into_its_own_registry(notebooks, monkeypatch):
    from scope_lib.experiments.registry import runs_dir

    folder, smooth = notebooks
    monkeypatch.delenv("SCOPE_RUNS_DIR", raising=False)
    monkeypatch.delenv(nb.WRITE_FIGURES_ENV, raising=False)
    monkeypatch.setattr(nb, "_smoke_registry_set", [])
    nb.setup("99_test_notebook", values(smooth, SMOKE=True), notebooks_dir=folder)
    assert runs_dir() == nb.SMOKE_RUNS_DIR
    nb.setup("99_test_notebook", values(smooth), notebooks_dir=folder)  # the same kernel, SMOKE back to False
    assert "SCOPE_RUNS_DIR" not in os.environ
    monkeypatch.setenv("SCOPE_RUNS_DIR", "/somewhere/else")  # set by the batch runner or the user: kept
    nb.setup("99_test_notebook", values(smooth, SMOKE=True), notebooks_dir=folder)
    assert os.environ["SCOPE_RUNS_DIR"] == "/somewhere/else"


# --- show_committed ----------------------------------------------------------------------------


def _committed_folder(tmp_path, notebook="99_test_notebook"):
    figures = tmp_path / "figures"
    figures.mkdir()
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    fig.savefig(figures / "fig3_training_dynamics.png")
    plt.close(fig)
    claim = f"- **reproduced** — claim {np.random.default_rng(3).integers(1 << 30)}"
    (figures / "fig3_training_dynamics.claims.md").write_text(claim + "\n")
    record = {"notebook": notebook, "parameters": {"SCALE": "tiny", "SMOOTH": 5}, "non_default": {}, "caption": "Cap."}
    (figures / "fig3_training_dynamics.params.json").write_text(json.dumps(record))
    variant = {**record, "non_default": {"SMOOTH": 3}}  # written under SCOPE_WRITE_FIGURES=1: not the defaults
    (figures / "fig3_other.params.json").write_text(json.dumps(variant))
    (figures / "fig3_other.png").write_bytes((figures / "fig3_training_dynamics.png").read_bytes())
    return figures, claim


def _records(tmp_path, seconds):
    records = tmp_path / "data"
    for name, value, cpu in (("run_2026-11-28", 1.0, "Old CPU"), ("run_2026-11-28-2", seconds, "Fast CPU"),
                             ("run_2026-11-27-9", 2.0, "Older CPU")):
        (records / name).mkdir(parents=True)
        (records / name / "cpu.txt").write_text(f"CPU(s):                                  2\nModel name:   {cpu}\n")
        summary = {"notebooks": [{"notebook": "99_test_notebook.ipynb", "status": "ok", "seconds": value},
                                 {"notebook": "04_table1_main_results.ipynb", "status": "ok", "seconds": 541.0},
                                 {"notebook": "10_dpaw_weights_by_step.ipynb", "status": "ok", "seconds": 7.0}]}
        (records / name / "run_summary.json").write_text(json.dumps(summary))
    return records


@pytest.mark.parametrize("flags, shown", [("fpu sse2 avx2 avx512f avx512bw", "AMD EPYC (AVX-512), 2 CPUs"),
                                          ("fpu sse2 avx2", "AMD EPYC (AVX2, no AVX-512), 2 CPUs"),
                                          ("fpu sse2", "AMD EPYC, 2 CPUs")])
def test_cpu_text_tells_hosts_of_one_name_apart_by_their_vector_units(tmp_path, flags, shown):
    lscpu = f"CPU(s):                                  2\nModel name:                              AMD EPYC\nFlags:   {flags}\n"
    (tmp_path / "cpu.txt").write_text(lscpu)
    assert nb._cpu_text(tmp_path) == shown
    (tmp_path / "cpu.txt").write_text(f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\n2\n")  # /proc/cpuinfo
    assert nb._cpu_text(tmp_path) == shown


def test_show_committed_shows_figures_and_claims_then_the_first_run_time(tmp_path, monkeypatch, capsys):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objects: shown.extend(objects))
    figures, claim = _committed_folder(tmp_path)
    seconds = float(np.random.default_rng(4).integers(200, 2000))
    records = _records(tmp_path, seconds)
    nb.show_committed("99_test_notebook", figures_dir=figures, records_dir=records, environ={})
    images = [o for o in shown if isinstance(o, IPython.display.Image)]
    texts = [o.data for o in shown if isinstance(o, IPython.display.Markdown)]
    assert [image.data for image in images] == [(figures / "fig3_training_dynamics.png").read_bytes()]  # not the variant
    assert texts[0].startswith("*Cap. parameters: SCALE='tiny', SMOOTH=5 (notebook defaults).*")
    assert texts[1].strip() == claim
    out = capsys.readouterr().out
    assert f"first run: {seconds / 60:.0f} min ({seconds:.0f} s) in the main job of " in out
    assert "run_2026-11-28-2 on Fast CPU, 2 CPUs" in out  # the latest record, not the last by name
    # a notebook that reads another's runs says so
    assert "reading runs notebook 04 had trained" in nb.first_run_line("10_dpaw_weights_by_step", records)


def test_show_committed_with_nothing_committed_or_in_a_batch_run(tmp_path, monkeypatch, capsys):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objects: shown.extend(objects))
    empty = tmp_path / "empty"
    empty.mkdir()
    nb.show_committed("99_test_notebook", figures_dir=empty, records_dir=tmp_path / "none", environ={})
    assert capsys.readouterr().out.splitlines() == [
        f"committed results: none for 99_test_notebook in {empty} yet (run the cells below to make them)",
        "first run: no run record in data/run_*/ to say how long it takes"]
    figures, _ = _committed_folder(tmp_path)
    nb.show_committed("99_test_notebook", figures_dir=figures, environ={nb.BATCH_ENV: "1"})
    assert shown == [] and capsys.readouterr().out.splitlines() == [
        "committed results: not shown in a batch run (this run's own figures follow)"]


def test_show_committed_on_the_repository_imports_no_torch():
    code = ("import sys; from unittest import mock; import IPython.display as d; shown = []\n"
            "with mock.patch.object(d, 'display', lambda *o: shown.extend(o)):\n"
            "    from scope_lib.notebook import nb; nb.show_committed('10_dpaw_weights_by_step', environ={})\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "print(sum(isinstance(o, d.Image) for o in shown))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "1"  # the committed nb10_weights_by_step.png
    assert any(line.startswith("first run: ") and "data/run_" in line for line in lines)


# --- plain papermill, for real ------------------------------------------------------------------

PAPERMILL_NOTEBOOK = '''# %% tags=["parameters"]
SCALE = "tiny"
SMOKE = False
SMOOTH = 5
FIGURES_DIR = {figures!r}

# %%
import pandas as pd
from scope_lib.notebook import nb

ctx = nb.setup("97_papermill", globals(), notebooks_dir={folder!r})
ctx.save_table(pd.DataFrame({{"smooth": [SMOOTH]}}), "fig3_training_dynamics")
'''


@pytest.fixture(scope="module")
def papermill_notebook(tmp_path_factory):
    """A notebook that runs nb.setup and writes one table, with the kernel of this interpreter."""
    jupytext = pytest.importorskip("jupytext")
    pytest.importorskip("papermill")
    from scope_lib.notebook.runner import resolve_kernel_name

    folder = tmp_path_factory.mktemp("papermill")
    figures = folder / "figs"
    text = PAPERMILL_NOTEBOOK.format(figures=str(figures), folder=str(folder))
    (folder / "97_papermill.py").write_text(text)
    jupytext.write(jupytext.reads(text, fmt="py:percent"), str(folder / "97_papermill.ipynb"))
    return folder, figures, resolve_kernel_name()


def _papermill(folder, kernel, *parameters):
    command = [sys.executable, "-m", "papermill", str(folder / "97_papermill.ipynb"), str(folder / "out.ipynb"),
               "-k", kernel, "--language", "python", "--cwd", str(folder), "--no-progress-bar"]
    for name, value in parameters:
        command += ["-p", name, value]
    # the kernel imports the scope_lib under test, wherever the environment's editable install points
    root = str(Path(nb.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def test_plain_papermill_fails_on_an_undeclared_parameter_naming_it(papermill_notebook):
    folder, figures, kernel = papermill_notebook
    done = _papermill(folder, kernel, ("SMOKE", "True"), ("NOPE_PARAM", "1"))
    assert done.returncode != 0
    assert "NOPE_PARAM not declared by notebook 97_papermill" in done.stdout + done.stderr
    assert not figures.exists()  # nothing written


def test_plain_papermill_variant_writes_its_folder_and_results_page(papermill_notebook):
    folder, figures, kernel = papermill_notebook
    smooth = int(np.random.default_rng(5).integers(6, 60))
    done = _papermill(folder, kernel, ("SMOOTH", str(smooth)))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    variant = figures / "variants" / f"SMOOTH={smooth}"
    assert (variant / "fig3_training_dynamics.csv").exists() and not (figures / "fig3_training_dynamics.csv").exists()
    page = (variant / "README.md").read_text()
    assert f"**Parameter variant `SMOOTH={smooth}`**" in page and re.search(rf"^\|\s+{smooth} \|$", page, re.M)


# --- smoke values beside the parameters -------------------------------------------------------

SMOKE_CELL = '''# %% tags=["parameters"]
SCALE = "tiny"  # smoke: "tiny_routes_smoke"
SMOKE = False
SEEDS = [0, 1, 2]  # smoke: [{seed}]; a note after the value
LABEL = "a;b"  # smoke: "c;d"
SMOOTH = 5
FIGURES_DIR = "figures"

# %%
print(SCALE)
'''


def test_smoke_values_are_read_from_the_comment_beside_each_parameter(tmp_path):
    seed = int(np.random.default_rng(7).integers(3, 100))
    path = tmp_path / "99_smoke.py"
    path.write_text(SMOKE_CELL.format(seed=seed))
    declared = nb_params.declared_parameters(path)
    assert nb_params.smoke_values(declared) == {"SCALE": "tiny_routes_smoke", "SEEDS": [seed], "LABEL": "c;d"}
    assert declared["SEEDS"]["value"] == [0, 1, 2] and "smoke" not in declared["SMOOTH"]
    # what the runner injects: the smoke values, SMOKE, then an explicit parameter over its smoke value
    assert nb_params.smoke_parameters(path, {"SEEDS": [9]}) == {"SCALE": "tiny_routes_smoke", "SEEDS": [9],
                                                                "LABEL": "c;d", "SMOKE": True}


@pytest.mark.parametrize("line", ["SEEDS = [0]  # smoke: [0", "SMOKE = False  # smoke: True"])
def test_a_smoke_comment_without_a_literal_or_on_smoke_itself_is_refused(tmp_path, line):
    path = tmp_path / "99_bad.py"
    path.write_text(f'# %% tags=["parameters"]\n{line}\n')
    with pytest.raises(ValueError, match="smoke"):
        nb_params.declared_parameters(path)


def test_setup_of_a_smoke_run_takes_the_smoke_values_left_at_their_defaults(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    seed = int(np.random.default_rng(11).integers(3, 100))
    (folder / "99_smoke.py").write_text(SMOKE_CELL.format(seed=seed))
    # SMOKE typed in Lab: every parameter at its default takes its smoke value, in the kernel's namespace too
    namespace = {"SCALE": "tiny", "SMOKE": True, "SEEDS": [0, 1, 2], "LABEL": "a;b", "SMOOTH": 5, "FIGURES_DIR": "figures"}
    ctx = nb.setup("99_smoke", namespace, notebooks_dir=folder, environ={})
    assert namespace["SEEDS"] == [seed] and namespace["SCALE"] == "tiny_routes_smoke" and namespace["LABEL"] == "c;d"
    assert ctx.params["SEEDS"] == [seed] and ctx.non_default == {} and ctx.figures_dir == nb.SMOKE_FIGURES_DIR
    assert ctx.scale_label == "tiny (smoke world)"  # the smoke world's scale is labelled by the one it stands in for
    # a value changed by hand, or injected by papermill, wins over its smoke value and makes a variant
    namespace = {"SCALE": "tiny", "SMOKE": True, "SEEDS": [1], "LABEL": "a;b", "SMOOTH": 5, "FIGURES_DIR": "figures",
                 "In": ["", "# Parameters\nSMOKE = True\nLABEL = \"a;b\"\n"]}
    ctx = nb.setup("99_smoke", namespace, notebooks_dir=folder, environ={})
    assert namespace["SEEDS"] == [1] and namespace["LABEL"] == "a;b" and namespace["SCALE"] == "tiny_routes_smoke"
    assert ctx.non_default == {"SEEDS": [1], "LABEL": "a;b"}
    assert ctx.figures_dir == nb.SMOKE_FIGURES_DIR / "variants" / nb.variant_slug(ctx.non_default)
    # not a smoke run: the smoke values are not looked at
    namespace = {"SCALE": "tiny", "SMOKE": False, "SEEDS": [0, 1, 2], "LABEL": "a;b", "SMOOTH": 5, "FIGURES_DIR": "figures"}
    assert nb.setup("99_smoke", namespace, notebooks_dir=folder, environ={}).non_default == {}
    assert namespace["SEEDS"] == [0, 1, 2]


def test_smoke_scales_are_the_smoke_config_of_their_scale():
    from scope_lib.experiments.grid import SMOKE_SCALES, experiment_config

    assert SMOKE_SCALES == {"tiny_routes_smoke": "tiny", "tiny_smoke": "tiny_chain", "tiny_code_smoke": "tiny_code"}
    for smoke_scale, scale in SMOKE_SCALES.items():
        assert experiment_config(smoke_scale, "opd", 3) == experiment_config(scale, "opd", 3, smoke=True)


def test_captions_are_read_from_the_file_beside_the_notebook(tmp_path):
    word = f"w{np.random.default_rng(5).integers(1 << 30)}"
    (tmp_path / "99_test_notebook.md").write_text(f"# Captions\n\nprose\n\n## fig_a\n\nFirst line,\n{word} second.\n\n## fig_b\nOne.\n")
    assert nb.captions("99_test_notebook", tmp_path) == {"fig_a": f"First line, {word} second.", "fig_b": "One."}
    assert nb.captions("98_none", tmp_path) == {}
    # the repository's: the figures of notebooks 02 and 03 have theirs, and a missing one is named
    ctx = nb.Context("03_eq45_dpaw_weights", {}, {}, {}, tmp_path, "", "tiny", "cpu")
    assert ctx.caption("eq4_regime").startswith("Each point: the mean ESS fraction") and "  " not in ctx.caption("eq4_regime")
    assert set(nb.captions("02_fig1b_error_recovery")) == {"fig1b_error_recovery", "nb02_recovery_mechanism"}
    with pytest.raises(KeyError, match="no '## nope' caption in notebooks/captions/03_eq45_dpaw_weights.md"):
        ctx.caption("nope")
