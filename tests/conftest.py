"""Test-suite switches.

Tests marked `vllm` (tests/test_vllm_engine.py) are skipped where vLLM is not installed; the
vLLM environment runs them: `python3 -m scope_lib.bootstrap test-vllm`.

Tests marked `slow` (every HumanEval reference solution through the sandbox, every benchmark's
perturbed answers graded wrong, SmolLM2 on a HumanEval slice, a registry batch killed at random
points and rerun, two-process training for GRPO beside the default suite's SCOPE) are skipped
unless SCOPE_SLOW=1 is set; `pytest -m slow` with SCOPE_SLOW=1 runs only them. They keep the
default suite under 15 minutes on 2 CPU cores.
"""

import importlib.util
import os
from pathlib import Path

import pytest
import torch

# One torch thread: tests start helper processes (verifier workers, servers, accelerate ranks),
# and on a 2-core machine two OpenMP threads per process thrash (a smoke build took 25 s
# with 2 threads against 1 s with 1).
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if importlib.util.find_spec("vllm") is None:  # the default environment: no vLLM (docs in scope_lib/bootstrap.py)
        skip_vllm = pytest.mark.skip(reason="needs vLLM: python3 -m scope_lib.bootstrap test-vllm runs it")
        for item in items:
            if "vllm" in item.keywords:
                item.add_marker(skip_vllm)
    if os.environ.get("SCOPE_SLOW") == "1":
        return
    skip_slow = pytest.mark.skip(reason="slow test: set SCOPE_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


# Tiny worlds built by tests are cached inside the repository (git-ignored), never in $HOME,
# and subprocesses started by tests inherit the same cache.
os.environ.setdefault("SCOPE_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "scope"))


@pytest.fixture(scope="session")
def notebook_smoke(tmp_path_factory):
    """The numbered notebooks' smoke runs, each executed at most once per session (tests/helpers/notebook_smoke.py)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent / "helpers"))
    from notebook_smoke import NotebookSmoke

    return NotebookSmoke(tmp_path_factory.mktemp("notebook_smoke"))
