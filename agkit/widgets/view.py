"""The annotator's view: its controls (tools, brush radius, grey-level window, navigation and
action buttons) and its picture on the canvas (the windowed image, the mask overlay, the
polygon clicked so far, the position and the status line).

``AnnotatorView`` is the base class of ``agkit.widgets.annotator.MaskAnnotator``, which
supplies what the buttons call (``go_to``, ``undo``, ...) and the image and mask they show.
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np

from agkit.widgets.canvas import MaskCanvas, overlay_data_url, png_data_url
from agkit.widgets.images import _shrink

TOOLS = ("box", "brush", "eraser", "polygon")


class AnnotatorView(widgets.VBox):
    """The controls and the canvas of a MaskAnnotator (see there); not used on its own."""

    # ---------------------------------------------------------------- controls and drawing
    def _build_controls(self, brush_radius):
        def button(description, action, tooltip, icon=None):
            b = widgets.Button(
                description=description,
                tooltip=tooltip,
                icon=icon or "",
                layout=widgets.Layout(width="auto"),
            )
            b.on_click(lambda _: self._guarded(action))
            return b

        self.canvas = MaskCanvas()
        self.canvas.on_mouse(self._on_canvas_mouse)
        self.tool = widgets.ToggleButtons(
            options=TOOLS, value="box", style={"button_width": "76px"}
        )
        self.tool.observe(self._tool_changed, "value")
        self.brush_radius = widgets.IntSlider(
            value=max(int(round(brush_radius)), 1),
            min=1,
            max=64,
            description="brush radius",
            style={"description_width": "auto"},
        )
        self.brush_radius.observe(lambda _: self._sync_radius(), "value")
        self.window = widgets.FloatRangeSlider(
            description="window", readout_format=".2f", layout=widgets.Layout(width="360px")
        )
        self.window.observe(lambda _: self._render_image(), "value")
        self.position = widgets.Label()
        self.progress = widgets.HTML()
        self.status = widgets.HTML()
        last = len(self.image_ids) - 1
        nav = widgets.HBox(
            [
                button(
                    "Prev",
                    lambda: self.go_to(max(self._index - 1, 0)),
                    "previous image",
                    "arrow-left",
                ),
                button(
                    "Next",
                    lambda: self.go_to(min(self._index + 1, last)),
                    "next image",
                    "arrow-right",
                ),
                button(
                    "Next unannotated",
                    self.next_unannotated,
                    "next image without a mask",
                    "forward",
                ),
                self.position,
                self.progress,
            ]
        )
        edit = widgets.HBox([self.tool, self.brush_radius])
        actions = widgets.HBox(
            [
                button("Undo", self.undo, "undo the last change", "undo"),
                button("Redo", self.redo, "redo", "repeat"),
                button("Clear", self.clear, "delete this image's mask", "trash"),
                button(
                    "Close polygon", self.close_polygon, "fill the polygon clicked so far", "check"
                ),
                self.window,
                button("Auto", self._auto_window, "contrast from the 1st-99th percentiles"),
                button("Reset", self._reset_window, "full intensity range"),
            ]
        )
        self.children = [nav, edit, actions, self.canvas, self.status]

    def _tool_changed(self, change):
        self.canvas.tool = change["new"]
        self._drag, self._polygon = None, []
        self._render_preview()

    def _sync_radius(self):
        """The brush radius in canvas pixels, for the browser's preview."""
        self.canvas.radius = self.brush_radius.value * getattr(self, "_scale", 1.0)

    def _fit_canvas(self, h, w):
        self._scale = min(self.display_box[0] / w, self.display_box[1] / h)
        self.canvas.width = max(int(round(w * self._scale)), 1)
        self.canvas.height = max(int(round(h * self._scale)), 1)
        self._sync_radius()

    def _reset_window(self):
        lo, hi = float(self._image.min()), float(self._image.max())
        self._set_window(lo, hi if hi > lo else lo + 1, lo, hi if hi > lo else lo + 1)

    def _auto_window(self):
        lo, hi = np.percentile(self._image, [1, 99])
        self._set_window(self.window.min, self.window.max, lo, max(hi, lo + self.window.step))

    def _set_window(self, vmin, vmax, lo, hi):
        w, self._quiet = self.window, True
        try:  # widen the slider's range first, so that no intermediate state is invalid
            w.min, w.max = min(w.min, vmin), max(w.max, vmax)
            w.value = (float(lo), float(hi))
            w.min, w.max, w.step = vmin, vmax, (vmax - vmin) / 255
        finally:
            self._quiet = False
        self._render_image()

    def _render_image(self):
        """Window/level the image and send it to the canvas as an 8-bit PNG.

        Zoomed in, the image goes at its own size and the browser enlarges it without
        smoothing (each pixel stays a square, as the mask does); zoomed out, it is shrunk
        here first, so a large radiograph does not travel at full size.
        """
        if self._quiet:
            return
        image = self._image.astype(np.float32)
        if self._scale < 1:
            image = _shrink(image, (self.canvas.width, self.canvas.height))
        lo, hi = self.window.value
        grey = np.clip((image - lo) / max(hi - lo, 1e-12), 0, 1)
        self.canvas.image = png_data_url(np.round(grey * 255).astype(np.uint8))

    def _render_overlay(self):
        self.canvas.mask = overlay_data_url(self._editor.mask)

    def _render_preview(self):
        """The polygon clicked so far, in canvas coordinates (the browser draws drags itself)."""
        self.canvas.polygon = [[x * self._scale, y * self._scale] for x, y in self._polygon]

    def _update_labels(self):
        h, w = self._image.shape[:2]
        self.position.value = (
            f"{self._index + 1}/{len(self.image_ids)}: {self.current_id} ({w} x {h})"
        )
        self.progress.value = f"<b>{len(self._annotated)} / {len(self.image_ids)} annotated</b>"

    def _message(self, text, error=False):
        colour = "#c0392b" if error else "#555"
        self.status.value = f'<span style="color:{colour}">{text}</span>' if text else ""
