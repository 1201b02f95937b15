"""Every training notebook runs headlessly through the batch runner with smoke parameters and
writes its figures (PNG + PDF) and tables (CSV + Markdown), changes no file git tracks (nor
adds one it does not ignore), and prints no worker process's progress bars into its output."""

import nbformat

EXPECTED = {
    "00": ["nb00_calibration.png", "nb00_calibration.pdf", "nb00_calibration.csv", "nb00_calibration.md"],
    "01": ["fig1a_passk_paradox.png", "fig1a_passk_paradox.pdf", "fig1a_passk_paradox.csv"],
    "04": ["table1_main_results_avg.csv", "table1_main_results_avg.md", "table1_main_results_pass.csv"],
    "05": ["fig3_training_dynamics.png", "fig3_training_dynamics.pdf", "fig3_training_dynamics.csv"],
    "06": ["fig4_passk_curves.png", "fig4_passk_curves.pdf", "fig4_passk_curves.csv"],
    "07": ["fig5_dpaw_ablations.png", "fig5_dpaw_ablations.pdf", "fig5_dpaw_ablations.csv"],
    "08": ["fig6_weight_temperature.png", "fig6_weight_temperature.pdf", "fig6_weight_temperature.csv"],
    "09": ["table8_step_time.png", "table8_step_time.csv", "table8_step_time.md",  # + the committed bench record's
           "table8_bench_overlap.png", "table8_bench_step_time.csv"],  # synchronous-vs-overlapped section
    "10": ["nb10_weights_by_step.png", "nb10_weights_by_step.pdf", "nb10_weights_by_step.csv", "nb10_weights_by_step.md"],
    "11": ["table2_code.png", "table2_code.pdf", "table2_code_avg.csv", "table2_code_avg.md", "table2_code.claims.md"],
}


def test_training_notebooks_smoke(notebook_smoke):
    # The session's smoke runs (tests/helpers/notebook_smoke.py: its own registry and figures folder).
    results = list(notebook_smoke.results(EXPECTED).values())
    figures = notebook_smoke.figures
    failed = [r.describe_failure() for r in results if not r.ok]
    assert not failed, failed
    assert notebook_smoke.status_after == notebook_smoke.status_before, \
        "the notebook runs changed or added files in the repository"
    for result in results:  # worker processes draw nothing; their progress is the kernel's widgets
        executed = nbformat.read(result.output_path, as_version=4)
        streams = "".join(output.get("text", "") for cell in executed.cells for output in cell.get("outputs", [])
                          if output.get("output_type") == "stream")
        for raw in ("\x1b[", "Loading weights", "Writing model shards"):
            assert raw not in streams, f"{result.notebook}: {raw!r} in its printed output"
    for number, files in EXPECTED.items():
        for name in files:
            path = figures / name
            assert path.exists() and path.stat().st_size > 0, f"notebook {number} did not write {name}"
