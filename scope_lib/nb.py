"""The set-up every numbered notebook shares, and where a run's outputs go.

    ctx = nb.setup("05_fig3_training_dynamics", globals())

`setup` applies the shared plot style, runs torch on one CPU thread at tiny scale, prints
the paper-scale notice, and decides the output folder from the notebook's parameters
against the defaults of its committed parameters cell (`notebooks/<notebook>.py`):

- every parameter at its default (SMOKE and FIGURES_DIR aside): FIGURES_DIR itself;
- some parameter changed, e.g. `papermill ... -p SMOOTH 3`: `<FIGURES_DIR>/variants/<slug>`,
  the slug naming the changed parameters (`SMOOTH=3`), so a variant never overwrites the
  committed `figures/`;
- `SCOPE_WRITE_FIGURES=1` in the environment: FIGURES_DIR even with changed parameters
  (for regenerating the committed figures under new defaults on purpose);
- FIGURES_DIR set to anything but its default: that folder, as given;
- SMOKE with the default FIGURES_DIR: `notebooks/executed/figures` (where the batch runner
  puts smoke output), never `figures/`, then the rules above.

The returned `Context` writes every artefact through `ctx.savefig`, `ctx.save_table` and
`ctx.show_claims`, which also record the parameters beside it (`<name>.params.json`); the
results page (`report.build_results_page`) prints them under each figure and claims block.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scope_lib import plotting

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
SMOKE_FIGURES_DIR = DEFAULT_NOTEBOOKS_DIR / "executed" / "figures"  # as run_notebooks.smoke_destinations
WRITE_FIGURES_ENV = "SCOPE_WRITE_FIGURES"
VARIANTS_FOLDER = "variants"
NOT_COMPARED = ("SMOKE", "FIGURES_DIR")  # neither changes what a figure shows, only its size or place
MAX_SLUG_LENGTH = 80
RECORD_SUFFIX = ".params.json"


def notebook_defaults(notebook: str, notebooks_dir: str | os.PathLike = DEFAULT_NOTEBOOKS_DIR) -> dict[str, Any]:
    """{name: default value} of the parameters cell of `<notebooks_dir>/<notebook>.py`, in order."""
    from scope_lib.run_notebooks import declared_parameters

    path = Path(notebooks_dir) / f"{notebook}.py"
    if not path.exists():
        raise ValueError(f"notebook: {notebook!r} has no paired file {path}")
    return {name: info["value"] for name, info in declared_parameters(path).items()}


def _plain(value: Any) -> Any:
    """Tuples as lists, at any depth, so `(0, 1)` and `[0, 1]` compare equal."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def changed_parameters(values: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters whose value differs from the default, SMOKE and FIGURES_DIR aside, in
    the order of `defaults`. A tuple equals the list with the same items."""
    return {name: values[name] for name in defaults if name not in NOT_COMPARED and _plain(values[name]) != _plain(defaults[name])}


def _value_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "-".join(_value_text(item) for item in value) if value else "empty"
    if isinstance(value, dict):
        return "-".join(f"{k}-{_value_text(v)}" for k, v in value.items()) if value else "empty"
    return str(value)


def variant_slug(changed: Mapping[str, Any]) -> str:
    """Folder name of a parameter variant: `NAME=value` per changed parameter, joined by `__`
    (`SEEDS=0-1__SMOOTH=3`); characters other than letters, digits and `.=-+` become `-`. A slug
    longer than MAX_SLUG_LENGTH is cut and ends in 8 hex digits of a hash of the full values."""
    if not changed:
        raise ValueError("changed: a variant needs at least one changed parameter")
    parts = [f"{name}={_value_text(value)}" for name, value in changed.items()]
    slug = "__".join(re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9.=+\-]", "-", part)).strip("-") for part in parts)
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


def parameters_text(record: Mapping[str, Any]) -> str:
    """One line naming the parameters of an artefact's record (FIGURES_DIR left out)."""
    shown = ", ".join(f"{name}={value!r}" for name, value in record["parameters"].items() if name != "FIGURES_DIR")
    changed = record.get("non_default") or {}
    tail = "non-default: " + ", ".join(f"{n}={v!r}" for n, v in changed.items()) if changed else "notebook defaults"
    return f"parameters: {shown} ({tail})"


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
        return path

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
        from scope_lib import report

        text = report.show_claims(name, lines, figures_dir=str(self.figures_dir))
        self.record(name)
        return text


def setup(notebook: str, params: Mapping[str, Any], *, notebooks_dir: str | os.PathLike = DEFAULT_NOTEBOOKS_DIR,
          environ: Mapping[str, str] | None = None) -> Context:
    """The shared set-up of notebook `notebook` (its file stem) with parameter values read from
    `params` (the notebook's `globals()`); prints where its outputs go and why."""
    defaults = notebook_defaults(notebook, notebooks_dir)
    missing = [name for name in defaults if name not in params]
    if missing:
        raise ValueError(f"params: {', '.join(missing)} of notebook {notebook}'s parameters cell not given")
    values = {name: params[name] for name in defaults}
    changed = changed_parameters(values, defaults)
    smoke = bool(values.get("SMOKE", False))
    folder, reason = output_folder(values.get("FIGURES_DIR", "figures"), defaults.get("FIGURES_DIR", "figures"),
                                   changed, smoke_dir=SMOKE_FIGURES_DIR if smoke else None,
                                   force=write_figures_forced(environ))
    plotting.use_style()
    import torch

    scale = str(values.get("SCALE", ""))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and scale in ("tiny", "tiny_code"):
        # The tiny models are too small to gain from a second thread; on a shared 2-core machine one
        # thread generated 5x faster than two (measured, notebook 03), since idle-spinning threads fight for cores.
        torch.set_num_threads(1)
    if scale.startswith("paper"):
        print("paper scale: expects GPUs and the Hugging Face hub (the models are downloaded by load_world)")
    print(f"outputs: {_shown(folder)} ({reason})")
    return Context(notebook=notebook, params=values, defaults=defaults, non_default=changed, figures_dir=folder,
                   reason=reason, scale_label=f"{scale} (smoke world)" if smoke else scale, device=device)
