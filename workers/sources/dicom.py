"""The DICOM whole-slide reader: VL Whole Slide Microscopy Image series, read with wsidicom.

A file is recognised by DICOM's ``DICM`` at byte 128, a directory source by such a file
among its first entries; opening either reads the series (workers/sources/dicomseries.py,
which also says what is read and how). pydicom and wsidicom are loaded then, not when
the registry is built: they take most of a second to import, which a worker that never
sees a DICOM file need not pay.
"""

from __future__ import annotations

import os

from tilecast.common.settings import Settings
from tilecast.workers.sources.reader import PRIORITIES, Probe, Reader

DICOM_MAGIC_OFFSET, DICOM_MAGIC = 128, b"DICM"
# How many files of a directory source are looked at to recognise a DICOM series: a
# series' instances are all DICOM, so the first few files tell.
DIRECTORY_PROBE_FILES = 16


class DicomReader(Reader):
    name = "dicom"
    priority = PRIORITIES["dicom"]
    format_name = "DICOM WSI"

    @classmethod
    def can_read(cls, probe: Probe) -> bool:
        if probe.is_directory:
            return _holds_dicom(probe)
        return is_dicom(probe.head)

    @classmethod
    def open(cls, probe: Probe, settings: Settings) -> Reader:
        from tilecast.workers.sources.dicomseries import DicomSeries

        return DicomSeries(probe.file, settings)


def is_dicom(head: bytes) -> bool:
    """Whether a file's first bytes carry DICOM's magic (after its 128-byte preamble)."""
    return head[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + len(DICOM_MAGIC)] == DICOM_MAGIC


def _holds_dicom(probe: Probe) -> bool:
    folder = probe.file.local_path
    if folder is None:
        return False
    looked = 0
    for name in probe.entries():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, "rb") as file:
                if is_dicom(file.read(DICOM_MAGIC_OFFSET + len(DICOM_MAGIC))):
                    return True
        except OSError:
            pass
        looked += 1
        if looked >= DIRECTORY_PROBE_FILES:
            break
    return False
