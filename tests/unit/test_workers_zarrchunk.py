"""The pixel layout of an OME-Zarr chunk (workers/zarrchunk.py): the bands first, the
image's dtype little-endian, zeros past the content."""

from __future__ import annotations

import numpy as np

from tilecast.workers.zarrchunk import chunk_pixels


def test_chunk_pixels_are_bands_first_and_padded() -> None:
    tile = np.arange(256 * 256 * 3, dtype=np.uint16).reshape(256, 256, 3)
    chunk = chunk_pixels(tile, 3, np.dtype(np.uint16), (100, 40), (256, 256))
    assert chunk.shape == (3, 256, 256) and chunk.dtype == np.dtype("<u2")
    np.testing.assert_array_equal(chunk[1, :40, :100], tile[:40, :100, 1])
    assert not chunk[:, 40:, :].any() and not chunk[:, :, 100:].any()
    gray = np.full((256, 256, 1), 7, np.uint8)  # a grey JPEG tile of an RGB image
    assert (chunk_pixels(gray, 3, np.dtype(np.uint8), (256, 256), (256, 256)) == 7).all()
