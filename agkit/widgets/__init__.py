"""The annotation widget: draw guidance masks on radiographs inside a notebook.

``MaskAnnotator(images, store)`` works in JupyterLab, Notebook 7, VS Code and Colab: its
canvas is an anywidget (``canvas.py`` + ``canvas.js``), and on Colab the kit enables the
custom widget manager itself. Three modules, one concept each:

* ``editor``    -- the pure editing model: rasterising boxes, strokes and polygons at the
  image's own resolution, and one mask with its undo history (numpy only);
* ``canvas``    -- the browser half: shows the image and mask, sends mouse events;
* ``annotator`` -- the widget: controls, navigation, and saving every change to a MaskStore.
"""
from agkit.widgets.annotator import MaskAnnotator, image_source, image_to_array
from agkit.widgets.canvas import MaskCanvas, enable_colab_widget_manager
from agkit.widgets.editor import MaskEditor, box_pixels, polygon_pixels, stroke_pixels

__all__ = [
    "MaskAnnotator", "MaskCanvas", "MaskEditor",
    "box_pixels", "stroke_pixels", "polygon_pixels",
    "image_source", "image_to_array", "enable_colab_widget_manager",
]
