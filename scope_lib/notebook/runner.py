"""Batch runner for the numbered notebooks (`python -m scope_lib.notebook.runner`).

Executes `notebooks/NN_*.ipynb` with papermill, in number order, and writes each executed
copy to an ignored output folder (default `notebooks/executed/`), never over the source.

    python -m scope_lib.notebook.runner                      # every notebook, tiny scale
    python -m scope_lib.notebook.runner 04 05 -p SEEDS "[0, 1, 2]"
    python -m scope_lib.notebook.runner --smoke --keep-going # smoke sizes, as the tests do
    python -m scope_lib.notebook.runner --list               # what would run, with parameters
    python -m scope_lib.notebook.runner --sync               # jupytext-sync every .py/.ipynb pair

Where it goes beyond plain `papermill`:
- Parameters are checked against the notebook's `parameters`-tagged cell before anything
  runs: papermill only warns about an undeclared parameter, so a typo would silently run the
  defaults. A notebook without exactly one parameters cell, or whose parameters cell
  assigns anything but literals, is an error too.
- `--smoke` injects, into each notebook, SMOKE=True and the smoke value of every parameter
  that has one (its `# smoke: <literal>` comment in the parameters cell,
  `scope_lib.notebook.params.smoke_parameters`); a parameter given with `-p` wins over its smoke
  value. Every notebook declares `SMOKE = False`; its code never branches on it.
- A smoke run never writes toy numbers where the real ones live: its figures go to
  `<out>/figures` (FIGURES_DIR; the committed `figures/` is refused) and its runs to the
  registry `<out>/runs` ($SCOPE_RUNS_DIR of the kernel), not the shared `runs/`.
- A parameter variant never overwrites the committed results: a notebook run with a
  parameter off its default (SMOKE and FIGURES_DIR aside) writes to
  `<FIGURES_DIR>/variants/<slug>` (`figures/variants/SMOOTH=3`), the rules of `scope_lib.notebook.nb`
  (`SCOPE_WRITE_FIGURES=1` writes to FIGURES_DIR itself). After the run, each folder written
  to gets its results page (`<folder>/README.md`), so `figures/README.md` is rebuilt only by
  a run that wrote to `figures/`.
- Each notebook is paired with a jupytext `py:percent` file; when the two hold different
  cells (a reviewer edited the text form) the pair is synced first, so the edit is what
  runs. Pairs are compared by content, not modification time, and `--list` reads the `.py`
  without syncing, so neither a fresh clone nor a read-only command rewrites a tracked file.
- Defaults are the committed ones (`scope_lib.notebook.params.committed_defaults`: the parameters cell at
  git's HEAD), as in the notebooks' own set-up, so the runner's variant folder and the
  notebook's agree.
- The kernel is the interpreter running this module (the project's venv), not whatever
  `python3` kernelspec a user directory happens to hold; see `resolve_kernel_name`.
- On failure the notebook, the cell (index in the source notebook, its first line) and the
  exception are named, a summary table is written to `<out>/run_summary.json`, and the exit
  status is non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from scope_lib.notebook import nb, report
from scope_lib.notebook.params import (FIGURES_PARAMETER, SMOKE_PARAMETER, changed_parameters, check_parameters,
                                 committed_defaults, declared_parameters, parse_parameter_value, run_defaults,
                                 smoke_parameters, smoke_values)
from scope_lib.common.plotting import resolve_figures_dir
from scope_lib.common.paths import REPO_ROOT

DEFAULT_NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
NOTEBOOK_PATTERN = re.compile(r"^(\d{2})_[A-Za-z0-9_\-]+$")  # NN_<artefact>_<slug>
COMMITTED_FIGURES_DIR = REPO_ROOT / "figures"  # the committed results: never written by a smoke run
BATCH_ENV = "SCOPE_NOTEBOOK_BATCH"  # set for the kernels of a batch run (scope_lib.notebook.nb.BATCH_ENV)
# A kernelspec we install into the venv (sys.prefix/share/jupyter) when the default
# `python3` spec would not run this interpreter; never into the user's home directory.
VENV_KERNEL_NAME = "scope-venv"
# jupyter_client swaps these bare argv[0] names for sys.executable of the launching process.
_PYTHON_ALIASES = {"python", f"python{sys.version_info[0]}", "python%i.%i" % sys.version_info[:2]}


@dataclass
class NotebookResult:
    """Outcome of one notebook: status is "ok", "failed", or "skipped" (not run after an
    earlier failure without keep_going). The cell fields are set when a cell raised;
    `cell_index` counts cells of the source notebook (0-based, markdown included)."""

    notebook: str
    status: str
    seconds: float
    output_path: str | None = None
    cell_index: int | None = None
    cell_first_line: str | None = None
    exec_count: int | None = None
    ename: str | None = None
    evalue: str | None = None
    figures_dir: str | None = None  # where the notebook wrote its artefacts (None: it declares no FIGURES_DIR)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def describe_failure(self) -> str:
        if self.status != "failed":
            return ""
        where = ""
        if self.cell_index is not None:
            where = f" at cell {self.cell_index} (In [{self.exec_count}]: {self.cell_first_line!r})"
        return f"notebook {self.notebook} failed{where}: {self.ename}: {self.evalue}"


# --- discovery and syncing -------------------------------------------------------------


def discover_notebooks(notebooks_dir: Path | str = DEFAULT_NOTEBOOKS_DIR) -> list[Path]:
    """`NN_*.ipynb` paths in `notebooks_dir`, sorted by number then name. A paired `NN_*.py`
    whose `.ipynb` does not exist yet is listed under the `.ipynb` name it syncs to."""
    notebooks_dir = Path(notebooks_dir)
    if not notebooks_dir.is_dir():
        raise ValueError(f"notebooks_dir: {notebooks_dir} is not a directory")
    stems = set()
    for path in notebooks_dir.iterdir():
        if path.suffix == ".ipynb" or (path.suffix == ".py" and _is_paired_py(path)):
            if NOTEBOOK_PATTERN.match(path.stem):
                stems.add(path.stem)
    return [notebooks_dir / f"{stem}.ipynb" for stem in sorted(stems, key=lambda s: (int(s[:2]), s))]


def _is_paired_py(path: Path) -> bool:
    """A py:percent file paired with an ipynb (jupytext header names the formats)."""
    try:
        head = path.read_text(encoding="utf-8")[:2000]
    except OSError:
        return False
    return "jupytext" in head and "ipynb" in head


def select_notebooks(notebooks: Sequence[Path], names: Iterable[str | int] | None) -> list[Path]:
    """Pick notebooks by number (`4`, `"04"`), stem (`"04_table1_main_results"`) or file
    name; None or empty selects all. Order follows `notebooks`, duplicates dropped."""
    if not names:
        return list(notebooks)
    chosen: set[Path] = set()
    for name in names:
        key = str(name).strip()
        key = key[: -len(".ipynb")] if key.endswith(".ipynb") else key
        key = key[: -len(".py")] if key.endswith(".py") else key
        key = Path(key).name
        if key.isdigit():
            matches = [path for path in notebooks if int(path.stem[:2]) == int(key)]
        else:
            matches = [path for path in notebooks if path.stem == key]
        if not matches:
            available = ", ".join(path.stem for path in notebooks) or "(none)"
            raise ValueError(f"names: no notebook matches {name!r}; available: {available}")
        chosen.update(matches)
    return [path for path in notebooks if path in chosen]


def _cell_contents(cells) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(cell.cell_type, cell.source.strip(), tuple(cell.get("metadata", {}).get("tags", []))) for cell in cells]


def pair_differs(notebook: Path) -> bool:
    """Whether the `.ipynb` and its jupytext `.py` pair hold different cells (type, source or
    tags); the header (jupytext's version among it) and outputs do not count. A missing
    `.ipynb` differs."""
    import jupytext
    import nbformat

    if not notebook.exists():
        return True
    text_form = jupytext.read(str(notebook.with_suffix(".py")))
    ipynb = nbformat.read(str(notebook), as_version=4)
    return _cell_contents(text_form.cells) != _cell_contents(ipynb.cells)


def sync_pair(notebook: Path, *, force: bool = False) -> bool:
    """Run `jupytext --sync` on the pair when the `.py` and the `.ipynb` hold different cells
    (`pair_differs`: by content, never by modification time, so a fresh clone or a `touch`
    rewrites nothing), or always with force. jupytext then takes the cells from the newer
    file and keeps the outputs of the ipynb. Returns whether a sync ran."""
    paired_py = notebook.with_suffix(".py")
    if not paired_py.exists():
        if not notebook.exists():
            raise ValueError(f"notebook: neither {notebook} nor {paired_py} exists")
        return False
    if not (force or pair_differs(notebook)):
        return False
    import jupytext.cli

    jupytext.cli.jupytext(["--sync", "--quiet", str(paired_py)])
    return True


# --- kernel ----------------------------------------------------------------------------


def _spec_runs_this_interpreter(argv: Sequence[str]) -> bool:
    if not argv:
        return False
    if argv[0] in _PYTHON_ALIASES:
        return True
    # Compare the bin directory, not the resolved file: a venv's python is a symlink to the
    # base interpreter, and what makes it the venv is the path it was started from.
    return Path(os.path.abspath(argv[0])).parent == Path(os.path.abspath(sys.executable)).parent


def resolve_kernel_name(kernel_name: str | None = None) -> str:
    """Name of a kernelspec that runs `sys.executable`.

    With None: `python3` when its spec runs this interpreter (ipykernel ships one inside
    the venv whose argv[0] `python` jupyter_client maps to sys.executable), otherwise a
    `scope-venv` spec installed under `sys.prefix` (inside the venv, never the home
    directory). An explicit name is used as given, with a warning when it runs another
    interpreter (a deliberate choice, e.g. a GPU environment).
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    if kernel_name is not None:
        try:
            spec = manager.get_kernel_spec(kernel_name)
        except NoSuchKernel as err:
            raise ValueError(f"kernel: no kernelspec named {kernel_name!r}") from err
        if not _spec_runs_this_interpreter(spec.argv):
            print(
                f"warning: kernel {kernel_name!r} runs {spec.argv[0]}, not {sys.executable}",
                file=sys.stderr,
            )
        return kernel_name
    for candidate in ("python3", VENV_KERNEL_NAME):
        try:
            if _spec_runs_this_interpreter(manager.get_kernel_spec(candidate).argv):
                return candidate
        except NoSuchKernel:
            pass
    from ipykernel.kernelspec import install

    install(kernel_name=VENV_KERNEL_NAME, display_name=f"Python ({sys.prefix})", prefix=sys.prefix)
    return VENV_KERNEL_NAME


# --- execution -------------------------------------------------------------------------


def _source_cell_index(executed_index: int, notebook: Path, injected: bool) -> int:
    """Map papermill's cell index (in the executed notebook, which has an extra
    `injected-parameters` cell right after the parameters cell) back to the source."""
    if not injected:
        return executed_index
    import nbformat

    source = nbformat.read(str(notebook), as_version=4)
    tags = [cell.get("metadata", {}).get("tags", []) for cell in source.cells]
    if any("injected-parameters" in t for t in tags):
        return executed_index  # papermill replaces an existing injected cell in place
    parameters_index = next(i for i, t in enumerate(tags) if "parameters" in t)
    return executed_index - 1 if executed_index > parameters_index + 1 else executed_index


def execute_one(
    notebook: Path,
    parameters: dict[str, Any],
    out_dir: Path,
    kernel_name: str,
    *,
    progress_bar: bool = True,
    execution_timeout: float | None = None,
) -> NotebookResult:
    """Execute one notebook with papermill (cwd = its folder) into `out_dir`."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output_path = (out_dir / notebook.name).resolve()
    if output_path == notebook.resolve():
        raise ValueError(f"out_dir: {out_dir} would overwrite the source notebook {notebook}")
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(notebook),
            str(output_path),
            parameters=parameters,
            kernel_name=kernel_name,
            language="python",  # every notebook here is Python, kernelspec metadata or not
            cwd=str(notebook.parent),
            progress_bar=progress_bar,
            execution_timeout=execution_timeout,
        )
    except PapermillExecutionError as err:
        source = err.source or ""
        return NotebookResult(
            notebook=notebook.name,
            status="failed",
            seconds=time.perf_counter() - start,
            output_path=str(output_path),
            cell_index=_source_cell_index(err.cell_index, notebook, injected=bool(parameters)),
            cell_first_line=source.strip().splitlines()[0] if source.strip() else "",
            exec_count=err.exec_count,
            ename=err.ename,
            evalue=err.evalue,
        )
    except Exception as err:  # a dead kernel or a timeout has no failing cell to name
        return NotebookResult(
            notebook=notebook.name,
            status="failed",
            seconds=time.perf_counter() - start,
            output_path=str(output_path) if output_path.exists() else None,
            ename=type(err).__name__,
            evalue=str(err),
        )
    return NotebookResult(
        notebook=notebook.name,
        status="ok",
        seconds=time.perf_counter() - start,
        output_path=str(output_path),
    )


def run_notebooks(
    names: Iterable[str | int] | None = None,
    parameters: dict[str, Any] | None = None,
    smoke: bool = False,
    out_dir: Path | str | None = None,
    keep_going: bool = False,
    *,
    notebooks_dir: Path | str = DEFAULT_NOTEBOOKS_DIR,
    kernel_name: str | None = None,
    progress_bar: bool = True,
    execution_timeout: float | None = None,
    sync: bool = True,
) -> list[NotebookResult]:
    """Execute the selected notebooks in number order; returns one result per notebook.

    Every notebook's parameters are validated before the first one runs, so a typo fails
    fast (ValueError) instead of after an hour of notebooks. `parameters` go to every
    selected notebook; `smoke=True` adds SMOKE=True and each notebook's smoke values under
    them (`notebook.params.smoke_parameters`). Executed copies go to `out_dir`
    (default `<notebooks_dir>/executed`) and a summary to `<out_dir>/run_summary.json`.
    A smoke run writes its figures to `<out_dir>/figures` (unless FIGURES_DIR is given; the
    committed `figures/` is refused) and trains into the registry `<out_dir>/runs`; with a
    parameter off its default, either base folder becomes `<base>/variants/<slug>`
    (`figures_destination`, recorded in each result's `figures_dir`).
    Without keep_going, notebooks after the first failure are reported as "skipped".
    """
    notebooks_dir = Path(notebooks_dir)
    out_dir = Path(out_dir) if out_dir is not None else notebooks_dir / "executed"
    parameters = dict(parameters or {})
    if smoke:
        figures = figures_dir_of_run(parameters, smoke, out_dir)
        if figures.resolve() == COMMITTED_FIGURES_DIR.resolve():
            if FIGURES_PARAMETER in parameters:
                raise ValueError(f"{FIGURES_PARAMETER}: {parameters[FIGURES_PARAMETER]!r} is the committed {COMMITTED_FIGURES_DIR}; "
                                 "a smoke run would overwrite its results with toy numbers: leave it unset or pick another folder")
            # --out . (the repository root): the smoke figures would land in <out>/figures, the committed ones
            raise ValueError(f"out_dir: {str(out_dir)!r} puts the smoke figures in {figures}, the committed "
                             f"{COMMITTED_FIGURES_DIR}; a smoke run would overwrite its results with toy numbers: "
                             "pick another --out folder")
    if out_dir.resolve() == notebooks_dir.resolve():
        raise ValueError(
            f"out_dir: {out_dir} is the notebooks folder; executed copies would overwrite the sources"
        )
    selected = select_notebooks(discover_notebooks(notebooks_dir), names)
    if not selected:
        raise ValueError(f"notebooks_dir: no NN_*.ipynb notebooks in {notebooks_dir}")
    if sync:
        for notebook in selected:
            sync_pair(notebook)
    per_notebook: dict[Path, dict[str, Any]] = {}
    destinations: dict[Path, Path] = {}
    for notebook in selected:
        check_parameters(notebook, parameters)
        per_notebook[notebook] = smoke_parameters(notebook, parameters) if smoke else dict(parameters)
        destination = figures_destination(notebook, parameters, smoke, out_dir)
        if destination is not None:
            destinations[notebook] = destination
            if FIGURES_PARAMETER not in parameters and destination != resolve_default_figures(notebook):
                # a smoke run or a parameter variant: say where, so no notebook writes to figures/
                per_notebook[notebook][FIGURES_PARAMETER] = str(destination)
    kernel_name = resolve_kernel_name(kernel_name)

    # The kernel inherits this process's environment: a smoke run gets a registry of its own.
    saved_runs_dir = os.environ.get("SCOPE_RUNS_DIR")
    saved_batch = os.environ.get(BATCH_ENV)
    if smoke:
        os.environ["SCOPE_RUNS_DIR"] = str(smoke_destinations(out_dir)[1])
    os.environ[BATCH_ENV] = "1"  # scope_lib.notebook.nb.show_committed shows nothing in a batch run
    try:
        results = _execute_all(selected, per_notebook, out_dir, kernel_name, keep_going=keep_going,
                               progress_bar=progress_bar, execution_timeout=execution_timeout)
        for notebook, result in zip(selected, results):
            if notebook in destinations and result.status != "skipped":
                result.figures_dir = str(destinations[notebook])
    finally:
        for name, saved in (("SCOPE_RUNS_DIR", saved_runs_dir), (BATCH_ENV, saved_batch)):
            if saved is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = saved
    write_summary(results, out_dir, {**parameters, SMOKE_PARAMETER: True} if smoke else parameters)
    return results


def _execute_all(selected: Sequence[Path], per_notebook: dict[Path, dict[str, Any]], out_dir: Path, kernel_name: str, *,
                 keep_going: bool, progress_bar: bool, execution_timeout: float | None) -> list[NotebookResult]:
    results: list[NotebookResult] = []
    for position, notebook in enumerate(selected, start=1):
        if results and not results[-1].ok and not keep_going:
            results.append(NotebookResult(notebook=notebook.name, status="skipped", seconds=0.0))
            continue
        print(f"[{position}/{len(selected)}] {notebook.name} ...", file=sys.stderr, flush=True)
        result = execute_one(
            notebook,
            per_notebook[notebook],
            out_dir,
            kernel_name,
            progress_bar=progress_bar,
            execution_timeout=execution_timeout,
        )
        line = f"[{position}/{len(selected)}] {notebook.name}: {result.status} in {result.seconds:.1f} s"
        print(line, file=sys.stderr, flush=True)
        if not result.ok:
            print(result.describe_failure(), file=sys.stderr, flush=True)
        results.append(result)
    return results


def smoke_destinations(out_dir: Path | str) -> tuple[Path, Path]:
    """(figures folder, run registry) of a smoke run writing executed copies to `out_dir`."""
    out_dir = Path(out_dir).resolve()
    return out_dir / "figures", out_dir / "runs"


def figures_dir_of_run(parameters: dict[str, Any], smoke: bool, out_dir: Path | str) -> Path:
    """The folder the notebooks of a run write their artefacts to (and the results page to)."""
    if FIGURES_PARAMETER in parameters:
        return resolve_figures_dir(parameters[FIGURES_PARAMETER])
    return smoke_destinations(out_dir)[0] if smoke else resolve_figures_dir("figures")


def resolve_default_figures(notebook: Path) -> Path:
    """The folder of the notebook's default FIGURES_DIR."""
    return resolve_figures_dir(declared_parameters(notebook)[FIGURES_PARAMETER]["value"])


def figures_destination(notebook: Path, parameters: dict[str, Any], smoke: bool, out_dir: Path | str) -> Path | None:
    """Where the notebook writes its artefacts when run with `parameters`, by the rules of
    `scope_lib.notebook.nb` (a parameter off its committed default, given here or edited into the
    notebook and not committed, sends them to a `variants/<slug>` folder; a smoke run writes
    under `<out_dir>/figures`, its smoke values as the defaults); None for a notebook without
    FIGURES_DIR."""
    declared = declared_parameters(notebook)
    if FIGURES_PARAMETER not in declared:
        return None
    # What the kernel will run: the notebook's own values (the working tree), then the given ones
    # (a smoke run's smoke values under them); compared with the committed defaults (git HEAD),
    # or a smoke run's smoke values, as nb.setup compares them.
    smoke_table = smoke_values(declared)
    values = {**{name: info["value"] for name, info in declared.items()}, **(smoke_table if smoke else {}), **parameters}
    paired_py = notebook.with_suffix(".py")
    defaults = committed_defaults(notebook.stem, notebook.parent)[0] if paired_py.exists() else \
        {name: info["value"] for name, info in declared.items()}
    changed = changed_parameters(values, run_defaults(defaults, smoke_table, smoke))
    folder, _ = nb.output_folder(parameters.get(FIGURES_PARAMETER, defaults[FIGURES_PARAMETER]),
                                 defaults[FIGURES_PARAMETER], changed,
                                 smoke_dir=smoke_destinations(out_dir)[0] if smoke else None,
                                 force=nb.write_figures_forced())
    return folder


def write_summary(results: Sequence[NotebookResult], out_dir: Path, parameters: dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "run_summary.json"
    payload = {
        "parameters": {k: repr(v) for k, v in parameters.items()},
        "total_seconds": sum(r.seconds for r in results),
        "notebooks": [asdict(r) for r in results],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


def format_summary(results: Sequence[NotebookResult]) -> str:
    width = max([len("notebook")] + [len(r.notebook) for r in results])
    lines = [f"{'notebook':<{width}}  {'status':<7}  {'seconds':>8}"]
    lines += [f"{r.notebook:<{width}}  {r.status:<7}  {r.seconds:>8.1f}" for r in results]
    lines.append(f"{'total':<{width}}  {'':<7}  {sum(r.seconds for r in results):>8.1f}")
    return "\n".join(lines)


# --- command line ----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scope_lib.notebook.runner",
        description="Execute the numbered notebooks with papermill (executed copies go to --out).",
    )
    parser.add_argument("names", nargs="*", help="notebook numbers or names (default: all)")
    parser.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
        help="parameter for every selected notebook; VALUE is a Python literal or a string",
    )
    flags = [
        ("--smoke", "pass SMOKE=True and each parameter's smoke value (the smoke world, seconds)"),
        ("--keep-going", "run the remaining notebooks after a failure"),
        ("--no-progress", "hide papermill's per-cell progress bar"),
        ("--list", "list the notebooks and their parameters, run nothing"),
        ("--sync", "jupytext-sync every .py/.ipynb pair, run nothing"),
    ]
    for flag, help_text in flags:
        parser.add_argument(flag, action="store_true", help=help_text)
    parser.add_argument("--out", default=None, help="output folder (default: <notebooks-dir>/executed)")
    parser.add_argument("--notebooks-dir", default=str(DEFAULT_NOTEBOOKS_DIR), help="NN_*.ipynb folder")
    parser.add_argument("--kernel", default=None, help="kernelspec (default: one running this python)")
    parser.add_argument("--timeout", type=float, default=None, help="per-cell timeout in seconds")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    parameters = {key: parse_parameter_value(value) for key, value in args.parameter}
    try:
        notebooks = select_notebooks(discover_notebooks(args.notebooks_dir), args.names)
        if args.sync:
            for notebook in notebooks:
                sync_pair(notebook, force=True)
                print(f"synced {notebook.name}")
            return 0
        if args.list:
            if not notebooks:
                print(f"no NN_*.ipynb notebooks in {args.notebooks_dir}")
            for notebook in notebooks:  # read only: the .py where there is one, no sync
                paired_py = notebook.with_suffix(".py")
                declared = declared_parameters(paired_py if paired_py.exists() else notebook)
                listing = ", ".join(f"{name}={info['default']}" + (f" (smoke: {info['smoke']!r})" if "smoke" in info else "")
                                    for name, info in declared.items())
                print(f"{notebook.name}: {listing}")
            return 0
        results = run_notebooks(
            args.names,
            parameters,
            smoke=args.smoke,
            out_dir=args.out,
            keep_going=args.keep_going,
            notebooks_dir=args.notebooks_dir,
            kernel_name=args.kernel,
            progress_bar=not args.no_progress,
            execution_timeout=args.timeout,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_summary(results))
    failures = [r for r in results if r.status == "failed"]
    for failure in failures:
        print(failure.describe_failure(), file=sys.stderr)
    if Path(args.notebooks_dir).resolve() == DEFAULT_NOTEBOOKS_DIR.resolve():
        # One results page per folder written to (a variant folder gets its own; figures/README.md
        # is rebuilt only by a run that wrote to figures/), embedding whatever artefacts exist now.
        for folder in dict.fromkeys(r.figures_dir for r in results if r.ok and r.figures_dir):
            print(f"results page: {report.build_results_page(folder)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
