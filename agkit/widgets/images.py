"""What the annotator can annotate: any collection of images as (image ids, get), each image
read by the kit's one reader, and an image shrunk for display.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from agkit.data.io import to_array


def _shrink(image, size):
    """H x W (x C) float32 image -> the same resized to size = (width, height), bilinear."""
    planes = image.reshape(image.shape[:2] + (-1,))
    resized = [
        np.asarray(Image.fromarray(planes[..., c]).resize(size, Image.Resampling.BILINEAR))
        for c in range(planes.shape[-1])
    ]
    return np.dstack(resized) if image.ndim == 3 else resized[0]


def _is_pair(item):
    return isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)


def image_source(data, image_ids=None):
    """(image ids, get) for any supported collection; get(i) -> image i as an H x W (or
    H x W x 3) float32 array in [0, 1], read by ``agkit.data.io.to_array`` (the kit's one
    reader and scaling rule).

    data: a GuidedDataset (its native-size images), a SynthFrac or any object with
    `.image_ids` and `.images`, a dict image_id -> image, a sequence of (image_id, image)
    pairs, or a sequence of images (a list of arrays/tensors/paths, or an N x H x W or
    N x C x H x W array/tensor) named by `image_ids` (default "0", "1", ...).
    """
    from agkit.data.dataset import GuidedDataset  # imported late: the dataset pulls in torch

    named = None
    if isinstance(data, GuidedDataset):
        named = list(data.image_ids), data.native_image
    elif isinstance(data, Mapping):
        keys = list(data)
        named = [str(k) for k in keys], lambda i: data[keys[i]]
    elif hasattr(data, "image_ids") and hasattr(data, "images"):
        images = data.images  # N x C x H x W, a list of arrays or paths, or i -> array
        named = list(data.image_ids), images if callable(images) else images.__getitem__
    if named is not None:
        if image_ids is not None:
            raise ValueError(
                "image_ids is for a plain sequence of images; this data names its "
                "images already, so leave image_ids out."
            )
        ids, get = named
    else:
        if (
            isinstance(data, (str, Path))
            or not hasattr(data, "__len__")
            or not hasattr(data, "__getitem__")
        ):
            raise TypeError(
                "MaskAnnotator expects a GuidedDataset, a SynthFrac (anything with .image_ids "
                "and .images), a dict image_id -> image, a sequence of (image_id, image) pairs, "
                f"or a sequence of images with image_ids=...; got {type(data).__name__}."
            )
        items = data if hasattr(data, "shape") else list(data)  # arrays/tensors stay lazy
        if hasattr(items, "shape") and len(items.shape) < 3:
            raise ValueError(
                f"Got one array of shape {tuple(items.shape)}, not a sequence of "
                "images; to annotate a single image pass [image]."
            )
        if len(items) and not hasattr(items, "shape") and all(_is_pair(x) for x in items):
            if image_ids is not None:
                raise ValueError("Got (image_id, image) pairs and image_ids; pass one of them.")
            ids, get = [k for k, _ in items], lambda i: items[i][1]
        else:
            ids = [str(k) for k in range(len(items))] if image_ids is None else image_ids
            get = items.__getitem__
    ids = [str(k) for k in ids]
    if image_ids is not None and len(ids) != len(data):
        raise ValueError(f"Got {len(ids)} image_ids for {len(data)} images; pass one id per image.")
    if len(set(ids)) != len(ids):
        raise ValueError("Image ids must be unique: masks are stored by image id.")
    return ids, lambda i: to_array(get(i), f"image {ids[i]!r}")
