"""Waiting for a JupyterLab server a test started (tests/test_browser.py, tests/test_jupyterlab.py)."""
import time
import urllib.error


def wait_until_serving(server, status_url: str, get, *, timeout_s: float, interval_s: float, output) -> None:
    """Return once `get(status_url)` answers; raise naming the server's `output()` if the process
    `server` exits or `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            get(status_url)
            return
        except (urllib.error.URLError, ConnectionError):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not start: {output()}")
            time.sleep(interval_s)
