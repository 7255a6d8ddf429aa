"""MaskAnnotator: draw guidance masks on radiographs inside a notebook.

Works in JupyterLab, Notebook 7, VS Code and Colab (on Colab run
``from google.colab import output; output.enable_custom_widget_manager()`` first,
so that the ipycanvas widget can load).

Two layers, so that the drawing logic can be read and tested without a browser:

* ``MaskEditor`` -- the pure editing model: one H x W uint8 0/1 mask plus an undo stack.
  Boxes, brush strokes and polygons are rasterised here, in numpy, at the image's own
  resolution. Nothing is ever read back from the browser canvas.
* ``MaskAnnotator`` -- the view: an ipycanvas canvas and a few ipywidgets controls. Mouse
  handlers turn display coordinates into image coordinates and call the same methods as
  the programmatic API (``draw_box``, ``paint``, ``erase``, ``fill_polygon``, ...).

Coordinates are image pixels, x to the right, y down, measured on pixel *edges*:
pixel ``mask[i, j]`` covers x in [j, j+1) and y in [i, i+1), so its centre is
(j + 0.5, i + 0.5). The display shows the same picture ``scale`` times larger, so a mouse
at display (u, v) points at image (u / scale, v / scale).

* box (x0, y0, x1, y1): covers ``mask[y0:y1, x0:x1]``, corners rounded to the nearest edge
  (``agkit.data.masks.rasterize_boxes``);
* brush/eraser: the pixels whose centre lies within ``radius`` of the stroke's polyline;
* polygon: the pixels whose centre lies inside it (exact at any zoom; the store's
  ``rasterize_polygons`` for imported COCO polygons also fills the outline's pixels).

Saving: every change is written at once with ``MaskStore.put`` (atomic), with
``source="drawn"`` and ``tool="agkit.MaskAnnotator <tool>"``. A change that leaves the mask
empty (``clear()``, erasing everything, undoing the first stroke) calls
``MaskStore.delete``: in agkit an all-zero mask means "not annotated". The store is the
only state: when the kernel dies nothing is lost, and a new annotator resumes at the first
unannotated image. The undo history lives in memory and is reset when you change image.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import ipywidgets as widgets
import numpy as np
from ipycanvas import MultiCanvas, hold_canvas
from matplotlib.path import Path as PolygonPath
from PIL import Image

from agkit.data.masks import MaskStore, rasterize_boxes

TOOLS = ("box", "brush", "eraser", "polygon")
OVERLAY_RGBA = (255, 60, 40, 110)  # translucent red: visible on both bone and background
PREVIEW_COLOURS = {"box": "rgba(255, 220, 0, 0.9)", "brush": "rgba(255, 220, 0, 0.5)",
                   "eraser": "rgba(0, 200, 255, 0.5)"}


# ----------------------------------------------------------------------------- rasterising
def box_pixels(x0, y0, x1, y1, shape):
    """H x W bool array, True on mask[y0:y1, x0:x1]; corners in any order, clipped to the image."""
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    return rasterize_boxes([(x0, y0, x1, y1)], shape) > 0


def stroke_pixels(points, radius, shape):
    """H x W bool array, True where the pixel centre is within `radius` of the polyline.

    points: sequence of (x, y) in image pixels; one point gives a disc.
    """
    h, w = shape
    pts = np.asarray(points, float).reshape(-1, 2)
    if len(pts) == 1:
        pts = np.vstack([pts, pts])
    out = np.zeros(shape, bool)
    for (ax, ay), (bx, by) in zip(pts[:-1], pts[1:]):
        # only look at the segment's bounding box grown by the radius
        x0, x1 = max(int(np.floor(min(ax, bx) - radius)), 0), min(int(np.ceil(max(ax, bx) + radius)) + 1, w)
        y0, y1 = max(int(np.floor(min(ay, by) - radius)), 0), min(int(np.ceil(max(ay, by) + radius)) + 1, h)
        if x0 >= x1 or y0 >= y1:
            continue
        cy, cx = np.mgrid[y0:y1, x0:x1] + 0.5  # pixel centres
        dx, dy = bx - ax, by - ay
        length2 = dx * dx + dy * dy
        t = 0.0 if length2 == 0 else np.clip(((cx - ax) * dx + (cy - ay) * dy) / length2, 0, 1)
        dist2 = (cx - ax - t * dx) ** 2 + (cy - ay - t * dy) ** 2
        out[y0:y1, x0:x1] |= dist2 <= radius * radius
    return out


def polygon_pixels(points, shape):
    """H x W bool array, True where the pixel centre is inside the polygon [(x, y), ...]."""
    pts = np.asarray(points, float).reshape(-1, 2)
    if len(pts) < 3:
        raise ValueError(f"A polygon needs at least 3 vertices, got {len(pts)}; click more points.")
    h, w = shape
    x0, y0 = np.maximum(np.floor(pts.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(pts.max(0)).astype(int) + 1, (w, h))
    out = np.zeros(shape, bool)
    if x0 < x1 and y0 < y1:
        cy, cx = np.mgrid[y0:y1, x0:x1] + 0.5  # pixel centres
        inside = PolygonPath(pts).contains_points(np.column_stack([cx.ravel(), cy.ravel()]))
        out[y0:y1, x0:x1] = inside.reshape(cx.shape)
    return out


# ----------------------------------------------------------------------------- editing model
class MaskEditor:
    """One mask being edited, with undo/redo.

    mask: H x W uint8 array of 0/1 (a copy is kept). Every edit pushes the previous mask on
    the undo stack (at most `max_undo` of them) and empties the redo stack.
    """

    def __init__(self, mask, max_undo=50):
        self.mask = (np.asarray(mask) > 0).astype(np.uint8)
        self.max_undo = max_undo
        self._undo, self._redo = [], []

    def _apply(self, pixels, value):
        new = self.mask.copy()
        new[pixels] = value
        if np.array_equal(new, self.mask):
            return False  # nothing changed: no history entry, nothing to save
        self._undo = (self._undo + [self.mask])[-self.max_undo:]
        self._redo = []
        self.mask = new
        return True

    def draw_box(self, x0, y0, x1, y1):
        return self._apply(box_pixels(x0, y0, x1, y1, self.mask.shape), 1)

    def paint(self, points, radius):
        return self._apply(stroke_pixels(points, radius, self.mask.shape), 1)

    def erase(self, points, radius):
        return self._apply(stroke_pixels(points, radius, self.mask.shape), 0)

    def fill_polygon(self, points):
        return self._apply(polygon_pixels(points, self.mask.shape), 1)

    def clear(self):
        return self._apply(np.ones(self.mask.shape, bool), 0)

    def snapshot(self):
        """The whole state, to take an edit back with restore() (masks are never changed in place)."""
        return self.mask, self._undo[:], self._redo[:]

    def restore(self, state):
        self.mask, self._undo, self._redo = state

    def _step(self, source, target):
        """Move one state from the source stack to the mask, the mask onto target."""
        if not source:
            return False
        target.append(self.mask)
        self.mask = source.pop()
        return True

    def undo(self):
        return self._step(self._undo, self._redo)

    def redo(self):
        return self._step(self._redo, self._undo)


# ----------------------------------------------------------------------------- image access
def _to_array(image):
    """File path, torch tensor or array -> H x W or H x W x 3 numpy array."""
    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            return np.asarray(im.convert("L") if im.mode not in ("L", "I", "I;16", "F", "RGB") else im)
    if hasattr(image, "detach"):  # torch tensor
        image = image.detach().cpu().numpy()
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)  # C x H x W -> H x W x C
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3):
        raise ValueError(f"Expected an image of shape H x W, 1 x H x W or H x W x 3, got {a.shape}.")
    return a


def _image_source(data):
    """Return (image_ids, get) where get(i) -> H x W (or H x W x 3) array of image i."""
    if isinstance(data, Mapping):
        ids = [str(k) for k in data]
        keys = list(data)
        return ids, lambda i: _to_array(data[keys[i]])
    if hasattr(data, "image_ids") and hasattr(data, "images"):
        images = data.images  # a tensor/array N x C x H x W, a list of arrays or paths, or i -> array
        get = images if callable(images) else images.__getitem__
        return [str(k) for k in data.image_ids], lambda i: _to_array(get(i))
    try:
        pairs = list(data)
        ids = [str(k) for k, _ in pairs]
    except (TypeError, ValueError):
        raise TypeError(
            "MaskAnnotator expects a dataset with .image_ids and .images (e.g. a SynthFrac), "
            "a sequence of (image_id, H x W array) pairs, or a dict image_id -> array."
        ) from None
    return ids, lambda i: _to_array(pairs[i][1])


# ----------------------------------------------------------------------------- the widget
class MaskAnnotator(widgets.VBox):
    """Notebook widget to draw, edit and save one guidance mask per image.

    dataset_or_images: an object with .image_ids and .images (N x 1 x H x W), a sequence of
        (image_id, H x W array) pairs, or a dict image_id -> H x W array. Sizes may differ.
    store: a MaskStore, or the folder of one.
    display_size: the view's largest side in screen pixels (int), or a (width, height) box;
        the image is scaled to fit it, aspect kept.
    start: index or image id to open; default: the first image without a mask.
    brush_radius: initial brush/eraser radius, in image pixels.

    With the mouse: "box" drag a rectangle; "brush"/"eraser" drag to paint/erase;
    "polygon" click the vertices, then click the first vertex again or press "Close polygon".
    "window" sets the grey-level window (contrast); "Auto" stretches the 1st-99th percentiles.
    """

    def __init__(self, dataset_or_images, store, *, display_size=512, start=None, brush_radius=4):
        super().__init__()
        self.add_class("agkit-mask-annotator")
        self.image_ids, self._get_image = _image_source(dataset_or_images)
        if not self.image_ids:
            raise ValueError("MaskAnnotator got no images; pass a dataset with at least one image.")
        box = (display_size, display_size) if np.isscalar(display_size) else display_size
        self.display_box = tuple(int(v) for v in box)
        self.store, self._store_error = self._open_store(store)
        self._annotated = set() if self.store is None else set(self.store.annotated_ids()) & set(self.image_ids)
        self._drag, self._polygon = None, []  # mouse state, in image coordinates
        self._quiet = False  # True while the window slider is being set from code
        self._build_controls(brush_radius)
        if start is None:
            start = self._first_unannotated(0)
        elif isinstance(start, str):
            start = self.image_ids.index(start)
        self.go_to(start if start is not None else 0)

    # ---------------------------------------------------------------- store helpers
    @staticmethod
    def _open_store(store):
        if not isinstance(store, (str, Path)):
            return store, None
        try:
            return MaskStore(store), None
        except Exception as err:  # shown in the widget; nothing is written anywhere
            return None, f"Could not open the mask store at {store}: {err}"

    def _save(self, tool):
        """Write the current mask to the store, or delete the stored one when the mask is empty."""
        image_id = self.current_id
        if self._editor.mask.any():
            self.store.put(image_id, self._editor.mask, source="drawn", tool=f"agkit.MaskAnnotator {tool}")
            self._annotated.add(image_id)
        elif image_id in self.store:
            self.store.delete(image_id)
            self._annotated.discard(image_id)

    def _edit(self, tool, method, *args):
        """Run one MaskEditor edit on the current image, save it, redraw; undo it if saving fails."""
        if self._locked:
            raise RuntimeError(self._locked)
        before = self._editor.snapshot()
        if getattr(self._editor, method)(*args):
            try:
                self._save(tool)
            except Exception as err:
                self._editor.restore(before)
                raise RuntimeError(f"NOT saved ({tool}), so the edit was taken back: {err}") from err
            finally:
                self._render_overlay()
                self._update_labels()
            if self.current_id in self._annotated:
                self._message(f"Saved {self.current_id} ({tool}).")
            else:
                self._message(f"Saved {self.current_id} ({tool}): the mask is empty, so it was deleted.")
        return self.current_mask

    # ---------------------------------------------------------------- programmatic API
    @property
    def current_index(self):
        return self._index

    @property
    def current_id(self):
        return self.image_ids[self._index]

    @property
    def current_mask(self):
        """H x W uint8 0/1 copy of the mask being edited."""
        return self._editor.mask.copy()

    def draw_box(self, x0, y0, x1, y1):
        """Add the box mask[y0:y1, x0:x1] (image pixels)."""
        return self._edit("box", "draw_box", x0, y0, x1, y1)

    def paint(self, points, radius):
        """Add a brush stroke through points [(x, y), ...] (image pixels)."""
        return self._edit("brush", "paint", points, radius)

    def erase(self, points, radius):
        """Remove a brush stroke through points [(x, y), ...] (image pixels)."""
        return self._edit("eraser", "erase", points, radius)

    def fill_polygon(self, points):
        """Add the polygon with vertices [(x, y), ...] (image pixels)."""
        return self._edit("polygon", "fill_polygon", points)

    def clear(self):
        """Empty the mask; the image becomes unannotated (its stored mask is deleted)."""
        return self._edit("clear", "clear")

    def undo(self):
        return self._edit("undo", "undo")

    def redo(self):
        return self._edit("redo", "redo")

    def go_to(self, index):
        """Show image `index` (0-based) with its stored mask, if any."""
        if not 0 <= index < len(self.image_ids):
            raise IndexError(f"Image index {index} is out of range 0..{len(self.image_ids) - 1}.")
        self._index, self._drag, self._polygon = index, None, []
        self._image = self._get_image(index)
        h, w = self._image.shape[:2]
        self._locked, mask = self._store_error, None
        if self.store is not None:
            try:
                mask = self.store.get(self.current_id)
            except Exception as err:
                self._locked = (f"Could not read the stored mask of {self.current_id}: {err}. Editing this "
                                "image is disabled so the file is not overwritten; restore or delete it.")
        if mask is not None and mask.shape != (h, w):
            self._locked = (f"The stored mask of {self.current_id} is {mask.shape[0]} x {mask.shape[1]} but "
                            f"the image is {h} x {w}; editing is disabled. Delete the mask to redraw it.")
            mask = None
        self._editor = MaskEditor(np.zeros((h, w), np.uint8) if mask is None else mask)
        self._fit_canvas(h, w)
        self._fit_image()
        self._reset_window()
        self._render_overlay()
        self.preview.clear()
        self._update_labels()
        self._message(self._locked or "", error=True)
        return self

    def next_unannotated(self):
        """Go to the next image (after the current one, wrapping round) without a mask."""
        index = self._first_unannotated(self._index + 1)
        if index is None:
            self._message("All images are annotated.")
            return self
        return self.go_to(index)

    def _first_unannotated(self, begin):
        n = len(self.image_ids)
        for k in range(n):
            i = (begin + k) % n
            if self.image_ids[i] not in self._annotated:
                return i
        return None

    # ---------------------------------------------------------------- mouse handlers
    def _to_image(self, x, y):
        """Display (canvas) coordinates -> image pixel coordinates."""
        h, w = self._editor.mask.shape
        return x * w / self.canvas.width, y * h / self.canvas.height

    def on_mouse_down(self, x, y):
        point = self._to_image(x, y)
        if self.tool.value == "polygon":
            return self._guarded(self._polygon_click, point)
        self._drag = [point]
        self._render_preview()

    def on_mouse_move(self, x, y):
        if self._drag is not None:
            self._drag.append(self._to_image(x, y))
            self._render_preview()

    def on_mouse_up(self, x, y):
        if self._drag is None:
            return
        points, self._drag = self._drag + [self._to_image(x, y)], None
        self.preview.clear()
        tool, radius = self.tool.value, self.brush_radius.value
        if tool == "box":
            (x0, y0), (x1, y1) = points[0], points[-1]
            self._guarded(self.draw_box, x0, y0, x1, y1)  # a plain click is an empty box: no change
        elif tool in ("brush", "eraser"):
            self._guarded(self.paint if tool == "brush" else self.erase, points, radius)

    def _polygon_click(self, point):
        near_first = self._polygon and np.hypot(*np.subtract(point, self._polygon[0])) * self._scale < 8
        if near_first and len(self._polygon) >= 3:  # clicking the first vertex closes the outline
            return self.close_polygon()
        self._polygon.append(point)
        self._render_preview()

    def close_polygon(self):
        """Fill the polygon clicked so far (needs 3 vertices) and start a new one."""
        points, self._polygon = self._polygon, []
        self.preview.clear()
        if len(points) >= 3:
            self.fill_polygon(points)
        else:
            self._message("Click at least 3 vertices before closing the polygon.", error=True)

    def _guarded(self, action, *args):
        """Run an action from a mouse event or button; show errors instead of losing them in a log."""
        try:
            action(*args)
        except Exception as err:
            self._message(str(err), error=True)

    # ---------------------------------------------------------------- controls and drawing
    def _build_controls(self, brush_radius):
        def button(description, action, tooltip, icon=None):
            b = widgets.Button(description=description, tooltip=tooltip, icon=icon or "",
                               layout=widgets.Layout(width="auto"))
            b.on_click(lambda _: self._guarded(action))
            return b

        self.canvas = MultiCanvas(3, width=10, height=10)  # layers: image, mask, preview
        self.image_layer, self.mask_layer, self.preview = self.canvas[0], self.canvas[1], self.canvas[2]
        self.canvas.on_mouse_down(self.on_mouse_down)
        self.canvas.on_mouse_move(self.on_mouse_move)
        self.canvas.on_mouse_up(self.on_mouse_up)
        self.canvas.on_mouse_out(self.on_mouse_up)  # leaving the canvas ends a drag
        self.canvas.on_client_ready(self._render_all)  # a reloaded page starts blank
        self.tool = widgets.ToggleButtons(options=TOOLS, value="box", style={"button_width": "76px"})
        self.tool.observe(lambda _: self._cancel_polygon(), "value")
        self.brush_radius = widgets.IntSlider(brush_radius, 1, 64, description="brush radius",
                                              style={"description_width": "auto"})
        self.window = widgets.FloatRangeSlider(description="window",
                                               layout=widgets.Layout(width="360px"))
        self.window.observe(lambda _: self._render_image(), "value")
        self.position = widgets.Label()
        self.progress = widgets.HTML()
        self.status = widgets.HTML()
        nav = widgets.HBox([
            button("Prev", lambda: self.go_to(max(self._index - 1, 0)), "previous image", "arrow-left"),
            button("Next", lambda: self.go_to(min(self._index + 1, len(self.image_ids) - 1)), "next image",
                   "arrow-right"),
            button("Next unannotated", self.next_unannotated, "next image without a mask", "forward"),
            self.position, self.progress])
        edit = widgets.HBox([self.tool, self.brush_radius])
        actions = widgets.HBox([
            button("Undo", self.undo, "undo the last change", "undo"),
            button("Redo", self.redo, "redo", "repeat"),
            button("Clear", self.clear, "delete this image's mask", "trash"),
            button("Close polygon", self.close_polygon, "fill the polygon clicked so far", "check"),
            self.window,
            button("Auto", self._auto_window, "contrast from the 1st-99th percentiles"),
            button("Reset", self._reset_window, "full intensity range")])
        self.children = [nav, edit, actions, self.canvas, self.status]

    def _fit_canvas(self, h, w):
        self._scale = min(self.display_box[0] / w, self.display_box[1] / h)
        dw, dh = max(int(round(w * self._scale)), 1), max(int(round(h * self._scale)), 1)
        self.canvas.width, self.canvas.height = dw, dh
        self.canvas.layout.width, self.canvas.layout.height = f"{dw}px", f"{dh}px"

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
            w.readout_format = ".0f" if vmax - vmin > 100 else ".2f"
        finally:
            self._quiet = False
        self._render_image()

    def _fit_image(self):
        """The image resized to the canvas, as float32 (dh x dw x C): windowing it is then cheap."""
        # nearest when zooming in: each image pixel stays a crisp square, as the mask is
        resample = Image.Resampling.NEAREST if self._scale >= 1 else Image.Resampling.BILINEAR
        channels = self._image.reshape(self._image.shape[:2] + (-1,)).astype(np.float32)
        size = (self.canvas.width, self.canvas.height)
        self._shown = np.dstack([np.asarray(Image.fromarray(channels[..., c], mode="F").resize(size, resample))
                                 for c in range(channels.shape[-1])])

    def _render_image(self):
        """Window/level the fitted image and draw it on layer 0."""
        if self._quiet:
            return
        lo, hi = self.window.value
        grey = np.clip((self._shown - lo) / max(hi - lo, 1e-12), 0, 1)
        rgb = np.broadcast_to(np.round(grey * 255).astype(np.uint8), grey.shape[:2] + (3,))
        rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])  # RGBA is sent as PNG: lossless
        self.image_layer.put_image_data(rgba, 0, 0)

    def _render_overlay(self):
        mask = Image.fromarray(self._editor.mask * 255)
        shown = np.asarray(mask.resize((self.canvas.width, self.canvas.height), Image.Resampling.NEAREST)) > 0
        rgba = np.zeros(shown.shape + (4,), np.uint8)
        rgba[shown] = OVERLAY_RGBA
        with hold_canvas():
            self.mask_layer.clear()
            self.mask_layer.put_image_data(rgba, 0, 0)

    def _render_preview(self):
        """Rubber band of the current drag or polygon, on the top layer (display coordinates)."""
        s, layer = self._scale, self.preview
        with hold_canvas():
            if self._drag and self.tool.value in ("brush", "eraser"):
                # draw only the newest piece of the stroke: a long stroke stays cheap
                (xa, ya), (xb, yb) = self._drag[max(len(self._drag) - 2, 0)], self._drag[-1]
                layer.stroke_style = layer.fill_style = PREVIEW_COLOURS[self.tool.value]
                layer.line_width, layer.line_cap = 2 * self.brush_radius.value * s, "round"
                layer.stroke_line(xa * s, ya * s, xb * s, yb * s)
                layer.fill_circle(xb * s, yb * s, self.brush_radius.value * s)
                return
            layer.clear()
            layer.stroke_style = layer.fill_style = PREVIEW_COLOURS["box"]
            layer.line_width = 2
            if self._drag:
                (x0, y0), (x1, y1) = self._drag[0], self._drag[-1]
                layer.stroke_rect(x0 * s, y0 * s, (x1 - x0) * s, (y1 - y0) * s)
            if self._polygon:
                points = np.array(self._polygon) * s
                layer.stroke_lines(points)
                layer.fill_circles(points[:, 0], points[:, 1], 3)

    def _render_all(self, *_):
        self._render_image()
        self._render_overlay()
        self._render_preview()

    def _cancel_polygon(self):
        self._polygon = []
        self.preview.clear()

    def _update_labels(self):
        h, w = self._image.shape[:2]
        self.position.value = f"{self._index + 1}/{len(self.image_ids)}: {self.current_id} ({w} x {h})"
        self.progress.value = f"<b>{len(self._annotated)} / {len(self.image_ids)} annotated</b>"

    def _message(self, text, error=False):
        colour = "#c0392b" if error else "#555"
        self.status.value = f'<span style="color:{colour}">{text}</span>' if text else ""
