"""JupyterLab in a real browser: the bootstrap's Lab, driven by Playwright in Debian's Chromium.

Starts the server the lab job of scope_lib/bootstrap.py starts (its own argument list, plus a
free port, a token and temporary HOME, Jupyter and settings folders, so nothing of the user's
is read or written), then in headless Chromium:

- opens notebook 10, types `SMOKE = True`, `INTERACTIVE = True` and a temporary FIGURES_DIR
  at the end of its parameters cell, runs every cell on a live kernel (the smoke run it trains
  goes to a temporary run registry, $SCOPE_RUNS_DIR), moves the ipywidgets step slider and
  checks that the plot is redrawn (another PNG); the edit is never saved (autosave is off for
  the temporary user), and the notebook's files are checked unchanged afterwards;
- opens the results page figures/README.md and checks that it renders (Markdown Preview) and
  that every image on it loads.

The Lab root is read from the running server, so the test holds whether the bootstrap serves
notebooks/ or the repository root.

Skipped, with the reason, where Playwright or Chromium is missing (.ci/run installs Debian's
chromium when it runs as root; Playwright comes with the `dev` extra in pyproject.toml).
Playwright never downloads a browser here: it launches the system Chromium by path.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from scope_lib.bootstrap import JOBS

sys.path.insert(0, str(Path(__file__).resolve().parent / "helpers"))
from lab_server import wait_until_serving  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "10_dpaw_weights_by_step.ipynb"
RESULTS_PAGE = ROOT / "figures" / "README.md"
# Lines typed at the end of the parameters cell: the smoke world, the slider, outputs kept out of
# the repository's figures/ (FIGURES_DIR is filled in per run).
PARAMETERS = 'SMOKE = True\nINTERACTIVE = True\nFIGURES_DIR = {figures!r}\n'
CHROMIUM_ARGS = [  # the closed network refuses Chromium's background connections; don't try them
    "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
# Settings of the temporary Lab user: no autosave (the edited notebook is never saved), no news or
# update pop-ups, every cell kept in the page (windowing would drop off-screen cells), the
# notebook's kernel started without asking.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none", "autoStartDefaultKernel": True},
}
# Upper bounds of the waits, in seconds, for a machine shared with other work: at load average 10
# on 2 cores the server took a minute to start and Lab's page over 2 minutes to open a notebook.
SERVER_START_S = 120
PAGE_WAIT_S = 240
RUN_ALL_S = 300
REDRAW_S = 90

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed (the `dev` extra of pyproject.toml brings it)")
pytest.importorskip("jupyterlab", reason="JupyterLab is not installed (the `notebooks` extra brings it)")
pytest.importorskip("ipywidgets", reason="ipywidgets is not installed (the `notebooks` extra brings it)")


def chromium_executable() -> str | None:
    """$SCOPE_CHROMIUM, or Debian's chromium on PATH."""
    given = os.environ.get("SCOPE_CHROMIUM")
    if given:
        return given if os.access(given, os.X_OK) else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, token: str):
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (its kernels shut down with it), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class Lab:
    """A running server: its address, token, root folder (as the server reports it) and the
    temporary home holding its log."""

    def __init__(self, base: str, token: str, root: Path, home: Path):
        self.base, self.token, self.root, self.home = base, token, root, home

    @contextlib.contextmanager
    def evidence(self, page, name: str):
        """On a failure inside, a screenshot of `page` and the server's log are named in the error."""
        try:
            yield
        except Exception as error:
            shot = self.home / f"{name}.png"
            with contextlib.suppress(Exception):
                page.screenshot(path=str(shot))
            raise AssertionError(f"{error}\n(screenshot: {shot}; server log: {self.home / 'server.log'})") from error

    def relative(self, path: Path) -> str | None:
        """`path` as the server names it (relative to its root, '/'-separated); None outside the root."""
        try:
            return path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return None

    def url(self, path: str) -> str:
        # reset: a fresh workspace, so a page does not reopen what an earlier page of the test had open
        return f"{self.base}/lab/tree/{urllib.request.quote(path)}?reset&token={self.token}"


@pytest.fixture(scope="module")
def chromium_path():
    path = chromium_executable()
    if path is None and os.environ.get("SCOPE_CHROMIUM"):
        pytest.skip(f"SCOPE_CHROMIUM={os.environ['SCOPE_CHROMIUM']} is not an executable")
    if path is None:
        pytest.skip("no Chromium: install Debian's `chromium` (apt-get install chromium; .ci/run does as root) "
                    "or point SCOPE_CHROMIUM at one")
    return path


@contextlib.contextmanager
def start_lab(home: Path):
    """The bootstrap's Lab (JOBS['lab'] of scope_lib/bootstrap.py) run as a temporary user whose
    HOME, Jupyter folders and run registry are under `home`; yields a Lab, stops it on exit."""
    settings = home / "lab-settings"
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    runtime = home / "runtime"
    env = {
        **os.environ,
        "HOME": str(home), "USERPROFILE": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"), "XDG_DATA_HOME": str(home / ".local" / "share"),
        "JUPYTER_CONFIG_DIR": str(home / "jupyter-config"), "JUPYTER_DATA_DIR": str(home / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(runtime), "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "lab-workspaces"), "IPYTHONDIR": str(home / "ipython"),
        "MPLCONFIGDIR": str(home / "matplotlib"),
        "SCOPE_RUNS_DIR": str(home / "runs"),  # the notebook's smoke run: never the shared runs/
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    port, token = _free_port(), secrets.token_hex(16)
    command = [sys.executable, *JOBS["lab"], f"--port={port}", f"--IdentityProvider.token={token}",
               "--ServerApp.port_retries=0", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               # Lab checkpoints a file it opens: into `home`, not .ipynb_checkpoints/ beside the file
               f"--FileCheckpoints.checkpoint_dir={home / 'checkpoints'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # as the bootstrap's main() adds for root
    log = home / "server.log"
    with open(log, "wb") as sink:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(server, f"{base}/api/status", lambda url: _get(url, token), timeout_s=SERVER_START_S,
                           interval_s=0.3, output=lambda: log.read_text(errors="replace")[-3000:])
        # the root the server serves, from its own runtime record (jpserver-<pid>.json)
        record = json.loads(next(runtime.glob("jpserver-*.json")).read_text())
        yield Lab(base, token, Path(record["root_dir"]).resolve(), home)
    finally:
        _stop(server)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, chromium_path):
    with start_lab(tmp_path_factory.mktemp("lab-home")) as running:
        yield running


@pytest.fixture(scope="module")
def browser(lab, chromium_path):
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(PAGE_WAIT_S * 1000)  # a loaded 2-core machine loads Lab slowly
    try:
        yield context.new_page()
    finally:
        context.close()


def parameters_cell_index() -> int:
    """Index of notebook 10's cell tagged 'parameters' among its cells."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    tagged = [i for i, cell in enumerate(cells) if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{NOTEBOOK.name}: expected one cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


def add_parameter_lines(page, text: str) -> None:
    """Type `text` at the end of the notebook's parameters cell, as a user edits it in Lab."""
    cell = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").nth(parameters_cell_index())
    assert "INTERACTIVE" in cell.inner_text(), f"cell {parameters_cell_index()} is not the parameters cell"
    cell.locator(".cm-content").click()  # edit mode
    page.keyboard.press("Control+End")
    page.keyboard.insert_text("\n" + text.rstrip("\n"))  # no key events: no auto-indent or bracket closing
    page.keyboard.press("Escape")  # command mode


# Per code cell: its prompt ("[3]:", "[*]:", "[ ]:"), and the text of any error or stderr output.
CELL_STATE_JS = """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-CodeCell')].map(cell => ({
    prompt: (cell.querySelector('.jp-InputPrompt') || {}).textContent || '',
    errors: [...cell.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]')]
        .map(e => e.textContent).filter(t => /Traceback \\(most recent call last\\)|^\\w*Error: /m.test(t)),
}))"""


KERNEL_IDLE_JS = """() => [...document.querySelectorAll('.jp-StatusBar-Widget')]
    .some(bar => /\\| Idle/.test(bar.textContent) && !/No Kernel/.test(bar.textContent))"""


def run_all_cells(page) -> None:
    """Once the status bar shows the notebook's kernel idle, Run > Run All Cells from the menu
    bar; wait until every code cell has an execution number."""
    page.wait_for_function(KERNEL_IDLE_JS)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    deadline = time.monotonic() + RUN_ALL_S
    while True:
        kernel_choice = page.locator(".jp-Dialog", has_text="Select Kernel")
        if kernel_choice.count():  # Lab may still ask which kernel: the preselected one, Python 3
            kernel_choice.locator(".jp-mod-accept").click()
        cells = page.evaluate(CELL_STATE_JS)
        numbered = [bool(re.search(r"\[\d+\]", c["prompt"])) for c in cells]
        errors = [e for c in cells for e in c["errors"]]
        if errors:
            raise AssertionError(f"{NOTEBOOK.name} failed in the browser:\n" + "\n".join(errors)[-3000:])
        if cells and all(numbered):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{NOTEBOOK.name}: not every cell ran within {RUN_ALL_S} s: "
                                 f"{[c['prompt'] for c in cells]}")
        time.sleep(0.5)


def widget_plot_src(widget) -> str:
    """The src (a data: URL of the PNG) of the plot inside the interactive widget, once it loaded."""
    image = widget.locator("img").first
    image.wait_for(state="visible", timeout=REDRAW_S * 1000)
    return image.evaluate("img => img.complete && img.naturalWidth > 0 ? img.src : ''")


@pytest.mark.timeout(SERVER_START_S + 2 * PAGE_WAIT_S + RUN_ALL_S + 2 * REDRAW_S)
def test_notebook_10_slider_redraws_the_plot(lab, page, tmp_path):
    path = lab.relative(NOTEBOOK)
    assert path is not None, f"{NOTEBOOK.relative_to(ROOT)} is outside the Lab root {lab.root}"
    pair = [NOTEBOOK, NOTEBOOK.with_suffix(".py")]
    committed = {file: file.read_bytes() for file in pair}
    try:
        with lab.evidence(page, "notebook_10"):
            page.goto(lab.url(path), wait_until="commit")  # then wait for the cells, not for every asset
            page.locator(".jp-NotebookPanel .jp-CodeCell").first.wait_for()
            add_parameter_lines(page, PARAMETERS.format(figures=str(tmp_path / "figures")))
            run_all_cells(page)

            widget = page.locator(".widget-interact").first
            widget.wait_for(timeout=REDRAW_S * 1000)
            readout = widget.locator(".widget-readout").first
            before_step, before = readout.inner_text(), widget_plot_src(widget)
            assert before.startswith("data:image/png"), f"no plot in the slider's output: {before[:80]!r}"

            handle = widget.locator(".noUi-handle").first
            handle.focus()
            handle.press("End")  # the slider's last step (the smoke run records two)
            deadline = time.monotonic() + REDRAW_S
            while (after := widget_plot_src(widget)) in ("", before) and time.monotonic() < deadline:
                time.sleep(0.3)
            after_step = readout.inner_text()
            assert after_step != before_step, f"the slider did not move: step {before_step!r} before and after"
            assert after.startswith("data:image/png") and after != before, (
                f"moving the slider from step {before_step} to {after_step} did not redraw the plot")
            assert list((tmp_path / "figures").glob("nb10_weights_by_step.png")), "the run wrote no figure to FIGURES_DIR"
    finally:
        page.context.close()  # the edit is never saved: autosave is off (LAB_SETTINGS)
        changed = [file for file, data in committed.items() if file.read_bytes() != data]
        for file in changed:  # put the notebook back before failing
            file.write_bytes(committed[file])
    assert not changed, f"the test's edit was saved to {[str(f.relative_to(ROOT)) for f in changed]} (restored)"


@pytest.mark.timeout(SERVER_START_S + 3 * PAGE_WAIT_S)
def test_results_page_renders_with_every_image(lab, page):
    path = lab.relative(RESULTS_PAGE)
    if path is None:
        pytest.skip(f"the bootstrap's Lab serves {lab.root}, which does not hold {RESULTS_PAGE.relative_to(ROOT)}")
    expected = len(re.findall(r"!\[[^\]]*\]\([^)]+\)|<img\b", RESULTS_PAGE.read_text()))
    assert expected > 0, f"{RESULTS_PAGE} embeds no image"
    with lab.evidence(page, "results_page"):
        page.goto(lab.url(path), wait_until="commit")
        rendered = page.locator(".jp-MainAreaWidget .jp-RenderedMarkdown").first
        try:
            rendered.wait_for()
        except sync_api.TimeoutError:
            opened = page.locator(".jp-MainAreaWidget").evaluate_all("ws => ws.map(w => w.className)")
            raise AssertionError(f"{path} did not open rendered (Markdown Preview); open widgets: {opened}") from None
        images = rendered.locator("img")
        deadline = time.monotonic() + PAGE_WAIT_S
        while images.count() < expected and time.monotonic() < deadline:
            time.sleep(0.3)
        assert images.count() == expected, f"{path}: {images.count()} images rendered, {expected} in the file"
        for index in range(expected):  # in view one by one, so none waits on lazy loading
            images.nth(index).scroll_into_view_if_needed()
        page.wait_for_function("imgs => imgs.every(img => img.complete)", arg=images.element_handles())
        broken = images.evaluate_all("imgs => imgs.filter(img => !(img.naturalWidth > 0)).map(img => img.src)")
        assert not broken, f"{path}: {len(broken)} of {expected} images did not load: {broken}"
