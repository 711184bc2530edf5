"""tilecast's Girder plugin: announces image uploads, imports and deletions to tilecast,
and tells tilecast workers where a file lies on a shared filesystem.

Loads in Girder 3.2 and Girder 5 (both mount REST resources on CherryPy's tree and hand
``load`` the same ``info`` dict with ``apiRoot``).
"""

from __future__ import annotations

from girder.plugin import GirderPlugin


class TilecastPlugin(GirderPlugin):
    DISPLAY_NAME = "tilecast"

    def load(self, info: dict) -> None:
        # Imported here, not at module level: Girder lists installed plugins (importing
        # this module) before its models are set up.
        from . import hooks, rest, settings

        settings.register()
        hooks.bind()
        info["apiRoot"].tilecast = rest.TilecastResource()
