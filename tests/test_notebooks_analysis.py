"""Notebooks 02 (Fig. 1b, Tables 6, 7, 9) and 03 (Eq. 4/5) run headlessly with smoke parameters
through the project's papermill runner and write every artefact they own; both stay thin
(their analysis lives in scope_lib.studies.recovery_analysis and scope_lib.studies.dpaw, their claims in
scope_lib.notebook.claims, their captions in notebooks/captions/)."""

import json
import re
from pathlib import Path

import jupytext
import pandas as pd
import pytest


NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
MAX_CODE_LINES = 120  # every notebook stays at or under about 120 lines of code
FIGURES = {  # the smoke world's chain task diagnoses the first error, so the mechanism figure is drawn
    "02_fig1b_error_recovery.ipynb": ["fig1b_error_recovery", "nb02_recovery_mechanism"],
    "03_eq45_dpaw_weights.ipynb": ["eq45_dpaw_weights", "eq4_student_direction_paper_vs_released"],
}
TABLES = {
    "02_fig1b_error_recovery.ipynb": ["table6_ppl_buckets", "table7_recovery_rates", "table9_case_studies",
                                      "nb02_recovery_mechanism"],
    "03_eq45_dpaw_weights.ipynb": ["eq45_weight_stats"],
}


def code_lines(notebook) -> int:
    """Non-blank lines of code cells that are not comments (markdown cells do not count, nor does the
    opening cell every numbered notebook shares, which shows the committed results)."""
    return sum(1 for cell in notebook.cells if cell.cell_type == "code" and "nb.show_committed(" not in cell.source
               for line in cell.source.splitlines() if line.strip() and not line.strip().startswith("#"))


@pytest.mark.parametrize("notebook", list(FIGURES))
def test_notebook_is_thin_and_its_pair_agrees(notebook):
    paired = jupytext.read(NOTEBOOKS / notebook.replace(".ipynb", ".py"))
    stored = jupytext.read(NOTEBOOKS / notebook)
    assert code_lines(paired) <= MAX_CODE_LINES, f"{notebook}: {code_lines(paired)} lines of code"
    assert [c.source for c in paired.cells] == [c.source for c in stored.cells], "run jupytext --sync on the pair"
    setup = [c.source for c in paired.cells if "nb.setup(" in c.source]
    assert setup and f'nb.setup("{notebook[:-len(".ipynb")]}", globals())' in setup[0]  # the shared set-up


def smoke_mentions(notebook) -> list[str]:
    """Code lines (comments aside) that name SMOKE, other than the parameters cell's declaration."""
    return [line for cell in notebook.cells if cell.cell_type == "code" for line in cell.source.splitlines()
            if "SMOKE" in line.split("#")[0] and not ("parameters" in cell.metadata.get("tags", [])
                                                      and line.startswith("SMOKE = False"))]


@pytest.mark.parametrize("notebook", sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.py")))
def test_notebook_code_never_branches_on_smoke(notebook):
    """A smoke run is the parameters' smoke values (`# smoke: ...` beside each), injected by the
    runner or nb.setup; SMOKE itself is only declared, so the runner can say "this is a smoke run"."""
    paired = jupytext.read(NOTEBOOKS / notebook)
    assert smoke_mentions(paired) == [], f"{notebook} branches on SMOKE"
    parameters = next(c for c in paired.cells if "parameters" in c.metadata.get("tags", []))
    assert "SMOKE = False" in parameters.source and "# smoke: " in parameters.source


def test_the_smoke_mention_count_sees_a_branch():
    notebook = jupytext.reads('# %% tags=["parameters"]\nSMOKE = False\nN = 3  # smoke: 1\n\n'
                              '# %%\nn = 1 if SMOKE else N\nrun(smoke=SMOKE)  # SMOKE in a comment is fine\n',
                              fmt="py:percent")
    assert smoke_mentions(notebook) == ["n = 1 if SMOKE else N", "run(smoke=SMOKE)  # SMOKE in a comment is fine"]


@pytest.fixture(scope="module")
def executed(notebook_smoke):
    """The session's smoke runs of 02 and 03 (tests/helpers/notebook_smoke.py)."""
    return notebook_smoke.root, list(notebook_smoke.results(["02", "03"]).values())


def test_both_notebooks_run(executed):
    _, results = executed
    assert [r.notebook for r in results] == list(FIGURES)
    for result in results:
        assert result.ok, result.describe_failure()


@pytest.mark.parametrize("notebook", list(FIGURES))
def test_artefacts_written(executed, notebook):
    out, _ = executed
    figures = out / "figures"
    for name in FIGURES[notebook]:
        for suffix in (".png", ".pdf"):
            path = figures / f"{name}{suffix}"
            assert path.exists() and path.stat().st_size > 1000, path
    claims = (figures / f"{FIGURES[notebook][0]}.claims.md").read_text()  # verdicts for the results page
    labels = re.findall(r"^- \*\*(.+?)\*\* — ", claims, flags=re.MULTILINE)  # one rule: a verdict or a check
    assert labels and set(labels) <= {"reproduced", "contradicted", "inconclusive", "check passed", "check failed",
                                      "check not run"}, claims
    for name in TABLES[notebook]:
        assert (figures / f"{name}.md").read_text().count("|") > 4
        assert len(pd.read_csv(figures / f"{name}.csv")) > 0
    for name in FIGURES[notebook] + TABLES[notebook]:  # nb.setup's record of the parameters beside each artefact
        record = json.loads((figures / f"{name}.params.json").read_text())
        assert record["notebook"] == notebook[:-len(".ipynb")] and record["parameters"]["SMOKE"] is True
        assert name in TABLES[notebook] or record.get("caption"), f"{name}: no caption for the results page"


def test_tables_have_the_paper_layout(executed):
    figures = executed[0] / "figures"
    table6 = pd.read_csv(figures / "table6_ppl_buckets.csv", index_col=0)
    assert list(table6.index) == ["Q1 (lowest PPL)", "Q2", "Q3", "Q4 (highest PPL)", "Overall"]
    assert table6["n"].iloc[:4].sum() == table6["n"].loc["Overall"]
    table7 = pd.read_csv(figures / "table7_recovery_rates.csv", index_col=0)
    assert list(table7.index) == [0.2, 0.4, 0.6, 0.8]
    assert {"Q1", "Q2", "Q3", "Q4", "Q1-Q4 gap"} <= set(table7.columns)
    stats = pd.read_csv(figures / "eq45_weight_stats.csv")
    assert sorted(set(stats["tau"])) == [0.5, 1.0, 2.0] and len(stats) == 9
    mechanism = pd.read_csv(figures / "nb02_recovery_mechanism.csv")
    assert {"all", "error in prefix", "error not yet in prefix"} == set(mechanism["condition"])  # both reported
    for ratio, part in mechanism.groupby("ratio"):  # the two conditions split the unconditioned prefixes
        by = part.set_index("condition")["n"]
        assert by["error in prefix"] + by["error not yet in prefix"] == by["all"]


@pytest.mark.parametrize("notebook", sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.py")))
def test_every_numbered_notebook_opens_with_the_committed_results(notebook):
    cells = jupytext.read(NOTEBOOKS / notebook).cells
    first_code = next(i for i, cell in enumerate(cells) if cell.cell_type == "code")
    assert f'nb.show_committed("{notebook[:-len(".py")]}")' in cells[first_code].source, notebook
    assert "parameters" in cells[first_code + 1].metadata.get("tags", []), "the opener comes before the parameters"
    assert cells[first_code - 1].cell_type == "markdown" and "committed results" in cells[first_code - 1].source
