"""MaskAnnotator in a real JupyterLab and a real Notebook 7, driven by a mouse in headless Chromium.

The Jupyter server runs on 127.0.0.1 with its own temporary config, data and runtime folders;
the browser is Debian's /usr/bin/chromium driven by the Python playwright package (never
`playwright install`). Each test opens tests/browser/annotate.ipynb, drags a box, paints a
brush stroke and presses Undo, and after each step checks the mask the kernel saved on disk
to the pixel: it must be exactly the rasterisation of the mouse events the kernel received
(logged by the notebook), and those must be where the mouse went.

Set AGKIT_UPDATE_SCREENSHOT=1 to also write the widget's screenshots to docs/widget.png
(JupyterLab) and docs/widget-notebook7.png (Notebook 7).
"""

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

import faults
import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = Path(__file__).parent / "browser" / "annotate.ipynb"
TIMEOUT = 120  # seconds; two busy cores can be slow to start a kernel
# Notebook 7.6.5 raises this on every page, widgets or not (its keyboard-shortcut settings code)
KNOWN_NOTEBOOK7_ERROR = "Cannot read properties of undefined (reading 'schema')"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _require_browser(app_module):
    faults.require_browser("browser test", app_module)


def _wait_for(condition, what, timeout=TIMEOUT, every=0.25):
    """Poll condition() until it returns something but None or False; fail naming `what`."""
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


class JupyterServer:
    """JupyterLab (`app="jupyterlab"`) or Notebook 7 (`app="notebook"`) serving tmp/root."""

    def __init__(self, tmp, app):
        self.root, config = tmp / "root", tmp / "config"
        (config / "labconfig").mkdir(parents=True)
        self.root.mkdir()
        # the news toast can cover outputs
        (config / "labconfig" / "page_config.json").write_text(
            json.dumps(
                {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}
            )
        )
        port, self.token = _free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{port}"
        env = dict(
            os.environ,
            JUPYTER_CONFIG_DIR=str(config),
            JUPYTER_DATA_DIR=str(tmp / "data"),
            JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        )
        app_class = "LabApp" if app == "jupyterlab" else "JupyterNotebookApp"
        self.log = tmp / f"{app}.log"
        command = [
            sys.executable,
            "-m",
            app,
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            f"--{app_class}.workspaces_dir={tmp / 'workspaces'}",
        ]
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=self.root
            )

    def api(self, path):
        """The server's JSON answer to GET /api/<path>, or None while it does not answer."""
        if self.process.poll() is not None:
            raise AssertionError(
                f"the Jupyter server exited with {self.process.returncode}:\n"
                f"{self.log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(
                f"{self.base}/api/{path}?token={self.token}", timeout=5
            ) as reply:
                return json.loads(reply.read())
        except OSError:
            return None

    def kernel_idle(self, notebook):
        """Whether the kernel of `notebook` has started and is idle (both front ends)."""
        sessions = self.api("sessions") or []
        return any(
            s.get("path", "").endswith(notebook)
            and s.get("kernel")
            and s["kernel"].get("execution_state") == "idle"
            for s in sessions
        )

    def stop(self):
        self.process.terminate()  # its own PID only; the server shuts its kernel down
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _stored_mask(folder, image_id):
    """The mask saved on disk, read with a fresh MaskStore, or None while there is none."""
    from agkit.data.mask_store import MaskStore

    if not (folder / "index.json").exists():
        return None
    return MaskStore(folder).get(image_id)


def _events(root, count):
    """The mouse events the kernel received, once `count` strokes have ended, else None."""
    path = root / "events.jsonl"
    if not path.exists():
        return None
    events = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("]")]
    return events if sum(e[0] == "mouse_up" for e in events) >= count else None


def _strokes(events):
    """Received events -> list of strokes, each a K x 2 array of canvas points down..up."""
    strokes, current = [], None
    for event, x, y in events:
        if event == "mouse_down":
            current = [(x, y)]
        elif current is not None:
            current.append((x, y))
            if event in ("mouse_up", "mouse_out"):
                strokes.append(np.array(current))
                current = None
    return strokes


def _pixel(canvas, x, y):
    """RGBA of the canvas at canvas pixel (x, y), as the browser drew it."""
    return canvas.evaluate(
        "(c, [x, y]) => Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data)", [x, y]
    )


def _drag(page, rect, points, scale):
    """Press at points[0], move through the others, release at the last (image pixels)."""
    to_page = [(rect["x"] + x * scale, rect["y"] + y * scale) for x, y in points]
    page.mouse.move(*to_page[0])
    page.mouse.down()
    for target in to_page[1:]:
        page.mouse.move(*target, steps=6)
    page.mouse.up()
    return np.array(to_page) - (rect["x"], rect["y"])  # canvas pixels


def _annotate(tmp_path, app, screenshot):
    """Open the widget notebook in `app`, draw, check the disk, undo; returns the screenshot."""
    from playwright.sync_api import sync_playwright

    from agkit.widgets import box_pixels, stroke_pixels

    started, phases = time.monotonic(), {}

    def phase(name):
        phases[name] = round(time.monotonic() - started, 1)

    server = JupyterServer(tmp_path, app)
    root = server.root
    shutil.copy(NOTEBOOK, root / "annotate.ipynb")
    url = "lab/tree/annotate.ipynb" if app == "jupyterlab" else "notebooks/annotate.ipynb"
    try:
        _wait_for(lambda: server.api("status"), "the Jupyter server to answer")
        phase("server up")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            errors = []
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1100})
                page.on("pageerror", lambda err: errors.append(str(err)))
                page.set_default_timeout(TIMEOUT * 1000)
                page.goto(f"{server.base}/{url}?token={server.token}")
                # the toolbar says "idle" before a kernel exists: ask the server instead
                _wait_for(lambda: server.kernel_idle("annotate.ipynb"), "the kernel to be idle")
                phase("kernel idle")
                prompt = page.locator(".jp-Cell .jp-InputPrompt").first
                for attempt in range(2):  # a Run All clicked while the kernel connects is lost
                    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click()
                    page.locator(
                        ".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")
                    ).click()
                    try:
                        _wait_for(
                            lambda: re.search(r"\[(\*|\d+)\]", prompt.inner_text()),
                            "the cell to start",
                            20,
                        )
                        break
                    except AssertionError:
                        if attempt:
                            raise
                _wait_for(lambda: re.search(r"\[\d+\]", prompt.inner_text()), "the cell to finish")
                phase("cell run")
                widget = page.locator(".agkit-mask-annotator")
                canvas = page.locator("canvas.agkit-mask-canvas")
                canvas.wait_for(state="visible")
                target = json.loads((root / "target.json").read_text())
                image_id, scale = target["image_id"], target["scale"]
                x0, y0, x1, y1 = target["box"]
                folder = root / "masks"

                canvas.scroll_into_view_if_needed()
                rect = canvas.bounding_box()  # re-read after scrolling
                assert abs(rect["width"] - 256 * scale) < 1, "the canvas is not shown at its size"
                _wait_for(lambda: _pixel(canvas, 5, 5)[3] == 255, "the image to be drawn", 30)

                # 1. a box: the saved mask is exactly the box between the received corners
                sent = _drag(page, rect, [(x0, y0), (x1, y1)], scale)
                events = _wait_for(lambda: _events(root, 1), "the box's events in the kernel")
                (box,) = _strokes(events)
                assert np.abs(box[[0, -1]] - sent[[0, -1]]).max() < 1.5, (box, sent)
                (bx0, by0), (bx1, by1) = box[0] / scale, box[-1] / scale
                expected_box = box_pixels(bx0, by0, bx1, by1, (256, 256)).astype(np.uint8)
                mask = _wait_for(lambda: _stored_mask(folder, image_id), "the box on disk")
                np.testing.assert_array_equal(mask, expected_box)
                ys, xs = np.nonzero(mask)
                assert np.allclose(
                    [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], target["box"], atol=1
                ), "the saved box is not where the mouse went"
                widget.get_by_text("1 / 6 annotated").wait_for()
                _wait_for(
                    lambda: _is_overlay(
                        _pixel(canvas, (x0 + x1) / 2 * scale, (y0 + y1) / 2 * scale)
                    ),
                    "the red overlay on the canvas",
                    30,
                )

                phase("box checked")
                # 2. a brush stroke of radius 6 image pixels
                widget.locator("button", has_text=re.compile(r"^\s*brush\s*$")).click()
                path = [(30, 230), (90, 212), (150, 236), (220, 220)]
                sent = _drag(page, rect, path, scale)
                events = _wait_for(lambda: _events(root, 2), "the stroke's events in the kernel")
                stroke = _strokes(events)[1]
                assert np.abs(stroke[[0, -1]] - sent[[0, -1]]).max() < 1.5, (stroke, sent)
                expected = expected_box | stroke_pixels(stroke / scale, 6, (256, 256))
                _wait_for(
                    lambda: np.array_equal(_stored_mask(folder, image_id), expected),
                    "the box and the stroke on disk, to the pixel",
                    30,
                )
                _wait_for(
                    lambda: _is_overlay(_pixel(canvas, 90 * scale, 212 * scale)),
                    "the stroke's overlay on the canvas",
                    30,
                )
                page.mouse.move(1, 1)
                shot = widget.screenshot(path=str(tmp_path / "widget.png"))
                assert len(shot) > 10_000

                phase("stroke checked")
                # 3. Undo takes the stroke back, on disk too
                widget.locator("button", has_text=re.compile(r"^\s*Undo\s*$")).click()
                _wait_for(
                    lambda: np.array_equal(_stored_mask(folder, image_id), expected_box),
                    "the undone stroke to leave the disk",
                    30,
                )
                _wait_for(
                    lambda: not _is_overlay(_pixel(canvas, 150 * scale, 236 * scale)),
                    "the undone stroke to leave the canvas",
                    30,
                )
                phase("undo checked")
            finally:
                browser.close()
        allowed = [KNOWN_NOTEBOOK7_ERROR] if app == "notebook" else []
        unexpected = [e for e in errors if not any(known in e for known in allowed)]
        assert not unexpected, f"errors in the page: {unexpected}"
        if os.environ.get("AGKIT_UPDATE_SCREENSHOT") == "1":
            (REPO / "docs").mkdir(exist_ok=True)
            (REPO / "docs" / screenshot).write_bytes(shot)
        return shot
    finally:
        server.stop()
        phase("server stopped")
        print(f"{app}: seconds since start {phases}")


def _is_overlay(rgba):
    """Whether a canvas pixel is tinted red by the mask overlay."""
    r, g, b, _ = rgba
    return r > g + 40 and r > b + 40


def test_annotate_in_jupyterlab(tmp_path):
    _require_browser("jupyterlab")
    _annotate(tmp_path, "jupyterlab", "widget.png")


def test_annotate_in_notebook7(tmp_path):
    _require_browser("notebook")
    _annotate(tmp_path, "notebook", "widget-notebook7.png")
