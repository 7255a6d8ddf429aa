"""What the widget tests share: mouse events as the browser sends them, and small images."""

import base64
import io

import numpy as np
from PIL import Image

from agkit.data.mask_store import MaskStore


def mouse(ann, *events):
    """Feed ("down"|"move"|"up"|"out", x, y) events in as the browser's custom messages do."""
    for kind, x, y in events:
        ann.canvas._handle_custom_msg({"event": f"mouse_{kind}", "x": x, "y": y}, [])


def drag(ann, start, end, steps=4):
    (x0, y0), (x1, y1) = start, end
    moves = [
        ("move", x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps) for k in range(1, steps)
    ]
    mouse(ann, ("down", x0, y0), *moves, ("up", x1, y1))


def on_disk(folder, image_id):
    return MaskStore(folder).get(image_id)  # a fresh store: only what reached the disk


def grey_images(*shapes):
    rng = np.random.default_rng(0)
    return [(f"img{k}", rng.random(shape).astype(np.float32)) for k, shape in enumerate(shapes)]


def decode_png(data_url):
    """A "data:image/png;base64,..." string -> the PIL image it holds."""
    header, payload = data_url.split(",", 1)
    assert header == "data:image/png;base64"
    return Image.open(io.BytesIO(base64.b64decode(payload)))
