"""The annotation widget: draw guidance masks on radiographs inside a notebook.

``MaskAnnotator(images, store)`` works in JupyterLab, Notebook 7, VS Code and Colab: its
canvas is an anywidget (``canvas.py`` + ``canvas.js``), and on Colab the kit enables the
custom widget manager itself (``agkit.course.colab.enable_widget_manager``). Images are read by
``agkit.data.io.to_array``, the kit's one reader. Its modules, one concept each:

* ``editor``    -- the pure editing model: mouse shapes -> pixels at the image's own
  resolution (through ``agkit.data.shapes``), and one mask with its undo history;
* ``canvas``    -- the browser half: shows the image and mask, sends mouse events;
* ``images``    -- what can be annotated: any collection of images as (ids, get);
* ``view``      -- the widget's controls and its picture on the canvas;
* ``annotator`` -- the widget: navigation, the mouse, and saving every change to a MaskStore;
* ``simulated`` -- a simulated annotator drawing through the widget's own tools.
"""

from agkit.widgets.annotator import MaskAnnotator
from agkit.widgets.canvas import MaskCanvas
from agkit.widgets.editor import MaskEditor, box_pixels, polygon_pixels, stroke_pixels
from agkit.widgets.images import image_source

__all__ = [
    "MaskAnnotator",
    "MaskCanvas",
    "MaskEditor",
    "box_pixels",
    "stroke_pixels",
    "polygon_pixels",
    "image_source",
]
