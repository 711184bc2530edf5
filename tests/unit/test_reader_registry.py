"""workers/sources/registry.py: readers tried by content in priority order, probes that
fail skipped with a log, declines passed on, refusals final, and readers found through
the ``tilecast.readers`` entry point group (a real dist-info on sys.path)."""

from __future__ import annotations

import importlib.metadata
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tilecast.common.errors import GirderUnavailable, UnsupportedFormat, UnsupportedImage
from tilecast.common.settings import Settings
from tilecast.workers.sources import LocalFile, Probe, Reader, ReaderDeclined
from tilecast.workers.sources import registry as registry_module
from tilecast.workers.sources.composed import ComposedSource
from tilecast.workers.sources.czi import CziSource
from tilecast.workers.sources.dicom import DicomReader
from tilecast.workers.sources.jpeg2000 import Jpeg2000Source
from tilecast.workers.sources.lif import LifSource
from tilecast.workers.sources.nd2 import Nd2Source
from tilecast.workers.sources.ometiff import OmeTiffSource
from tilecast.workers.sources.omezarr import OmeZarrSource
from tilecast.workers.sources.openslide import OpenSlideSource
from tilecast.workers.sources.reader import PRIORITIES
from tilecast.workers.sources.registry import (
    BUILTIN_READERS,
    ReaderRegistry,
    build_registry,
    entry_point_readers,
)
from tilecast.workers.sources.tiff import TiffSource
from tilecast.workers.sources.vipsimage import VipsImageSource

TOY_PACKAGE = Path(__file__).resolve().parents[1] / "data" / "toyreader"
NO_GROUP = "tilecast.readers.none-installed"


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The toy reader package of tests/data/toyreader, importable (not installed)."""
    monkeypatch.syspath_prepend(str(TOY_PACKAGE))
    import toyreader

    yield toyreader
    sys.modules.pop("toyreader", None)


@pytest.fixture
def toy_file(tmp_path: Path, toy: Any) -> Path:
    # Named like a TIFF: the content, not the name, decides.
    path = tmp_path / "looks-like.tiff"
    pixels = np.arange(300 * 200 * 3, dtype=np.uint32).reshape(200, 300, 3) % 251
    toy.write_toy(str(path), pixels.astype(np.uint8))
    return path


def open_with(registry: ReaderRegistry, path: Path) -> Reader:
    file = LocalFile(str(path))
    try:
        return registry.open(file, Settings())
    except BaseException:
        file.close()
        raise


def variant(base: type[Reader], name: str, priority: int, **methods: Any) -> type[Reader]:
    """A subclass of ``base`` under another name and priority, with ``methods`` replaced."""
    body: dict[str, Any] = {"name": name, "priority": priority}
    for key, function in methods.items():
        body[key] = classmethod(function)
    return type(f"{name.title()}Reader", (base,), body)


def test_builtin_readers_in_the_order_tried() -> None:
    registry = build_registry(group=NO_GROUP)
    assert registry.readers == (
        OmeTiffSource, TiffSource, DicomReader, OmeZarrSource, CziSource, Nd2Source,
        LifSource, ComposedSource, Jpeg2000Source, OpenSlideSource, VipsImageSource,
    )  # fmt: skip
    assert registry.names() == [
        "ome-tiff", "tiff", "dicom", "ome-zarr", "czi", "nd2", "lif", "composed", "jpeg2000",
        "openslide", "libvips",
    ]  # fmt: skip
    priorities = [reader.priority for reader in registry.readers]
    assert priorities == [PRIORITIES[name] for name in registry.names()] == sorted(priorities)


def test_content_decides_not_the_name(
    toy: Any, toy_file: Path, images: dict[str, Path], tmp_path: Path
) -> None:
    registry = ReaderRegistry([*BUILTIN_READERS, toy.ToyReader])
    with open_with(registry, toy_file) as source:
        assert isinstance(source, toy.ToyReader)
        assert (source.size_x, source.size_y, source.levels) == (300, 200, 2)
        tile = source.read_tile(1, 1, 0).pixels
        assert tile is not None and tile.shape == (256, 256, 3)
        expected = (np.arange(300 * 200 * 3).reshape(200, 300, 3) % 251).astype(np.uint8)
        assert np.array_equal(tile[:200, :44], expected[:, 256:])
        assert not tile[:, 44:].any() and not tile[200:].any()
    tiff_named_toy = tmp_path / "pyramid.toy"
    tiff_named_toy.write_bytes(images["pyramid"].read_bytes())
    with open_with(registry, tiff_named_toy) as source:
        assert type(source) is TiffSource
    png_named_tiff = tmp_path / "picture.tiff"
    png_named_tiff.write_bytes(images["png"].read_bytes())
    with open_with(registry, png_named_tiff) as source:
        assert type(source) is VipsImageSource


def test_lower_priority_number_wins_then_name(toy: Any, toy_file: Path) -> None:
    late = variant(toy.ToyReader, "late", 900)
    early = variant(toy.ToyReader, "early", 300)
    twin = variant(toy.ToyReader, "another", 300)
    registry = ReaderRegistry([late, VipsImageSource, early, twin])
    assert registry.names() == ["another", "early", "late", "libvips"]
    with open_with(registry, toy_file) as source:
        assert type(source) is twin
    probe = Probe(LocalFile(str(toy_file)))
    with probe.file:
        # libvips recognises none of the toy format's bytes: it is no candidate.
        assert registry.candidates(probe) == [twin, early, late]


def test_a_probe_that_raises_is_skipped_with_a_log(
    toy: Any, toy_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(cls: type[Reader], probe: Probe) -> bool:
        raise KeyError("a bug in the probe")

    registry = ReaderRegistry(
        [variant(toy.ToyReader, "broken", 100, can_read=broken), toy.ToyReader]
    )
    with (
        caplog.at_level(logging.ERROR, logger=registry_module.__name__),
        open_with(registry, toy_file) as source,
    ):
        assert type(source) is toy.ToyReader
    assert "the broken reader's probe failed" in caplog.text
    assert "a bug in the probe" in caplog.text  # the traceback is logged


def test_a_failing_place_is_no_answer_about_the_format(toy: Any, toy_file: Path) -> None:
    def unreachable(cls: type[Reader], probe: Probe) -> bool:
        raise GirderUnavailable("Girder went away")

    registry = ReaderRegistry([variant(toy.ToyReader, "remote", 100, can_read=unreachable)])
    with pytest.raises(GirderUnavailable):
        open_with(registry, toy_file)


def test_a_decline_passes_the_file_on_and_a_refusal_is_final(toy: Any, toy_file: Path) -> None:
    opened: list[str] = []

    def declines(cls: type[Reader], probe: Probe, settings: Settings) -> Reader:
        opened.append(cls.name)
        raise ReaderDeclined("not this variant of the format")

    def refuses(cls: type[Reader], probe: Probe, settings: Settings) -> Reader:
        opened.append(cls.name)
        raise UnsupportedImage("TOYRGB: recognised and unreadable")

    picky = variant(toy.ToyReader, "picky", 100, open=declines)
    registry = ReaderRegistry([picky, toy.ToyReader])
    with open_with(registry, toy_file) as source:
        assert type(source) is toy.ToyReader and opened == ["picky"]
    strict = variant(toy.ToyReader, "strict", 150, open=refuses)
    with pytest.raises(UnsupportedImage, match="recognised and unreadable"):
        open_with(ReaderRegistry([picky, strict, toy.ToyReader, VipsImageSource]), toy_file)
    assert opened == ["picky", "picky", "strict"]  # neither toy nor libvips was asked
    with pytest.raises(UnsupportedFormat, match=r"that no reader takes \(picky: ") as declined:
        open_with(ReaderRegistry([picky]), toy_file)
    assert declined.value.status == 415


def test_a_recognised_unreadable_file_keeps_its_refusal(toy: Any, tmp_path: Path) -> None:
    cut = tmp_path / "cut.img"
    cut.write_bytes(toy.MAGIC + b"300 200\n" + bytes(100))
    registry = ReaderRegistry([*BUILTIN_READERS, toy.ToyReader])
    with pytest.raises(UnsupportedImage, match="size does not match"):
        open_with(registry, cut)
    hostile = tmp_path / "hostile.img"
    hostile.write_bytes(toy.MAGIC + b"1000000 1000000\n")
    with pytest.raises(UnsupportedImage, match="more pixels than this server decodes"):
        open_with(registry, hostile)


@pytest.mark.parametrize(
    ("content", "detected"),
    [
        (b"", "an empty file"),
        (b"just some notes\n" * 50, "the file is text"),
        (b"%PDF-1.7\n" + bytes(600), "a PDF document"),
        (b"PK\x03\x04" + bytes(600), "a zip archive"),
        (b"<!DOCTYPE html><html><body>login</body></html>", "an HTML page"),
        (bytes(range(7, 256)) * 4, "unrecognised binary data (starting 07 08 09"),
    ],
)
def test_content_no_reader_knows_is_a_415_naming_it(
    tmp_path: Path, content: bytes, detected: str
) -> None:
    path = tmp_path / "upload.tiff"  # the name says TIFF; the content decides
    path.write_bytes(content)
    with pytest.raises(UnsupportedFormat) as refused:
        open_with(build_registry(group=NO_GROUP), path)
    assert refused.value.status == 415 and refused.value.code == "unsupported_format"
    assert detected in refused.value.message
    assert str(tmp_path) not in refused.value.message


def test_a_recognised_file_that_does_not_decode_is_a_422_naming_the_reader(
    images: dict[str, Path], tmp_path: Path
) -> None:
    png = tmp_path / "cut.png"
    png.write_bytes(_png_bytes()[:60])  # the signature and IHDR, then nothing
    with pytest.raises(UnsupportedImage) as refused:
        open_with(build_registry(group=NO_GROUP), png)
    assert type(refused.value) is UnsupportedImage and refused.value.status == 422
    assert refused.value.message.startswith("libvips: this PNG file cannot be read")
    assert str(tmp_path) not in refused.value.message


def _png_bytes() -> bytes:
    import pyvips

    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    return bytes(pyvips.Image.new_from_array(pixels).pngsave_buffer())


def test_probe_shares_one_parse_and_its_failure(toy_file: Path) -> None:
    calls: list[str] = []

    def parse(file: object) -> str:
        calls.append("parse")
        return "parsed"

    def fail(file: object) -> str:
        calls.append("fail")
        raise ValueError("not this format")

    with LocalFile(str(toy_file)) as file:
        probe = Probe(file)
        assert probe.head.startswith(b"TOYRGB1\n") and probe.size == toy_file.stat().st_size
        assert probe.shared("x", parse) == probe.shared("x", parse) == "parsed"
        for _ in range(2):
            with pytest.raises(ValueError, match="not this format"):
                probe.shared("y", fail)
    assert calls == ["parse", "fail"]


@pytest.fixture
def installed_toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The toy package as ``pip install`` leaves it: the module plus a dist-info whose
    entry_points.txt names the reader, on sys.path."""
    site = tmp_path / "site"
    (site / "toyreader").mkdir(parents=True)
    source = TOY_PACKAGE / "toyreader" / "__init__.py"
    (site / "toyreader" / "__init__.py").write_bytes(source.read_bytes())
    info = site / "tilecast_toyreader-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tilecast-toyreader\nVersion: 1.0.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[tilecast.readers]\n"
        "toy = toyreader:ToyReader\n"
        "missing = toyreader_absent:Reader\n"
        "not-a-reader = toyreader:write_toy\n"
        "imposter = toyreader:Imposter\n"
    )
    # A reader that takes a name tilecast's own TIFF reader holds.
    with (site / "toyreader" / "__init__.py").open("a") as module:
        module.write("\n\nclass Imposter(ToyReader):\n    name = 'tiff'\n")
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("toyreader", None)


def test_readers_load_from_the_entry_point_group(
    installed_toy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    names = [entry.name for entry in importlib.metadata.entry_points(group="tilecast.readers")]
    assert {"toy", "missing", "not-a-reader", "imposter"} <= set(names)
    with caplog.at_level(logging.DEBUG, logger=registry_module.__name__):
        loaded = entry_point_readers()
        registry = build_registry()
    assert [reader.name for reader in loaded] == ["toy", "tiff"]
    assert registry.names() == [
        "ome-tiff", "tiff", "dicom", "ome-zarr", "czi", "nd2", "lif", "composed", "jpeg2000", "toy",
        "openslide", "libvips",
    ]  # fmt: skip
    assert registry.readers[1] is TiffSource  # tilecast's own reader keeps its name
    assert "'missing' (toyreader_absent:Reader) does not load" in caplog.text
    assert "'not-a-reader' (toyreader:write_toy) names" in caplog.text
    assert "takes the name 'tiff'" in caplog.text
    order = (
        "ome-tiff, tiff, dicom, ome-zarr, czi, nd2, lif, composed, jpeg2000, toy, openslide, "
        "libvips"
    )
    assert f"image readers, in the order tried: {order}" in caplog.text


def test_the_documented_example_is_the_tested_reader() -> None:
    """docs/READERS.md shows the toy reader's code: it must stay the code tested here."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "READERS.md").read_text()
    example = doc.split("`toyreader/__init__.py`:\n\n```python\n", 1)[1].split("```", 1)[0]
    source = (TOY_PACKAGE / "toyreader" / "__init__.py").read_text()
    shown = example[example.index("class ToyReader") :].strip()
    tested = source[source.index("class ToyReader") : source.index("def write_toy")].strip()
    assert shown == tested
