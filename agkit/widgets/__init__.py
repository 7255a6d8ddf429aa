"""The annotation widget: draw guidance masks on radiographs inside a notebook.

``MaskAnnotator(images, store)`` works in JupyterLab, Notebook 7, VS Code and Colab: its
canvas is an anywidget (``canvas.py`` + ``canvas.js``), and on Colab the kit enables the
custom widget manager itself (``agkit.course.colab.enable_widget_manager``). Images are read by
``agkit.data.io.to_array``, the kit's one reader. Three modules, one concept each:

* ``editor``    -- the pure editing model: mouse shapes -> pixels at the image's own
  resolution (through ``agkit.data.shapes``), and one mask with its undo history;
* ``canvas``    -- the browser half: shows the image and mask, sends mouse events;
* ``annotator`` -- the widget: controls, navigation, and saving every change to a MaskStore.
"""

import warnings

from agkit.widgets.annotator import MaskAnnotator, image_source
from agkit.widgets.canvas import MaskCanvas
from agkit.widgets.editor import MaskEditor, box_pixels, polygon_pixels, stroke_pixels

__all__ = [
    "MaskAnnotator",
    "MaskCanvas",
    "MaskEditor",
    "box_pixels",
    "stroke_pixels",
    "polygon_pixels",
    "image_source",
]

# old name -> (module, new name); kept for one release with a DeprecationWarning
_MOVED = {
    "enable_colab_widget_manager": ("agkit.course.colab", "enable_widget_manager"),
    "image_to_array": ("agkit.data.io", "to_array"),
}


def __getattr__(name):
    if name not in _MOVED:
        raise AttributeError(f"module 'agkit.widgets' has no attribute {name!r}")
    module, new = _MOVED[name]
    note = " (it scales values to [0, 1])" if new == "to_array" else ""
    warnings.warn(
        f"agkit.widgets.{name} is now {module}.{new}{note}; the old name goes in the next release.",
        DeprecationWarning,
        stacklevel=2,
    )
    from importlib import import_module

    return getattr(import_module(module), new)
