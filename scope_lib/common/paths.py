"""Where the repository's own folders are, found from this file's place in the checkout (the
package is installed editable, so it always sits inside the repository it came with). Every
module that reads `configs/`, `worlds/`, `data/`, `figures/` or `notebooks/` builds its paths from these."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGS_DIR = REPO_ROOT / "configs"
WORLDS_DIR = REPO_ROOT / "worlds"
