"""Girder items as image sources (DESIGN.md, "Sources"): an item id resolves, through
girder-client and the service account's API key, to its large-image file, which
workers read the cheapest way available -- see workers/girder/opening.py."""

from tilecast.workers.girder.opening import (
    GirderImage,
    forget_readers,
    open_girder_file,
    remember_registration,
)

__all__ = ["GirderImage", "forget_readers", "open_girder_file", "remember_registration"]
