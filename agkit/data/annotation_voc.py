"""Pascal VOC XML files -> ``Shapes``: the boxes of one image, in the frame of its <size>.

The VOC parser is defusedxml's, which refuses entity declarations (XXE, billion laughs).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import defusedxml.ElementTree as defused_et
from defusedxml import DefusedXmlException

from agkit.data.annotation_shapes import Shapes, _numbers, _warn_skipped
from agkit.data.shapes import _first_centre_at_or_after

__all__ = ["read_voc"]


def read_voc(path) -> Shapes:
    """One Pascal VOC XML file -> its boxes, in the frame given by its <size>.

    Parsed with defusedxml, which refuses entity declarations (XXE, billion laughs). A box
    that covers no pixel centre is skipped with a warning; broken XML, a box without one
    of xmin/ymin/xmax/ymax or with NaN is a ValueError naming the file (and the box).
    """
    path = Path(path)
    if not path.is_file():
        return Shapes()
    try:
        root = defused_et.parse(path).getroot()
    except DefusedXmlException as e:
        raise ValueError(
            f"{path}: refused ({type(e).__name__}: {e}); a VOC file needs no DTD or entities, "
            "which is how XXE and billion-laughs attacks are written."
        ) from None
    except ET.ParseError as e:
        raise ValueError(f"{path}:{e.position[0]}: not well-formed XML ({e}).") from None
    size = root.find("size")
    frame = None
    if size is not None and size.findtext("width") and size.findtext("height"):
        w, h = _numbers([size.findtext("width"), size.findtext("height")], "<size>", str(path))
        frame = (w, h) if w > 0 and h > 0 else None  # tools that do not know it write 0
    limit_w, limit_h = (int(frame[0]), int(frame[1])) if frame else (2**62, 2**62)
    tags = ("xmin", "ymin", "xmax", "ymax")
    boxes, skipped = [], []
    for k, box in enumerate(root.iter("bndbox"), start=1):
        at = f"{path}: <bndbox> {k}"
        missing = [t for t in tags if not (box.findtext(t) or "").strip()]
        if missing:
            raise ValueError(f"{at} has no {missing}; a box needs <xmin> <ymin> <xmax> <ymax>.")
        x0, y0, x1, y1 = _numbers([box.findtext(t) for t in tags], "the box", at)
        if x1 < x0 or y1 < y0:
            raise ValueError(f"{at} has xmax < xmin or ymax < ymin: {(x0, y0, x1, y1)}.")
        first = _first_centre_at_or_after
        if first(x0, limit_w) < first(x1, limit_w) and first(y0, limit_h) < first(y1, limit_h):
            boxes.append((x0, y0, x1, y1))
        else:
            skipped.append(f"<bndbox> {k} {(x0, y0, x1, y1)} covers no pixel centre")
    _warn_skipped(str(path), skipped)
    return Shapes(boxes=boxes, frame=frame)
