"""Which reader opens a file: tilecast's own readers and those a site installs, tried in
priority order on what the file's content is (docs/READERS.md).

A site adds a format without patching tilecast by installing a package that names a
:class:`~tilecast.workers.sources.reader.Reader` subclass in the entry point group
``tilecast.readers``::

    [project.entry-points."tilecast.readers"]
    toy = "toyreader:ToyReader"

Entry points are loaded once per process, on the first file opened. One that does not
load, or names anything but a Reader, or takes a name already taken, is logged and
left out: a broken plugin costs its format, never the worker.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from collections.abc import Iterable

from tilecast.common.errors import TilecastError, UnsupportedFormat, UnsupportedImage
from tilecast.common.settings import Settings
from tilecast.workers.sources.composed import ComposedSource
from tilecast.workers.sources.czi import CziSource
from tilecast.workers.sources.dicom import DicomReader
from tilecast.workers.sources.files import ImageFile
from tilecast.workers.sources.jpeg2000 import Jpeg2000Source
from tilecast.workers.sources.lif import LifSource
from tilecast.workers.sources.nd2 import Nd2Source
from tilecast.workers.sources.ometiff import OmeTiffSource
from tilecast.workers.sources.omezarr import OmeZarrSource
from tilecast.workers.sources.openslide import OpenSlideSource
from tilecast.workers.sources.reader import Probe, Reader, ReaderDeclined, naming_format
from tilecast.workers.sources.sniff import describe_content
from tilecast.workers.sources.tiff import TiffSource
from tilecast.workers.sources.vipsimage import VipsImageSource

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "tilecast.readers"
BUILTIN_READERS: tuple[type[Reader], ...] = (
    OmeTiffSource,
    TiffSource,
    DicomReader,
    OmeZarrSource,
    CziSource,
    Nd2Source,
    LifSource,
    ComposedSource,
    Jpeg2000Source,
    OpenSlideSource,
    VipsImageSource,
)


class ReaderRegistry:
    """Readers in the order they are tried: by ``priority``, then ``name``."""

    def __init__(self, readers: Iterable[type[Reader]]) -> None:
        self.readers: tuple[type[Reader], ...] = tuple(
            sorted(readers, key=lambda reader: (reader.priority, reader.name))
        )

    def names(self) -> list[str]:
        return [reader.name for reader in self.readers]

    def candidates(self, probe: Probe) -> list[type[Reader]]:
        """The readers that recognise the probed file, in the order they are tried."""
        return [reader for reader in self.readers if _recognises(reader, probe)]

    def open(self, file: ImageFile, settings: Settings) -> Reader:
        """``file`` opened by the first reader that recognises it and does not decline
        it. A reader that recognises the file and cannot read it is a 422 naming that
        reader's format; content no reader recognises (or all declined) is a 415 naming
        what it looks like. The file is left open on failure (its opener closes it)."""
        probe = Probe(file)
        declined: list[str] = []
        for reader in self.readers:
            if not _recognises(reader, probe):
                continue
            try:
                return reader.open(probe, settings)
            except ReaderDeclined as exc:
                log.debug("%s: the %s reader passes it on: %s", file.name, reader.name, exc)
                declined.append(f"{reader.format_name or reader.name}: {exc}")
            except UnsupportedFormat:
                raise
            except UnsupportedImage as exc:
                raise naming_format(exc, reader) from None
        raise _unsupported_format(probe, declined, self.names())


def _unsupported_format(probe: Probe, declined: list[str], names: list[str]) -> UnsupportedFormat:
    if probe.is_directory:
        what = f"a directory of {len(probe.entries())} entries"
    else:
        what = describe_content(probe.head, probe.size)
    if declined:
        why = "; ".join(declined)
        return UnsupportedFormat(f"unsupported format: {what} that no reader takes ({why})")
    return UnsupportedFormat(
        f"unsupported format: the file is {what}, which no reader reads "
        f"(readers: {', '.join(names)})"
    )


def _recognises(reader: type[Reader], probe: Probe) -> bool:
    """``reader.can_read(probe)``; a probe that fails is a bug of that reader, logged
    and taken as a no, so that one broken reader cannot make every file unreadable. An
    error of the file's place (Girder went away: a TilecastError) is no answer about
    the format and is raised."""
    try:
        return bool(reader.can_read(probe))
    except TilecastError:
        raise
    except Exception:
        log.exception("the %s reader's probe failed on %s; skipped", reader.name, probe.file.name)
        return False


def entry_point_readers(group: str = ENTRY_POINT_GROUP) -> list[type[Reader]]:
    """The Reader classes installed packages name in ``group`` (bad ones logged, left out)."""
    found: list[type[Reader]] = []
    for entry in importlib.metadata.entry_points(group=group):
        try:
            loaded = entry.load()
        except Exception:
            log.exception(
                "reader entry point %r (%s) does not load; left out", entry.name, entry.value
            )
            continue
        if not (isinstance(loaded, type) and issubclass(loaded, Reader)):
            log.error(
                "reader entry point %r (%s) names %r, not a Reader subclass; left out",
                entry.name,
                entry.value,
                loaded,
            )
            continue
        if not isinstance(getattr(loaded, "name", None), str) or not isinstance(
            getattr(loaded, "priority", None), int
        ):
            log.error(
                "reader %r (%s) lacks a name or an integer priority; left out",
                entry.name,
                entry.value,
            )
            continue
        found.append(loaded)
    return found


def build_registry(
    builtin: Iterable[type[Reader]] = BUILTIN_READERS, group: str = ENTRY_POINT_GROUP
) -> ReaderRegistry:
    """tilecast's readers plus the installed ones. A plugin may not take a name already
    taken (tilecast's own readers come first): it is logged and left out."""
    readers: dict[str, type[Reader]] = {reader.name: reader for reader in builtin}
    for reader in entry_point_readers(group):
        if reader.name in readers and readers[reader.name] is not reader:
            log.error(
                "reader %s.%s takes the name %r of %s.%s; left out",
                reader.__module__,
                reader.__qualname__,
                reader.name,
                readers[reader.name].__module__,
                readers[reader.name].__qualname__,
            )
            continue
        readers[reader.name] = reader
    registry = ReaderRegistry(readers.values())
    log.debug("image readers, in the order tried: %s", ", ".join(registry.names()))
    return registry


@functools.cache
def default_registry() -> ReaderRegistry:
    """This process's registry, built on first use."""
    return build_registry()
