"""MaskCanvas: the browser half of the annotation widget, as an anywidget.

The browser draws; the kernel decides. The canvas shows two pictures the kernel sends as
PNG data URLs (the windowed image and the translucent mask overlay) and draws the rubber
band of a drag itself, so the preview follows the mouse without a round trip. Every mouse
event goes to the kernel as a custom message ``{"event": "mouse_down" | "mouse_move" |
"mouse_up" | "mouse_out", "x": ..., "y": ...}`` in canvas pixels; the kernel rasterises the
shape at the image's own resolution and sends the new overlay back. Nothing is ever read
back from the browser's pixels, so masks are exact whatever the zoom.

Images travel as base64 strings, not binary buffers: Colab's widget manager does not pass
binary buffers reliably (googlecolab/colab-cdn-widget-manager#8).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets
from PIL import Image

HERE = Path(__file__).parent
OVERLAY_RGB = (255, 60, 40)  # translucent red: visible on both bone and background
OVERLAY_ALPHA = 110
MOUSE_EVENTS = ("mouse_down", "mouse_move", "mouse_up", "mouse_out")


def png_data_url(image):
    """uint8 array H x W (grey) or H x W x 3 (RGB) -> "data:image/png;base64,..."."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def overlay_data_url(mask):
    """H x W 0/1 mask -> PNG data URL, transparent where 0 and translucent red where 1."""
    overlay = Image.fromarray((np.asarray(mask) > 0).astype(np.uint8), mode="P")
    overlay.putpalette([0, 0, 0, *OVERLAY_RGB])
    buffer = io.BytesIO()
    overlay.save(buffer, format="PNG", transparency=bytes([0, OVERLAY_ALPHA]), compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class MaskCanvas(anywidget.AnyWidget):
    """An HTML canvas of `width` x `height` screen pixels showing `image` under `mask`.

    image, mask: PNG data URLs of any size, both stretched to the canvas without smoothing
    (each pixel of a zoomed-in image stays a square, as the mask's do). tool, radius (canvas
    pixels) and polygon (canvas points) only shape the preview drawn in the browser.
    """

    _esm = HERE / "canvas.js"
    _css = HERE / "canvas.css"

    width = traitlets.Int(1).tag(sync=True)
    height = traitlets.Int(1).tag(sync=True)
    image = traitlets.Unicode("").tag(sync=True)
    mask = traitlets.Unicode("").tag(sync=True)
    tool = traitlets.Unicode("box").tag(sync=True)
    radius = traitlets.Float(1.0).tag(sync=True)
    polygon: traitlets.List[Any] = traitlets.List().tag(sync=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._mouse_handlers = []
        self.on_msg(self._handle_message)

    def on_mouse(self, callback):
        """Call callback(event, x, y) for each mouse event; event is one of MOUSE_EVENTS."""
        self._mouse_handlers.append(callback)

    def _handle_message(self, _widget, content, _buffers):
        if not isinstance(content, dict) or content.get("event") not in MOUSE_EVENTS:
            return  # not ours: ignore rather than break the comm
        x, y = content.get("x"), content.get("y")
        for callback in self._mouse_handlers:
            callback(content["event"], x, y)
