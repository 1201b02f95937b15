"""JupyterLab at the repository root with the project's settings: `python -m scope_lib.notebook.lab [args]`
(what `python3 -m scope_lib.bootstrap lab` runs inside `.venv/`).

The settings live in the repository, so a fresh clone needs nothing set by hand:
`.jupyter/labconfig/default_setting_overrides.json` makes Markdown files open in Markdown
Preview (the results page `figures/README.md` renders with its figures) and `.py` files open
as notebooks through jupytext (the numbered notebooks' pairs; Open With > Editor shows any
`.py` as text), and `jupytext.toml` keeps jupytext's version out of the pairs' headers. The
folder is put first on JUPYTER_CONFIG_PATH, so a user's own settings still win over these
defaults. Arguments go to `jupyter lab`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from scope_lib.common.paths import REPO_ROOT

ROOT = REPO_ROOT
CONFIG_DIR = ROOT / ".jupyter"  # labconfig/default_setting_overrides.json
RESULTS_PAGE = "figures/README.md"
# The server's defaults: loopback, the repository root, the results page opened first.
LAB_ARGS = ["--ip=127.0.0.1", "--no-browser", f"--ServerApp.root_dir={ROOT}",
            f"--LabApp.default_url=/lab/tree/{RESULTS_PAGE}"]


def lab_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """`environ` (default: this process's) with CONFIG_DIR first on JUPYTER_CONFIG_PATH."""
    env = dict(os.environ if environ is None else environ)
    paths = [p for p in env.get("JUPYTER_CONFIG_PATH", "").split(os.pathsep) if p and Path(p) != CONFIG_DIR]
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join([str(CONFIG_DIR), *paths])
    return env


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    os.environ.update(lab_environment())
    from jupyterlab.labapp import LabApp

    LabApp.launch_instance(argv=[*LAB_ARGS, *argv])
    return 0


if __name__ == "__main__":
    sys.exit(main())
