"""MaskAnnotator: draw guidance masks on radiographs inside a notebook.

The widget around the editing model (``agkit.widgets.editor``): its view, a ``MaskCanvas``
(the browser half, an anywidget) and a few ipywidgets controls, is ``agkit.widgets.view``;
what it can annotate is read through ``agkit.widgets.images``. Mouse handlers turn canvas
coordinates into image coordinates and call the same methods as the programmatic API
(``draw_box``, ``paint``, ``erase``, ``fill_polygon``, ...), so everything the mouse does can
be tested without a browser. The canvas shows the same picture ``scale`` times larger than the
image, so a mouse at canvas (u, v) points at image (u / scale, v / scale).

Saving: every change is written at once with ``MaskStore.put`` (atomic), with
``source="drawn"`` and ``tool="agkit.MaskAnnotator <tool>"``. A change that leaves the mask
empty (``clear()``, erasing everything, undoing the first stroke) calls
``MaskStore.delete``: in agkit an all-zero mask means "not annotated". The store is the
only state: when the kernel dies nothing is lost, and a new annotator resumes at the first
unannotated image. The undo history lives in memory and is reset when you change image.
A call that is rejected (a bad index, NaN coordinates, a radius below 1) changes nothing
and saves nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from agkit.course.colab import enable_widget_manager
from agkit.data.mask_store import MaskStore
from agkit.widgets.editor import MaskEditor, check_radius, finite_points
from agkit.widgets.images import image_source
from agkit.widgets.view import AnnotatorView

CLOSE_DISTANCE = 8  # canvas pixels: a polygon click this close to the first vertex closes it


# ----------------------------------------------------------------------------- the widget
class MaskAnnotator(AnnotatorView):
    """Notebook widget to draw, edit and save one guidance mask per image.

    images: what to annotate (see `image_source`): a GuidedDataset, a SynthFrac, a dict
        image_id -> image, a sequence of (image_id, image) pairs, or a sequence of images
        (H x W arrays or tensors, 1 x H x W, H x W x 3, or file paths). Sizes may differ.
    store: a MaskStore, or the folder of one.
    image_ids: names for a plain sequence of images (default "0", "1", ...).
    display_size: the view's largest side in screen pixels (int), or a (width, height) box;
        the image is scaled to fit it, aspect kept.
    start: index or image id to open; default: the first image without a mask.
    brush_radius: initial brush/eraser radius, in image pixels (>= 1).
    order: optional sequence of image indices (or ids), e.g. a ranking of which images are
        most worth annotating; "Next unannotated" and the default `start` follow it and
        visit only those images.

    With the mouse: "box" drag a rectangle; "brush"/"eraser" drag to paint/erase;
    "polygon" click the vertices, then click the first vertex again or press "Close polygon".
    "window" sets the grey-level window (contrast); "Auto" stretches the 1st-99th percentiles.
    """

    def __init__(
        self,
        images,
        store,
        *,
        image_ids=None,
        display_size=512,
        start=None,
        brush_radius=4,
        order=None,
    ):
        super().__init__()
        enable_widget_manager()
        self.add_class("agkit-mask-annotator")
        self.image_ids, self._get_image = image_source(images, image_ids)
        if not self.image_ids:
            raise ValueError("MaskAnnotator got no images; pass at least one image.")
        self._position = {image_id: i for i, image_id in enumerate(self.image_ids)}
        self.order = None if order is None else self._check_order(order)
        box = (display_size, display_size) if np.isscalar(display_size) else display_size
        self.display_box = tuple(int(v) for v in box)
        self.store, self._store_error = self._open_store(store)
        stored = set() if self.store is None else set(self.store.annotated_ids())
        self._annotated = stored & set(self.image_ids)
        self._drag, self._polygon = None, []  # mouse state, in image coordinates
        self._quiet = False  # True while the window slider is being set from code
        self._index = None
        self._build_controls(check_radius(brush_radius))
        if start is None:
            start = self._next_unannotated(None)
        self.go_to(start if start is not None else self._visit_order()[0])

    # ---------------------------------------------------------------- validation
    def _resolve(self, index, what="go_to"):
        """A valid 0-based image index from an int (Python or numpy) or an image id."""
        if isinstance(index, str):
            if index not in self._position:
                raise ValueError(
                    f"{what}: no image with id {index!r} here; pass one of the "
                    f"{len(self.image_ids)} image ids or an index."
                )
            return self._position[index]
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(
                f"{what} takes an image index (an int) or an image id (a str), got "
                f"{index!r} of type {type(index).__name__}."
            )
        if not 0 <= index < len(self.image_ids):
            raise IndexError(
                f"{what}: image index {index} is out of range 0..{len(self.image_ids) - 1}."
            )
        return int(index)

    def _check_order(self, order):
        if isinstance(order, (str, bytes)) or not hasattr(order, "__iter__"):
            raise TypeError(f"order must be a sequence of image indices, got {order!r}.")
        resolved = [self._resolve(k, "order") for k in order]
        if not resolved:
            raise ValueError("order is empty; pass at least one image index, or leave it out.")
        if len(set(resolved)) != len(resolved):
            raise ValueError("order lists an image twice; pass each image index at most once.")
        return resolved

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
        """Write the current mask to the store, or delete the stored one when it is empty."""
        image_id = self.current_id
        if self._editor.mask.any():
            self.store.put(
                image_id, self._editor.mask, source="drawn", tool=f"agkit.MaskAnnotator {tool}"
            )
            self._annotated.add(image_id)
        elif image_id in self.store:
            self.store.delete(image_id)
            self._annotated.discard(image_id)

    def _edit(self, tool, method, *args):
        """Run one MaskEditor edit on the current image and save it; undo it if saving fails."""
        if self._locked:
            raise RuntimeError(self._locked)
        before = self._editor.snapshot()
        if getattr(self._editor, method)(*args):
            try:
                self._save(tool)
            except Exception as err:
                self._editor.restore(before)
                raise RuntimeError(
                    f"NOT saved ({tool}), so the edit was taken back: {err}"
                ) from err
            finally:
                self._render_overlay()
                self._update_labels()
            if self.current_id in self._annotated:
                self._message(f"Saved {self.current_id} ({tool}).")
            else:
                self._message(
                    f"Saved {self.current_id} ({tool}): the mask is empty, so it was deleted."
                )
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
        """Add a brush stroke through points [(x, y), ...] (image pixels), radius >= 1."""
        return self._edit("brush", "paint", points, radius)

    def erase(self, points, radius):
        """Remove a brush stroke through points [(x, y), ...] (image pixels), radius >= 1."""
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
        """Show image `index` (a 0-based int) or the image with that id, with its stored mask.

        A bad index or id raises and leaves the widget on the image it showed.
        """
        index = self._resolve(index)
        image = self._get_image(index)  # may raise: nothing has changed yet
        image_id, (h, w) = self.image_ids[index], image.shape[:2]
        locked, mask = self._store_error, None
        if self.store is not None:
            try:
                mask = self.store.get(image_id)
            except Exception as err:
                locked = (
                    f"Could not read the stored mask of {image_id}: {err}. Editing this "
                    "image is disabled so the file is not overwritten; restore or delete it."
                )
        if mask is not None and mask.shape != (h, w):
            locked = (
                f"The stored mask of {image_id} is {mask.shape[0]} x {mask.shape[1]} but "
                f"the image is {h} x {w}; editing is disabled. Delete the mask to redraw it."
            )
            mask = None
        self._index, self._image, self._locked = index, image, locked
        self._drag, self._polygon = None, []
        self._editor = MaskEditor(np.zeros((h, w), np.uint8) if mask is None else mask)
        with self.canvas.hold_sync():
            self._fit_canvas(h, w)
            self._reset_window()
            self._render_overlay()
            self._render_preview()
        self._update_labels()
        self._message(self._locked or "", error=True)
        return self

    def next_unannotated(self):
        """Go to the next image without a mask: after the current one, wrapping round, in
        `order` when one was given (only the images it lists), else in dataset order."""
        index = self._next_unannotated(self._index)
        if index is None:
            self._message(
                "All images are annotated."
                if self.order is None
                else "All images in the given order are annotated."
            )
            return self
        return self.go_to(index)

    def _visit_order(self):
        return self.order if self.order is not None else list(range(len(self.image_ids)))

    def _next_unannotated(self, after):
        """First unannotated index in visit order after index `after` (None: from the start)."""
        visit = self._visit_order()
        begin = visit.index(after) + 1 if after in visit else 0
        for k in range(len(visit)):
            i = visit[(begin + k) % len(visit)]
            if self.image_ids[i] not in self._annotated:
                return i
        return None

    # ---------------------------------------------------------------- mouse handlers
    def _to_image(self, x, y):
        """Canvas coordinates -> image pixel coordinates; ValueError for non-finite ones."""
        ((x, y),) = finite_points([(x, y)], "mouse position")
        h, w = self._editor.mask.shape
        return x * w / self.canvas.width, y * h / self.canvas.height

    def on_mouse_down(self, x, y):
        point = self._to_image(x, y)
        if self.tool.value == "polygon":
            return self._polygon_click(point)
        self._drag = [point]

    def on_mouse_move(self, x, y):
        if self._drag is not None:
            self._drag.append(self._to_image(x, y))

    def on_mouse_up(self, x, y):
        if self._drag is None:
            return
        points, self._drag = self._drag + [self._to_image(x, y)], None
        tool, radius = self.tool.value, self.brush_radius.value
        if tool == "box":
            (x0, y0), (x1, y1) = points[0], points[-1]
            self.draw_box(x0, y0, x1, y1)  # a plain click is an empty box: no change
        elif tool in ("brush", "eraser"):
            (self.paint if tool == "brush" else self.erase)(points, radius)

    def _on_canvas_mouse(self, event, x, y):
        """A mouse event from the browser: errors are shown in the widget, not lost in a log."""
        handler = {
            "mouse_down": self.on_mouse_down,
            "mouse_move": self.on_mouse_move,
            "mouse_up": self.on_mouse_up,
            "mouse_out": self.on_mouse_up,
        }[event]
        try:
            handler(x, y)
        except Exception as err:
            self._drag = None  # a rejected point ends the stroke: nothing half-drawn is kept
            self._message(str(err), error=True)

    def _polygon_click(self, point):
        if self._polygon and len(self._polygon) >= 3:
            distance = math.hypot(*np.subtract(point, self._polygon[0])) * self._scale
            if distance < CLOSE_DISTANCE:  # clicking the first vertex closes the outline
                return self.close_polygon()
        self._polygon.append(point)
        self._render_preview()

    def close_polygon(self):
        """Fill the polygon clicked so far (needs 3 vertices) and start a new one."""
        points, self._polygon = self._polygon, []
        self._render_preview()
        if len(points) >= 3:
            self.fill_polygon(points)
        else:
            self._message("Click at least 3 vertices before closing the polygon.", error=True)

    def _guarded(self, action):
        """Run a button's action; show errors instead of losing them in a log."""
        try:
            action()
        except Exception as err:
            self._message(str(err), error=True)
