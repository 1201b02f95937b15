"""The set-up every numbered notebook shares, and where a run's outputs go.

    ctx = nb.setup("05_fig3_training_dynamics", globals())

`setup` applies the shared plot style, runs torch on one CPU thread at tiny scale, prints
the paper-scale notice, and decides the output folder from the notebook's parameters
against the defaults of its committed parameters cell: the parameters cell of
`notebooks/<notebook>.py` as git's `HEAD` holds it (the working-tree file where there is no
git, or the file is not committed), so an edit to the parameters cell in Lab, which
jupytext autosaves into the `.py`, makes a variant, never a new default:

- every parameter at its default (SMOKE and FIGURES_DIR aside): FIGURES_DIR itself;
- some parameter changed, e.g. `papermill ... -p SMOOTH 3` or `SMOOTH = 3` typed into the
  parameters cell: `<FIGURES_DIR>/variants/<slug>`, the slug naming the changed parameters
  (`SMOOTH=3`, `TOP_GROUPS=2`), so a variant never overwrites the committed `figures/`;
- `SCOPE_WRITE_FIGURES=1` in the environment: FIGURES_DIR even with changed parameters
  (for regenerating the committed figures under new defaults on purpose);
- FIGURES_DIR set to anything but its default: that folder, as given;
- SMOKE with the default FIGURES_DIR: `notebooks/executed/figures` (where the batch runner
  puts smoke output), never `figures/`, then the rules above, with the smoke values as the
  defaults.

A smoke run (SMOKE=True) takes each parameter's smoke value (its `# smoke: <literal>` comment
in the parameters cell, `scope_lib.notebook.params`) for every parameter still at its default, and
trains into the registry `notebooks/executed/runs` ($SCOPE_RUNS_DIR, unless already set),
never the shared `runs/`. A parameter that papermill injected (`papermill ... -p NAME value`)
but the parameters cell does not declare is refused here, naming it (papermill itself only
warns). Reading the parameters cell and its committed defaults is `scope_lib.notebook.params`'.

The returned `Context` writes every artefact through `ctx.savefig`, `ctx.save_table` and
`ctx.show_claims`, which also record the parameters beside it (`<name>.params.json`) and
rebuild the results page of the folder (`<folder>/README.md`, `report.build_results_page`),
which prints them under each figure and claims block; so a run from Lab or plain papermill
leaves its folder's page in step with its artefacts, as the batch runner does.

`show_committed(notebook)` is for the first code cell of each numbered notebook (before its
parameters cell): the notebook's figures and claim lines at its defaults, from `figures/`,
and how long a first run took in the latest committed run record
(`data/run_*/run_summary.json`), shown without training anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scope_lib.notebook import params as nb_params, report
from scope_lib.common import plotting
from scope_lib.notebook.params import RECORD_SUFFIX, VARIANTS_FOLDER
from scope_lib.common.paths import REPO_ROOT

DEFAULT_NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
SMOKE_FIGURES_DIR = DEFAULT_NOTEBOOKS_DIR / "executed" / "figures"  # as runner.smoke_destinations
SMOKE_RUNS_DIR = DEFAULT_NOTEBOOKS_DIR / "executed" / "runs"  # the registry of a smoke run (as the batch runner's)
RUNS_DIR_ENV = "SCOPE_RUNS_DIR"
# Set by the batch runner (scope_lib.notebook.runner) for its kernels: show_committed shows nothing there.
BATCH_ENV = "SCOPE_NOTEBOOK_BATCH"
COMMITTED_FIGURES_DIR = REPO_ROOT / "figures"
CAPTIONS_DIR = DEFAULT_NOTEBOOKS_DIR / "captions"  # <notebook>.md: the captions of its figures, beside it
RUN_RECORDS_DIR = REPO_ROOT / "data"
WRITE_FIGURES_ENV = "SCOPE_WRITE_FIGURES"
MAX_SLUG_LENGTH = 80


def _value_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "-".join(_value_text(item) for item in value) if value else "empty"
    if isinstance(value, dict):
        return "-".join(f"{k}-{_value_text(v)}" for k, v in value.items()) if value else "empty"
    return str(value)


def variant_slug(changed: Mapping[str, Any]) -> str:
    """Folder name of a parameter variant: `NAME=value` per changed parameter, joined by `__`
    (`SEEDS=0-1__SMOOTH=3`, `TOP_GROUPS=2`); characters other than letters, digits and `_.=-+`
    become `-`. A slug longer than MAX_SLUG_LENGTH is cut and ends in 8 hex digits of a hash of
    the full values."""
    if not changed:
        raise ValueError("changed: a variant needs at least one changed parameter")
    parts = [f"{name}={_value_text(value)}" for name, value in changed.items()]
    slug = "__".join(re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9_.=+\-]", "-", part)).strip("-") for part in parts)
    if len(slug) > MAX_SLUG_LENGTH:
        digest = hashlib.sha256(json.dumps(dict(changed), sort_keys=True, default=repr).encode()).hexdigest()[:8]
        slug = slug[: MAX_SLUG_LENGTH - 9].rstrip("-_") + "-" + digest
    return slug


def write_figures_forced(environ: Mapping[str, str] | None = None) -> bool:
    """Whether SCOPE_WRITE_FIGURES asks to write changed parameters to FIGURES_DIR itself."""
    text = (os.environ if environ is None else environ).get(WRITE_FIGURES_ENV, "").strip().lower()
    if text in ("", "0", "false", "no"):
        return False
    if text in ("1", "true", "yes"):
        return True
    raise ValueError(f"{WRITE_FIGURES_ENV}: expected 1 or 0, got {text!r}")


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def output_folder(figures_dir: str | os.PathLike, default_figures_dir: str | os.PathLike, changed: Mapping[str, Any],
                  *, smoke_dir: str | os.PathLike | None = None, force: bool = False) -> tuple[Path, str]:
    """(folder, why) of a run: the rules of this module's docstring. `smoke_dir` (a smoke run's
    folder) replaces a FIGURES_DIR left at its default."""
    given = plotting.resolve_figures_dir(figures_dir)
    if given != plotting.resolve_figures_dir(default_figures_dir):
        return given, f"FIGURES_DIR set to {_shown(given)}"
    base, why = (plotting.resolve_figures_dir(smoke_dir), "smoke run") if smoke_dir is not None else (given, "")
    described = ", ".join(f"{name}={value!r}" for name, value in changed.items())
    if not changed:
        return base, ", ".join(filter(None, [why, "notebook defaults"]))
    if force:
        return base, ", ".join(filter(None, [why, f"non-default {described}, written here as {WRITE_FIGURES_ENV}=1 asks"]))
    return base / VARIANTS_FOLDER / variant_slug(changed), ", ".join(filter(None, [
        why, f"non-default {described}; {WRITE_FIGURES_ENV}=1 writes to {_shown(base)} instead"]))


def captions(notebook: str, folder: str | os.PathLike = CAPTIONS_DIR) -> dict[str, str]:
    """{artefact name: caption} of `<folder>/<notebook>.md`: each `## <name>` heading and the lines of
    the section under it, joined by single spaces ({} when the notebook has no captions file)."""
    path = Path(folder) / f"{notebook}.md"
    if not path.exists():
        return {}
    sections: dict[str, list[str]] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), [])
        elif current is not None and line.strip():
            current.append(line.strip())
    return {name: " ".join(lines) for name, lines in sections.items()}


@dataclass
class Context:
    """What a notebook's set-up decided: parameter values, the output folder and the device."""

    notebook: str
    params: dict[str, Any]
    defaults: dict[str, Any]
    non_default: dict[str, Any]
    figures_dir: Path
    reason: str
    scale_label: str
    device: str
    _written: set[str] = field(default_factory=set, repr=False)

    @property
    def smoke(self) -> bool:
        return bool(self.params.get("SMOKE", False))

    def caption(self, name: str) -> str:
        """The caption of artefact `name` kept beside the notebook (`captions`); KeyError naming the file."""
        found = captions(self.notebook)
        if name not in found:
            raise KeyError(f"no '## {name}' caption in {_shown(CAPTIONS_DIR / (self.notebook + '.md'))}")
        return found[name]

    def record(self, name: str, **extra: Any) -> Path:
        """Write `<figures_dir>/<name>.params.json` (notebook, parameters, non-default ones and
        `extra`, e.g. a caption); a second call for the same name in this run adds to it."""
        path = self.figures_dir / f"{name}{RECORD_SUFFIX}"
        record = {"notebook": self.notebook, "parameters": self.params, "non_default": self.non_default}
        if name in self._written and path.exists():
            record = {**json.loads(path.read_text()), **record}
        record.update(extra)
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2, default=repr) + "\n")
        self._written.add(name)
        self.update_results_page()
        return path

    def update_results_page(self) -> Path:
        """Rebuild `<figures_dir>/README.md` from the artefacts there now (a variant folder's
        page says it is one), so the page never lags its figures, however the notebook ran."""
        return report.build_results_page(str(self.figures_dir))

    def savefig(self, fig, name: str, *, caption: str = "") -> tuple[Path, Path]:
        """`plotting.savefig` into this run's folder, with its parameters (and caption) recorded."""
        paths = plotting.savefig(fig, name, figures_dir=self.figures_dir)
        self.record(name, **({"caption": caption} if caption else {}))
        return paths

    def save_table(self, df, name: str, **kwargs) -> tuple[Path, Path]:
        """`plotting.save_table` into this run's folder, with its parameters recorded."""
        paths = plotting.save_table(df, name, figures_dir=self.figures_dir, **kwargs)
        self.record(name)
        return paths

    def show_claims(self, name: str, lines: list[str]) -> str:
        """`report.show_claims` into this run's folder, with its parameters recorded."""
        text = report.show_claims(name, lines, figures_dir=str(self.figures_dir))
        self.record(name)
        return text


_smoke_registry_set: list[str] = []  # the SCOPE_RUNS_DIR value setup set for a smoke run (to undo it)


def _use_smoke_registry(smoke: bool, environ: Mapping[str, str] | None) -> None:
    """A smoke run trains into SMOKE_RUNS_DIR unless SCOPE_RUNS_DIR is set already (the batch
    runner sets its own); a later default run in the same kernel gets the registry back."""
    if environ is not None:  # a caller's own mapping (tests): leave the process environment alone
        return
    current = os.environ.get(RUNS_DIR_ENV)
    if smoke and current is None:
        os.environ[RUNS_DIR_ENV] = str(SMOKE_RUNS_DIR)
        _smoke_registry_set[:] = [str(SMOKE_RUNS_DIR)]
    elif not smoke and _smoke_registry_set and current == _smoke_registry_set[0]:
        os.environ.pop(RUNS_DIR_ENV)
        _smoke_registry_set.clear()


def setup(notebook: str, params: Mapping[str, Any], *, notebooks_dir: str | os.PathLike = DEFAULT_NOTEBOOKS_DIR,
          environ: Mapping[str, str] | None = None) -> Context:
    """The shared set-up of notebook `notebook` (its file stem) with parameter values read from
    `params` (the notebook's `globals()`); prints where its outputs go and why.

    Defaults are `committed_defaults` (git's HEAD). With SMOKE set, each parameter still at its
    default takes its smoke value (`notebook.params.apply_smoke`: written into `params` when it is the
    kernel's globals, so the cells below run at smoke sizes), and the smoke values are the
    defaults a variant is told from. ValueError when papermill injected a parameter the
    notebook does not declare, or a declared one is missing from `params`."""
    committed, source = nb_params.committed_defaults(notebook, notebooks_dir)
    nb_params.check_injected(notebook, params, committed)
    missing = [name for name in committed if name not in params]
    if missing:
        raise ValueError(f"params: {', '.join(missing)} of notebook {notebook}'s parameters cell not given")
    smoke = bool(params.get(nb_params.SMOKE_PARAMETER, False))
    smoke_table = nb_params.smoke_values(nb_params.declared_parameters(Path(notebooks_dir) / f"{notebook}.py"))
    if smoke and isinstance(params, MutableMapping):
        nb_params.apply_smoke(params, committed, smoke_table, keep=nb_params.injected_parameters(params))
    values = {name: params[name] for name in committed}
    changed = nb_params.changed_parameters(values, nb_params.run_defaults(committed, smoke_table, smoke))
    folder, reason = output_folder(values.get("FIGURES_DIR", "figures"), committed.get("FIGURES_DIR", "figures"),
                                   changed, smoke_dir=SMOKE_FIGURES_DIR if smoke else None,
                                   force=write_figures_forced(environ))
    if changed and source == "HEAD":
        reason += " (defaults: the parameters cell at git HEAD)"
    _use_smoke_registry(smoke, environ)
    plotting.use_style()
    import torch

    from scope_lib.experiments.grid import SMOKE_SCALES

    scale = str(values.get("SCALE", ""))
    scale = SMOKE_SCALES.get(scale, scale)  # a smoke world's scale is labelled by the scale it stands in for
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and scale in ("tiny", "tiny_code"):
        # The tiny models are too small to gain from a second thread; on a shared 2-core machine one
        # thread generated 5x faster than two (measured, notebook 03), since idle-spinning threads fight for cores.
        torch.set_num_threads(1)
    if scale.startswith("paper"):
        print("paper scale: expects GPUs and the Hugging Face hub (the models are downloaded by load_world)")
    print(f"outputs: {_shown(folder)} ({reason})")
    if smoke and os.environ.get(RUNS_DIR_ENV):
        print(f"runs: {_shown(Path(os.environ[RUNS_DIR_ENV]))} (smoke run: not the shared registry)")
    return Context(notebook=notebook, params=values, defaults=committed, non_default=changed, figures_dir=folder,
                   reason=reason, scale_label=f"{scale} (smoke world)" if smoke else scale, device=device)


# --- what a reader sees on opening a notebook ------------------------------------------------


def _run_record_key(folder: Path) -> tuple:
    """Sort key of `data/run_<date>[-<n>]` folders: by date, then by the number after it."""
    match = re.fullmatch(r"run_(\d{4}-\d{2}-\d{2})(?:-(\d+))?", folder.name)
    return (match.group(1), int(match.group(2) or 1)) if match else ("", 0)


def _cpu_text(record_dir: Path) -> str:
    """'<model name> (<vector units>), <n> CPUs' from the record's `cpu.txt` (lscpu or
    /proc/cpuinfo output). Hypervisors often give one name ("AMD EPYC") to hosts of different
    generations, so the flags' AVX-512 or AVX2 is added where the record has them."""
    path = record_dir / "cpu.txt"
    if not path.exists():
        return "CPU not recorded"
    text = path.read_text(errors="replace")
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M | re.I)
    count = re.search(r"^CPU\(s\):\s*(\d+)\s*$", text, re.M)
    cores = count.group(1) if count else (text.strip().splitlines()[-1].strip() if text.strip() else "")
    name = model.group(1).strip() if model else "CPU model not recorded"
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M | re.I)
    if flags:
        present = set(flags.group(1).split())
        name += " (AVX-512)" if "avx512f" in present else " (AVX2, no AVX-512)" if "avx2" in present else ""
    parts = [name]
    if cores.isdigit():
        parts.append(f"{cores} CPUs")
    return ", ".join(parts)


# Notebooks that read runs another notebook trains (the shared run registry): in the main job
# they take seconds because that notebook ran first; alone on a fresh machine they train them.
READS_RUNS_OF = {"05": "04", "06": "04", "09": "04", "10": "04"}
LONG_RUN_SECONDS = 120  # a notebook this slow in the record trains (or builds) something


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min ({seconds:.0f} s)"


def first_run_line(notebook: str, records_dir: str | os.PathLike = RUN_RECORDS_DIR) -> str:
    """One line: how long notebook `notebook` took in the latest run record
    (`<records_dir>/run_*/run_summary.json`, the main job), on which CPU."""
    records = sorted((p.parent for p in Path(records_dir).glob("run_*/run_summary.json")), key=_run_record_key)
    if not records:
        return "first run: no run record in data/run_*/ to say how long it takes"

    def seconds_in(summary: dict, stem: str) -> float | None:
        return next((float(n["seconds"]) for n in summary.get("notebooks", [])
                     if n.get("notebook") == f"{stem}.ipynb" and n.get("status") == "ok"), None)

    for record in reversed(records):
        summary = json.loads((record / "run_summary.json").read_text())
        seconds = seconds_in(summary, notebook)
        if seconds is None:
            continue
        where = f"in the main job of {_shown(record)} on {_cpu_text(record)}"
        source = READS_RUNS_OF.get(notebook[:2])
        trainer = next((n for n in summary.get("notebooks", []) if source and n.get("notebook", "").startswith(source + "_")
                        and n.get("status") == "ok"), None)
        if trainer is not None:
            return (f"first run: {_duration(seconds)} {where}, reading runs notebook {source} had trained; without "
                    f"them in runs/ it trains the ones it reads first (notebook {source} trained all of its runs in "
                    f"{_duration(float(trainer['seconds']))} there)")
        kept = "; the runs it trains stay in runs/ and a rerun reuses them" if seconds >= LONG_RUN_SECONDS else ""
        return f"first run: {_duration(seconds)} {where}{kept}"
    return f"first run: notebook {notebook} is in no run record in data/run_*/ yet"


def committed_artefacts(notebook: str, figures_dir: str | os.PathLike = COMMITTED_FIGURES_DIR) -> list[str]:
    """Names of the artefacts in `figures_dir` that notebook `notebook` wrote at its defaults:
    the `<name>.params.json` records (written by `Context.record`) naming it, with no
    non-default parameter; sorted."""
    folder = Path(figures_dir)
    names = []
    for path in sorted(folder.glob(f"*{RECORD_SUFFIX}")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("notebook") == notebook and not record.get("non_default"):
            names.append(path.name[: -len(RECORD_SUFFIX)])
    return names


def show_committed(notebook_stem: str, *, figures_dir: str | os.PathLike | None = None,
                   records_dir: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None) -> None:
    """Show what notebook `notebook_stem` last wrote at its defaults to `figures/` (the committed
    results): each figure (PNG) with its caption, and its claim lines, then one line saying how
    long a first run took (`first_run_line`). Reads files only (no torch, nothing trained), so a
    reader who only wants to look waits for nothing.

    Prints one line instead when nothing is committed for this notebook yet, and one line
    only (shows nothing) inside the batch runner (SCOPE_NOTEBOOK_BATCH set by
    `scope_lib.notebook.runner`): an executed copy holds that run's own figures, not older ones
    beside them."""
    environ = os.environ if environ is None else environ
    folder = COMMITTED_FIGURES_DIR if figures_dir is None else Path(figures_dir)
    if environ.get(BATCH_ENV):
        print("committed results: not shown in a batch run (this run's own figures follow)")
        return
    from IPython.display import Image, Markdown, display

    names = committed_artefacts(notebook_stem, folder)
    shown = 0
    for name in names:
        image = folder / f"{name}.png"
        claims = folder / f"{name}.claims.md"
        record = json.loads((folder / f"{name}{RECORD_SUFFIX}").read_text())
        if image.exists():
            display(Image(filename=str(image)))
            caption = " ".join(filter(None, [record.get("caption", "").strip(), nb_params.parameters_text(record) + "."]))
            display(Markdown(f"*{caption}*"))
            shown += 1
        if claims.exists():
            display(Markdown(claims.read_text()))
            shown += 1
    if shown:
        print(f"committed results of {notebook_stem}: above, from {_shown(folder)} (run the cells below to recompute them)")
    else:
        print(f"committed results: none for {notebook_stem} in {_shown(folder)} yet (run the cells below to make them)")
    print(first_run_line(notebook_stem, RUN_RECORDS_DIR if records_dir is None else records_dir))
