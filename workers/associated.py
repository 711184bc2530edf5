"""Rendering associated images (label, macro, thumbnail) and their list, as large_image's
``getAssociatedImagesList`` / ``getAssociatedImage`` produce them.

An image asked with ``width`` and/or ``height`` is fitted into them keeping its aspect
ratio (large_image's ``_calculateWidthHeight``) and resized with PIL -- bicubic when
enlarging, Lanczos when reducing, as large_image does -- then encoded like a tile.
"""

from __future__ import annotations

import json

import numpy as np
import PIL.Image

from tilecast.common.associated import AssociatedRequest
from tilecast.common.errors import BadRequest
from tilecast.workers.encode import encode_pixels, to_uint8
from tilecast.workers.sources import ImageSource

PIL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def render_associated(source: ImageSource, request: AssociatedRequest, limit: int) -> bytes:
    """The JSON list of names (``request.name`` None) or one encoded associated image.
    ``limit`` bounds the output's width and height."""
    if request.name is None:
        return json.dumps(source.associated_names()).encode()
    pixels = to_uint8(source.associated_image(request.name))
    height, width = pixels.shape[:2]
    if request.width or request.height:
        out_w, out_h = fit_size(request.width or None, request.height or None, width, height)
        if out_w > limit or out_h > limit:
            raise BadRequest(
                f"the associated image would be {out_w} x {out_h}, more than {limit} a side",
                parameter="width" if out_w > limit else "height",
            )
        pixels = resize(pixels, out_w, out_h)
    return encode_pixels(pixels, request.encoding)


def fit_size(
    width: int | None, height: int | None, image_width: int, image_height: int
) -> tuple[int, int]:
    """The largest size within ``width`` x ``height`` (None: unconstrained, at most 16x
    the other side) with the image's aspect ratio, rounded as large_image rounds it."""
    if image_width == 0 or image_height == 0:
        return 0, 0
    if height and not width:
        width = height * 16
    if width and not height:
        height = width * 16
    assert width is not None and height is not None
    scaled_width = max(1, int(image_width * float(height) / image_height))
    scaled_height = max(1, int(image_height * float(width) / image_width))
    if scaled_width == width or (
        float(width) * image_height > float(height) * image_width and scaled_height != height
    ):
        return int(scaled_width), int(height)
    return int(width), int(scaled_height)


def resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """``pixels`` (uint8, 1-4 bands) resized with large_image's PIL filters."""
    source_height, source_width, bands = pixels.shape
    if (width, height) == (source_width, source_height):
        return pixels
    image = PIL.Image.fromarray(
        pixels[:, :, 0] if bands == 1 else np.ascontiguousarray(pixels), PIL_MODES[bands]
    )
    # large_image: bicubic when enlarging, Lanczos when reducing.
    enlarging = width > source_width
    resample = PIL.Image.Resampling.BICUBIC if enlarging else PIL.Image.Resampling.LANCZOS
    result = np.asarray(image.resize((width, height), resample))
    return result[:, :, np.newaxis] if result.ndim == 2 else result
