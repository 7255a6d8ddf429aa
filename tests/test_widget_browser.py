"""MaskAnnotator in a real JupyterLab, driven by a real mouse in headless Chromium.

Follows /work/shared/browser-testing.md: the server runs on 127.0.0.1 with its own temp
config/data/runtime folders; the browser is Debian's /usr/bin/chromium driven by the
Python playwright package (never `playwright install`). The test drags a box on the
canvas and checks the mask that the kernel saved on disk.

Set AGKIT_UPDATE_SCREENSHOT=1 to also write the widget's screenshot to docs/widget.png.
"""
import importlib.util
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = Path(__file__).parent / "browser" / "annotate.ipynb"
TIMEOUT = 120  # seconds; two busy cores can be slow to start a kernel

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _require_browser():
    missing = [what for what, ok in [
        ("Debian Chromium at /usr/bin/chromium (apt-get install -y chromium)", CHROMIUM.exists()),
        ("the playwright package (pip install 'agkit[browser]')", importlib.util.find_spec("playwright")),
        ("jupyterlab (pip install 'agkit[browser]')", importlib.util.find_spec("jupyterlab")),
    ] if not ok]
    if missing:
        reason = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " -- CI must run it, so it fails instead of skipping")
        pytest.skip(reason)


def _wait_for(condition, what, timeout=TIMEOUT, every=0.25):
    """Poll condition() until it returns neither None nor False; fail naming `what` after timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        result = condition()
        if result is not None and result is not False:
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_jupyterlab(tmp):
    """Start JupyterLab in tmp/root; return (process, url prefix, token, log path)."""
    root, config = tmp / "root", tmp / "config"
    (config / "labconfig").mkdir(parents=True)
    root.mkdir()
    # the news toast can cover outputs
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(config), JUPYTER_DATA_DIR=str(tmp / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    log = tmp / "jupyterlab.log"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
               f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}"]
    with open(log, "wb") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root)
    return server, f"http://127.0.0.1:{port}", token, log


def _server_answers(base, token, server, log):
    if server.poll() is not None:
        raise AssertionError(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
    try:
        with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as reply:
            return reply.status == 200
    except OSError:
        return False


def _stored_mask(folder, image_id):
    """The mask saved on disk, read with a fresh MaskStore, or None while there is none."""
    from agkit.data.masks import MaskStore

    if not (folder / "index.json").exists():
        return None
    return MaskStore(folder).get(image_id)


def test_drag_a_box_in_jupyterlab(tmp_path):
    _require_browser()
    from playwright.sync_api import sync_playwright

    server, base, token, log = _start_jupyterlab(tmp_path)
    root = tmp_path / "root"
    shutil.copy(NOTEBOOK, root / "annotate.ipynb")
    try:
        _wait_for(lambda: _server_answers(base, token, server, log), "the Jupyter server to answer")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.set_default_timeout(TIMEOUT * 1000)
                page.goto(f"{base}/lab/tree/annotate.ipynb?token={token}")
                # the toolbar says "idle" before a kernel exists; the status bar names the kernel only once it does
                page.get_by_text(re.compile(r"Python 3 \(ipykernel\) \| Idle")).wait_for()
                prompt = page.locator(".jp-Cell .jp-InputPrompt").first
                page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click()
                page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click()
                _wait_for(lambda: re.search(r"\[(\*|\d+)\]", prompt.inner_text()), "the cell to start", 30)
                _wait_for(lambda: re.search(r"\[\d+\]", prompt.inner_text()), "the cell to finish")
                widget = page.locator(".agkit-mask-annotator")
                canvas = page.locator(".jp-OutputArea-output canvas").first
                canvas.wait_for(state="visible")
                target = json.loads((root / "target.json").read_text())
                x0, y0, x1, y1 = target["box"]
                scale = target["scale"]

                canvas.scroll_into_view_if_needed()
                rect = canvas.bounding_box()  # re-read after scrolling
                assert abs(rect["width"] - 256 * scale) < 1, "the canvas is not shown at its own size"
                page.mouse.move(rect["x"] + x0 * scale, rect["y"] + y0 * scale)
                page.mouse.down()
                page.mouse.move(rect["x"] + x1 * scale, rect["y"] + y1 * scale, steps=12)
                page.mouse.up()

                mask = _wait_for(lambda: _stored_mask(root / "masks", target["image_id"]), "the mask on disk")
                ys, xs = np.nonzero(mask)
                got = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
                assert np.allclose(got, target["box"], atol=2), f"dragged {target['box']}, saved {got}"
                assert mask.sum() == (got[2] - got[0]) * (got[3] - got[1]), "the saved box has holes"
                widget.get_by_text("Saved").wait_for()
                widget.get_by_text("1 / 6 annotated").or_(widget.get_by_text("1 / 1 annotated")).wait_for()
                _wait_for(lambda: _overlay_shown(canvas, (x0 + x1) / 2 * scale, (y0 + y1) / 2 * scale),
                          "the red overlay to appear on the canvas", 30)

                page.mouse.move(1, 1)
                shot = widget.screenshot(path=str(tmp_path / "widget.png"))
                assert len(shot) > 10_000
                if os.environ.get("AGKIT_UPDATE_SCREENSHOT") == "1":
                    (REPO / "docs").mkdir(exist_ok=True)
                    (REPO / "docs" / "widget.png").write_bytes(shot)
            finally:
                browser.close()
    finally:
        server.terminate()  # its own PID only; the server shuts its kernel down
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _overlay_shown(canvas, x, y):
    """Whether the canvas pixel at (x, y) is tinted red by the mask overlay (only for the screenshot)."""
    r, g, b = canvas.evaluate(
        "(c, [x, y]) => Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data).slice(0, 3)", [x, y])
    return r > g + 40 and r > b + 40
