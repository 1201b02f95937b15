"""A numbered notebook's parameters: its `parameters` cell, their committed defaults and smoke values.

The one place that reads a notebook's parameters, beneath the notebook set-up (`scope_lib.notebook.nb`),
the batch runner (`scope_lib.notebook.runner`) and the results page (`scope_lib.notebook.report`), which
all ask it and never each other for them:

- `declared_parameters` reads the single cell tagged `parameters` (of the `.ipynb` or its
  jupytext `.py` pair): one `NAME = literal` per line, papermill cannot recompute derived
  values, so anything computed belongs in a later cell;
- a parameter's **smoke value** stands beside it, as the line's comment `# smoke: <literal>`
  (prose may follow after `;`):

      SEEDS = [0, 1, 2, 3, 4]  # smoke: [0]
      NUM_PROBLEMS = 512  # smoke: 12; training problems sampled

  A smoke run (`SMOKE = True`, the one parameter that says "this is a smoke run") takes these
  values for every parameter left at its default, so the notebook's code never branches on
  SMOKE: `smoke_parameters` is what the runner injects, `apply_smoke` what `nb.setup` does in
  a kernel where SMOKE was set by hand (Lab) or by plain `papermill -p SMOKE True`;
- `committed_defaults` are the values of the parameters cell at git's HEAD, so an edit in Lab
  makes a variant, never a new default; `changed_parameters` compares values with them;
- `injected_parameters`/`check_injected` refuse a papermill parameter the cell does not declare
  (papermill itself only warns); `check_parameters` does the same before a batch run.
"""

from __future__ import annotations

import ast
import io
import os
import re
import subprocess
import tokenize
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from scope_lib.common.paths import REPO_ROOT

DEFAULT_NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
SMOKE_PARAMETER = "SMOKE"  # True: a seconds-sized run on the smoke world, with each parameter's smoke value
FIGURES_PARAMETER = "FIGURES_DIR"  # where a notebook writes its artefacts (relative to the repository root)
NOT_COMPARED = (SMOKE_PARAMETER, FIGURES_PARAMETER)  # neither changes what a figure shows, only its size or place
# The first line of the cell papermill injects after the parameters cell (papermill's Python translator).
INJECTED_HEADER = "# Parameters"
VARIANTS_FOLDER = "variants"  # <FIGURES_DIR>/variants/<slug>: a run with parameters off their defaults
RECORD_SUFFIX = ".params.json"  # <name>.params.json beside each artefact: the parameters it came from
SMOKE_COMMENT = re.compile(r"^#\s*smoke:\s*(?P<rest>.*)$")


def parse_parameter_value(text: str) -> Any:
    """A CLI value as a Python literal when it is one (`3`, `0.5`, `True`, `[0, 1]`,
    `"tiny"`), else the raw string, so `-p SCALE tiny` needs no quoting."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


# --- the parameters cell ---------------------------------------------------------------


def declared_parameters(notebook: str | os.PathLike) -> dict[str, dict]:
    """Parameters of the notebook's single `parameters`-tagged cell, in order:
    name -> {"default": source text, "value": the literal}, plus "smoke": the literal of the
    line's `# smoke: <literal>` comment where it has one. `notebook` is the `.ipynb` or its
    jupytext `.py` pair. ValueError when the cell is missing or repeated, assigns something
    other than a literal, or a smoke comment holds no literal."""
    notebook = Path(notebook)
    if notebook.suffix == ".py":
        import jupytext

        cells = jupytext.read(str(notebook)).cells
    else:
        import nbformat

        cells = nbformat.read(str(notebook), as_version=4).cells
    return _parameters_of_cells(cells, notebook.name)


def parameters_of_text(text: str, name: str) -> dict[str, dict]:
    """`declared_parameters` of a jupytext `py:percent` text (e.g. `git show HEAD:<file>.py`);
    `name` names it in errors."""
    import jupytext

    return _parameters_of_cells(jupytext.reads(text, fmt="py:percent").cells, name)


def _comments_by_line(source: str) -> dict[int, str]:
    comments: dict[int, str] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                comments[token.start[0]] = token.string
    except (tokenize.TokenError, SyntaxError):
        pass
    return comments


def _smoke_literal(comment: str, where: str) -> tuple[bool, Any]:
    """(has a smoke value, the value) of a line's comment: `# smoke: <literal>[; prose]`."""
    match = SMOKE_COMMENT.match(comment.strip())
    if not match:
        return False, None
    rest = match.group("rest")
    ends = [i for i, char in enumerate(rest) if char == ";"] + [len(rest)]
    for end in ends:  # the shortest prefix that is a literal: a `;` inside a string literal is not its end
        try:
            return True, ast.literal_eval(rest[:end].strip())
        except (ValueError, SyntaxError):
            continue
    raise ValueError(f"{where}: smoke comment {comment.strip()!r} holds no literal after 'smoke:'")


def _parameters_of_cells(cells, name: str) -> dict[str, dict]:
    cells = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        problem = "has no cell" if not cells else f"has {len(cells)} cells"
        raise ValueError(
            f"notebook {name} {problem} tagged 'parameters'; it needs exactly one, "
            "holding its literal parameters"
        )
    source = cells[0].source
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise ValueError(f"notebook {name}: parameters cell does not parse: {err}") from err
    comments = _comments_by_line(source)
    declared: dict[str, dict] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a bare string used as a comment
        else:
            raise ValueError(
                f"notebook {name}: parameters cell line {node.lineno} is not a "
                "single `NAME = literal` assignment"
            )
        if not isinstance(target, ast.Name):
            raise ValueError(
                f"notebook {name}: parameters cell line {node.lineno} assigns to "
                "something other than a plain name"
            )
        text = ast.get_source_segment(source, value)
        try:
            literal = ast.literal_eval(value)
        except ValueError:
            raise ValueError(
                f"notebook {name}: parameter {target.id} = {text} is not a literal; "
                "compute derived values in the cell after the parameters cell"
            ) from None
        declared[target.id] = {"default": text, "value": literal}
        has_smoke, smoke = _smoke_literal(comments.get(node.end_lineno, ""), f"notebook {name}: parameter {target.id}")
        if has_smoke:
            if target.id in NOT_COMPARED:
                raise ValueError(f"notebook {name}: parameter {target.id} cannot have a smoke value")
            declared[target.id]["smoke"] = smoke
    return declared


def smoke_values(declared: Mapping[str, Mapping]) -> dict[str, Any]:
    """{name: smoke value} of the parameters of `declared_parameters` that have one."""
    return {name: info["smoke"] for name, info in declared.items() if "smoke" in info}


def smoke_parameters(notebook: str | os.PathLike, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a smoke run of `notebook` injects: each declared smoke value, SMOKE=True, then the
    `given` parameters (an explicit value wins over the smoke one). ValueError for a notebook
    that declares no SMOKE parameter."""
    declared = declared_parameters(notebook)
    if SMOKE_PARAMETER not in declared:
        raise ValueError(f"smoke: notebook {Path(notebook).name} declares no {SMOKE_PARAMETER} parameter")
    return {**smoke_values(declared), SMOKE_PARAMETER: True, **(given or {})}


def check_parameters(notebook: str | os.PathLike, parameters: Mapping[str, Any]) -> None:
    """ValueError naming each parameter the notebook does not declare."""
    declared = declared_parameters(notebook)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ValueError(
            f"parameters: {', '.join(unknown)} not declared by notebook {Path(notebook).name}; "
            f"it declares: {', '.join(declared) or '(none)'}"
        )


# --- defaults from git's HEAD ----------------------------------------------------------


def notebook_defaults(notebook: str, notebooks_dir: str | os.PathLike = DEFAULT_NOTEBOOKS_DIR) -> dict[str, Any]:
    """{name: default value} of the parameters cell of `<notebooks_dir>/<notebook>.py` in the
    working tree, in order."""
    path = Path(notebooks_dir) / f"{notebook}.py"
    if not path.exists():
        raise ValueError(f"notebook: {notebook!r} has no paired file {path}")
    return {name: info["value"] for name, info in declared_parameters(path).items()}


def _git(folder: Path, *args: str) -> str | None:
    """Output of `git -C folder args...`, or None where git is missing or the command fails."""
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def committed_text(path: str | os.PathLike) -> str | None:
    """The text of `path` as git's HEAD holds it; None outside a git work tree, without a HEAD
    commit, or for a file HEAD does not hold (new or untracked)."""
    path = Path(path).resolve()
    top = _git(path.parent, "rev-parse", "--show-toplevel")
    if not top:
        return None
    relative = path.relative_to(Path(top.strip()).resolve()).as_posix()
    return _git(path.parent, "show", f"HEAD:{relative}")


def committed_defaults(notebook: str, notebooks_dir: str | os.PathLike = DEFAULT_NOTEBOOKS_DIR) -> tuple[dict[str, Any], str]:
    """({name: default value}, where from) of the notebook's parameters: the working tree's
    parameters cell names them (that is what the kernel ran), and each takes its value from
    the parameters cell of `<notebooks_dir>/<notebook>.py` at git's HEAD. Without git, or for
    a file HEAD does not hold, the working tree's values; a parameter HEAD does not declare
    yet keeps its working-tree value. "where from" is "HEAD" or "working tree"."""
    working = notebook_defaults(notebook, notebooks_dir)
    text = committed_text(Path(notebooks_dir) / f"{notebook}.py")
    if text is None:
        return working, "working tree"
    committed = {name: info["value"] for name, info in parameters_of_text(text, f"{notebook}.py (HEAD)").items()}
    return {name: committed.get(name, value) for name, value in working.items()}, "HEAD"


# --- comparing values with the defaults ------------------------------------------------


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


def run_defaults(defaults: Mapping[str, Any], smoke: Mapping[str, Any], is_smoke: bool) -> dict[str, Any]:
    """The values a run is compared with to tell a variant: a smoke run's defaults are the smoke
    values (a smoke run at them is no variant), any other run's the committed defaults."""
    return {**defaults, **({name: value for name, value in smoke.items() if name in defaults} if is_smoke else {})}


def apply_smoke(namespace: MutableMapping[str, Any], defaults: Mapping[str, Any], smoke: Mapping[str, Any],
                keep: Iterable[str] = ()) -> dict[str, Any]:
    """Set each smoke value in `namespace` (a kernel's globals) whose parameter is still at its
    default and not in `keep` (the parameters papermill injected: an explicit value wins).
    Returns {name: smoke value} of those set."""
    keep = set(keep)
    applied = {name: value for name, value in smoke.items() if name in defaults and name not in keep
               and name in namespace and _plain(namespace[name]) == _plain(defaults[name])}
    namespace.update(applied)
    return applied


# --- papermill's injected cell ---------------------------------------------------------


def injected_parameters(namespace: Mapping[str, Any]) -> list[str]:
    """Names assigned by the last cell papermill injected into this kernel (`# Parameters`
    first, then one `NAME = value` per `-p`), read from IPython's input history (`In`) in
    `namespace`; [] when there is none (Lab, a plain script)."""
    history = namespace.get("In") or namespace.get("_ih") or []
    for source in reversed(list(history)):
        if isinstance(source, str) and source.lstrip().startswith(INJECTED_HEADER + "\n"):
            try:
                tree = ast.parse(source)
            except SyntaxError:
                return []
            return [target.id for node in tree.body if isinstance(node, ast.Assign)
                    for target in node.targets if isinstance(target, ast.Name)]
    return []


def check_injected(notebook: str, namespace: Mapping[str, Any], declared: Iterable[str]) -> None:
    """ValueError naming each parameter papermill injected that the notebook does not declare."""
    declared = list(declared)
    unknown = [name for name in injected_parameters(namespace) if name not in declared]
    if unknown:
        raise ValueError(f"parameters: {', '.join(unknown)} not declared by notebook {notebook}'s parameters cell; "
                         f"it declares: {', '.join(declared) or '(none)'} (papermill only warns about an unknown "
                         "parameter, and the run would silently use the defaults)")


def parameters_text(record: Mapping[str, Any]) -> str:
    """One line naming the parameters of an artefact's record (FIGURES_DIR left out)."""
    shown = ", ".join(f"{name}={value!r}" for name, value in record["parameters"].items() if name != FIGURES_PARAMETER)
    changed = record.get("non_default") or {}
    tail = "non-default: " + ", ".join(f"{n}={v!r}" for n, v in changed.items()) if changed else "notebook defaults"
    return f"parameters: {shown} ({tail})"
