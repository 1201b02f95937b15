"""The notebooks' shared set-up (scope_lib.nb): defaults read from a notebook's parameters cell,
which parameters count as changed, the variant folder's name, where outputs go, and the
parameter record beside each artefact that the results page prints."""

import json
import re

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from scope_lib import nb, plotting, report  # noqa: E402

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
    smooth = int(np.random.default_rng().integers(2, 50))
    (folder / "99_test_notebook.py").write_text(NOTEBOOK.format(smooth=smooth))
    return folder, smooth


def values(smooth, **changes):
    return {"SCALE": "tiny", "SMOKE": False, "SEEDS": [0, 1, 2], "SMOOTH": smooth, "FIGURES_DIR": "figures", **changes}


def test_defaults_are_read_from_the_notebooks_parameters_cell(notebooks):
    folder, smooth = notebooks
    assert nb.notebook_defaults("99_test_notebook", folder) == values(smooth)
    with pytest.raises(ValueError, match="'98_missing' has no paired file"):
        nb.notebook_defaults("98_missing", folder)


def test_the_committed_notebooks_defaults_are_their_parameters_cells():
    defaults = nb.notebook_defaults("05_fig3_training_dynamics")
    assert defaults["FIGURES_DIR"] == "figures" and defaults["SMOKE"] is False
    assert isinstance(defaults["SEEDS"], list) and isinstance(defaults["SMOOTH"], int)


def test_changed_parameters_leave_out_smoke_and_figures_dir():
    defaults = values(5)
    assert nb.changed_parameters(values(5, SMOKE=True, FIGURES_DIR="/tmp/x"), defaults) == {}
    assert nb.changed_parameters(values(5, SEEDS=(0, 1, 2)), defaults) == {}  # a tuple equals its list
    assert nb.changed_parameters(values(3, SEEDS=[0, 1]), defaults) == {"SEEDS": [0, 1], "SMOOTH": 3}


def test_variant_slug_names_the_changed_parameters():
    assert nb.variant_slug({"SMOOTH": 3}) == "SMOOTH=3"
    assert nb.variant_slug({"SEEDS": [0, 1], "SMOOTH": 3}) == "SEEDS=0-1__SMOOTH=3"
    assert nb.variant_slug({"SCALE": "paper/qwen 3", "TAUS": [0.5, 2.0], "M": []}) == \
        "SCALE=paper-qwen-3__TAUS=0.5-2.0__M=empty"
    with pytest.raises(ValueError, match="at least one"):
        nb.variant_slug({})


def test_a_long_slug_is_cut_and_ends_in_a_hash_of_the_values():
    seeds = np.random.default_rng().permutation(60).tolist()
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
    assert nb.parameters_text(record).endswith(f"SMOOTH={smooth} (notebook defaults)")
