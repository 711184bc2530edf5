"""OME-TIFF: the TIFF reader with the frames, channels and pixel size of the first page's
OME-XML (workers/sources/ome.py), as large_image's ``ometiff`` source reports them.

Tried before the plain TIFF reader, as large_image's ``ometiff`` source answers before
its ``tiff`` one. A TIFF without OME-XML, or whose OME layout that source refuses, is
passed on (:class:`ReaderDeclined`) to the plain TIFF reader, which reads its pages in
order -- what large_image then does too. Both share one parse of the file's directories
(``parsed_tiff``).
"""

from __future__ import annotations

import logging

from tilecast.workers.sources.ome import OmeUnsupported, parse_ome
from tilecast.workers.sources.reader import PRIORITIES, Probe, ReaderDeclined
from tilecast.workers.sources.tiff import TiffSource, parsed_tiff
from tilecast.workers.sources.tiffdir import TiffDirectory, TiffFormatError

log = logging.getLogger(__name__)

# Every OME-XML root names its element; a description without these bytes holds none.
OME_MARKER = b"OME"


class OmeTiffSource(TiffSource):
    name = "ome-tiff"
    priority = PRIORITIES["ome-tiff"]
    format_name = "OME-TIFF"

    @classmethod
    def can_read(cls, probe: Probe) -> bool:
        if not super().can_read(probe):
            return False
        try:
            directories = parsed_tiff(probe).directories
        except (TiffFormatError, OSError):
            return False  # the plain TIFF reader reports what is wrong with it
        description = directories[0].image_description if directories else None
        return description is not None and OME_MARKER in description

    def _frame_axes(self, base: TiffDirectory) -> None:
        """Frames ordered by their OME TiffData, with OME's axes and channel names."""
        try:
            layout = parse_ome(base.image_description)
        except OmeUnsupported as exc:
            log.info("%s: OME-XML not used (%s); reading its pages in order", self.path, exc)
            raise ReaderDeclined(f"OME layout not read: {exc}") from None
        if layout is None:
            raise ReaderDeclined("the first page holds no OME-XML")
        by_page = {frame[-1].index: frame for frame in self._frames if frame[-1] is not None}
        if any(page not in by_page for page in layout.ifds):
            log.info("%s: OME-XML names pages that are not frames; read in page order", self.path)
            raise ReaderDeclined("the OME-XML names pages that are not frames")
        self._frames = [by_page[page] for page in layout.ifds]
        self.frame_count = len(self._frames)
        self.frame_info = layout.frames
        self.channel_names = layout.channels or None
        self.frames_always_listed = True
        if self.mm_x is None and layout.mm_x is not None:
            self.mm_x = layout.mm_x
        if self.mm_y is None and layout.mm_y is not None:
            self.mm_y = layout.mm_y
        if not self.magnification and self.mm_x:
            self.magnification = 0.01 / self.mm_x
