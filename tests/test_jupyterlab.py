"""`python3 -m scope_lib.bootstrap lab`: JupyterLab at the repository root serves every numbered
notebook as a notebook, and the results page, with the project's settings.

Starts the server the lab job starts (loopback, a token), reads each notebook through the
server's contents API, both the .ipynb and its jupytext .py pair, reads the results page and
the settings the frontend gets (Markdown Preview and Jupytext Notebook as default viewers),
and stops the server.
"""

import json
import os
import secrets
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from scope_lib.bootstrap import JOBS

sys.path.insert(0, str(Path(__file__).resolve().parent / "helpers"))
from lab_server import wait_until_serving  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

pytest.importorskip("jupyterlab")
pytest.importorskip("jupytext")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, token: str | None):
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    port, token = _free_port(), secrets.token_hex(16)
    runtime = tmp_path_factory.mktemp("jupyter-runtime")
    command = [sys.executable, *JOBS["lab"], f"--port={port}", f"--IdentityProvider.token={token}",
               "--ServerApp.port_retries=0", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime), "JUPYTER_CONFIG_DIR": str(runtime / "config")}
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(server, f"{base}/api/status", lambda url: _get(url, token), timeout_s=90, interval_s=0.5,
                           output=lambda: server.stderr.read().decode()[-2000:])
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert server.returncode is not None  # stopped


def _has_parameters_cell(model: dict) -> bool:
    return any("parameters" in cell.get("metadata", {}).get("tags", []) for cell in model["content"]["cells"])


def test_every_numbered_notebook_opens_as_a_notebook_with_parameters(lab):
    base, token = lab
    assert len(NOTEBOOKS) >= 10
    for name in NOTEBOOKS:
        for path in (name, name.replace(".ipynb", ".py")):  # the notebook and its jupytext pair
            model = _get(f"{base}/api/contents/notebooks/{path}?content=1&type=notebook", token)
            assert model["type"] == "notebook", path
            assert _has_parameters_cell(model), f"{path}: no cell tagged 'parameters'"


def test_the_server_wants_its_token(lab):
    base, _ = lab
    with pytest.raises(urllib.error.HTTPError) as error:
        _get(f"{base}/api/contents/notebooks/{NOTEBOOKS[0]}", None)
    assert error.value.code == 403


def test_the_root_is_the_repository_and_the_results_page_is_served(lab):
    base, token = lab
    page = _get(f"{base}/api/contents/figures/README.md?content=1&type=file&format=text", token)
    assert page["type"] == "file" and "![" in page["content"]  # the page, with its figures embedded
    readme = _get(f"{base}/api/contents/README.md?content=0", token)
    assert readme["path"] == "README.md"


def test_markdown_opens_in_preview_and_py_pairs_as_notebooks_by_default(lab):
    base, token = lab
    settings = _get(f"{base}/lab/api/settings/@jupyterlab/docmanager-extension:plugin", token)
    viewers = settings["schema"]["properties"]["defaultViewers"]["default"]
    assert viewers == {"markdown": "Markdown Preview", "python": "Jupytext Notebook"}
    assert json.loads(settings["raw"] or "{}").get("defaultViewers") is None  # a default, not a user setting
