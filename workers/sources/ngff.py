"""OME-NGFF metadata (https://ngff.openmicroscopy.org/), versions 0.4 and 0.5: the parts the
OME-Zarr reader (workers/sources/omezarr.py) uses, checked as they are parsed.

Version 0.4 keeps its metadata in a zarr v2 group's attributes (``multiscales``,
``omero``, ``plate``, ``well`` at the top level); 0.5 keeps the same under the zarr v3
group's ``ome`` attribute, with one ``version`` for all of it. :func:`ome_attributes`
hides that difference. Everything wrong here is an :class:`NgffError` whose message names
what is wrong, never a path; the reader turns it into a 422.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

VERSIONS = ("0.4", "0.5")
AXIS_NAMES = ("t", "c", "z", "y", "x")
# Bounds on lists a hostile document could make long.
MAX_DATASETS = 64
MAX_CHANNELS = 4096
MAX_WELLS = 100_000
MAX_FIELDS = 10_000
# A dataset or well path is a relative path of plain names: nothing that leaves the store.
PATH_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
# What large_image's zarr source turns a spatial unit into (millimetres per unit); other
# units leave mm_x / mm_y unknown there, and here.
UNIT_MM = {"micrometer": 1e-3, "millimeter": 1.0, "meter": 1e3}


class NgffError(ValueError):
    """NGFF metadata tilecast cannot read; the message says why."""


@dataclass(frozen=True)
class Axis:
    name: str  # one of AXIS_NAMES
    unit: str | None


@dataclass(frozen=True)
class Dataset:
    path: str
    scale: tuple[float, ...] | None  # per axis, when the dataset states one


@dataclass(frozen=True)
class Multiscale:
    version: str
    axes: tuple[Axis, ...]
    datasets: tuple[Dataset, ...]

    def axis_index(self, name: str) -> int | None:
        for index, axis in enumerate(self.axes):
            if axis.name == name:
                return index
        return None


@dataclass(frozen=True)
class Image:
    """An NGFF image group: its (first) multiscale and its omero channels' labels (None
    where a channel has none). Their colours and windows are not read: large_image's
    metadata has no place for them, and a style names its own."""

    multiscale: Multiscale
    labels: tuple[str | None, ...]


def ome_attributes(attributes: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The NGFF version a group's attributes state (None when they state none) and the
    dictionary holding its NGFF keys (``multiscales``, ``omero``, ``plate``, ...)."""
    ome = attributes.get("ome")
    if isinstance(ome, dict):
        version = ome.get("version")
        return (str(version) if version is not None else None), ome
    version = None
    for key in ("multiscales", "plate", "well"):
        block = attributes.get(key)
        if isinstance(block, list) and block and isinstance(block[0], dict):
            block = block[0]
        if isinstance(block, dict) and block.get("version") is not None:
            version = str(block["version"])
            break
    return version, attributes


def group_kind(attributes: dict[str, Any]) -> str | None:
    """``"image"``, ``"plate"``, ``"well"`` or ``"series"`` (a bioformats2raw layout) for
    a group whose attributes make it one, else None."""
    _, ome = ome_attributes(attributes)
    if isinstance(ome.get("multiscales"), list):
        return "image"
    if isinstance(ome.get("plate"), dict):
        return "plate"
    if isinstance(ome.get("well"), dict):
        return "well"
    if "bioformats2raw.layout" in ome:
        return "series"
    return None


def check_version(version: str | None) -> str:
    if version is None:
        return VERSIONS[0]  # 0.4 documents written before the key was required
    if version not in VERSIONS:
        raise NgffError(f"NGFF version {version} is not read (versions {', '.join(VERSIONS)} are)")
    return version


def relative_path(value: object, what: str) -> str:
    """``value`` as a path below the group: plain names joined by ``/``."""
    if not isinstance(value, str) or not value:
        raise NgffError(f"{what} has no path")
    parts = value.strip("/").split("/")
    if len(parts) > 8 or not all(PATH_PART.fullmatch(part) and part != ".." for part in parts):
        raise NgffError(f"{what} has a path tilecast does not follow ({value[:40]!r})")
    return "/".join(parts)


def parse_image(attributes: dict[str, Any]) -> Image:
    version, ome = ome_attributes(attributes)
    multiscales = ome.get("multiscales")
    if not isinstance(multiscales, list) or not multiscales or not isinstance(multiscales[0], dict):
        raise NgffError("the image has no multiscales")
    first = multiscales[0]
    version = check_version(version or _str_or_none(first.get("version")))
    axes = _parse_axes(first.get("axes"))
    datasets = _parse_datasets(first.get("datasets"), len(axes))
    omero = ome.get("omero") if isinstance(ome.get("omero"), dict) else None
    return Image(Multiscale(version, axes, datasets), _parse_labels(omero))


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _parse_axes(value: object) -> tuple[Axis, ...]:
    if not isinstance(value, list) or not 2 <= len(value) <= 5:
        raise NgffError("the multiscale's axes are not a list of 2 to 5 axes")
    axes: list[Axis] = []
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise NgffError("an axis is not an object with a name")
        name = entry["name"].lower()
        if name not in AXIS_NAMES:
            raise NgffError(f"axis {entry['name'][:20]!r} is not read (axes t, c, z, y, x are)")
        if any(axis.name == name for axis in axes):
            raise NgffError(f"axis {name!r} is listed twice")
        unit = entry.get("unit")
        axes.append(Axis(name, unit if isinstance(unit, str) else None))
    if not {"x", "y"} <= {axis.name for axis in axes}:
        raise NgffError("the image lacks an x or a y axis")
    return tuple(axes)


def _parse_datasets(value: object, dimensions: int) -> tuple[Dataset, ...]:
    if not isinstance(value, list) or not value:
        raise NgffError("the multiscale lists no datasets")
    if len(value) > MAX_DATASETS:
        raise NgffError(f"the multiscale lists more than {MAX_DATASETS} datasets")
    datasets = []
    for number, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise NgffError(f"dataset {number} is not an object")
        path = relative_path(entry.get("path"), f"dataset {number}")
        datasets.append(Dataset(path, _scale(entry.get("coordinateTransformations"), dimensions)))
    return tuple(datasets)


def _scale(transformations: object, dimensions: int) -> tuple[float, ...] | None:
    """The dataset's scale transformation, when it has a usable one."""
    if not isinstance(transformations, list):
        return None
    for transformation in transformations:
        if isinstance(transformation, dict) and transformation.get("type") == "scale":
            scale = transformation.get("scale")
            if (
                isinstance(scale, list)
                and len(scale) == dimensions
                and all(isinstance(v, int | float) and v > 0 for v in scale)
            ):
                return tuple(float(v) for v in scale)
            return None
    return None


def _parse_labels(omero: dict[str, Any] | None) -> tuple[str | None, ...]:
    if omero is None or not isinstance(omero.get("channels"), list):
        return ()
    labels: list[str | None] = []
    for entry in omero["channels"][:MAX_CHANNELS]:
        label = entry.get("label") if isinstance(entry, dict) else None
        labels.append(str(label) if isinstance(label, str | int | float) else None)
    return tuple(labels)


def channel_names(image: Image) -> list[str] | None:
    """The channel names large_image's zarr source reports: the omero labels, unless
    every one of them is a default ``Channel ...`` name (or one is missing)."""
    labels = image.labels
    if not labels or any(label is None for label in labels):
        return None
    names = [str(label) for label in labels]
    if all(name.startswith("Channel ") for name in names):
        return None
    return names


def pixel_size_mm(image: Image, axis: str) -> float | None:
    """Millimetres per full-resolution pixel along ``axis`` (the first dataset's scale
    in the axis's unit), as large_image's zarr source reads it."""
    index = image.multiscale.axis_index(axis)
    scale = image.multiscale.datasets[0].scale
    if index is None or scale is None:
        return None
    per_unit = UNIT_MM.get(image.multiscale.axes[index].unit or "")
    return scale[index] * per_unit if per_unit is not None else None


@dataclass(frozen=True)
class Plate:
    """An HCS plate: its wells' paths in the plate's order."""

    version: str
    wells: tuple[str, ...]


def parse_plate(attributes: dict[str, Any]) -> Plate:
    version, ome = ome_attributes(attributes)
    plate = ome.get("plate")
    if not isinstance(plate, dict):
        raise NgffError("the plate has no plate metadata")
    version = check_version(version or _str_or_none(plate.get("version")))
    wells = plate.get("wells")
    if not isinstance(wells, list) or not wells:
        raise NgffError("the plate lists no wells")
    if len(wells) > MAX_WELLS:
        raise NgffError(f"the plate lists more than {MAX_WELLS} wells")
    paths = tuple(
        relative_path(well.get("path") if isinstance(well, dict) else None, f"well {n}")
        for n, well in enumerate(wells)
    )
    return Plate(version, paths)


def parse_well(attributes: dict[str, Any]) -> tuple[str, ...]:
    """The paths of a well's fields (images), in the well's order."""
    version, ome = ome_attributes(attributes)
    well = ome.get("well")
    if not isinstance(well, dict):
        raise NgffError("a well has no well metadata")
    check_version(version or _str_or_none(well.get("version")))
    images = well.get("images")
    if not isinstance(images, list) or not images:
        raise NgffError("a well lists no fields")
    if len(images) > MAX_FIELDS:
        raise NgffError(f"a well lists more than {MAX_FIELDS} fields")
    return tuple(
        relative_path(image.get("path") if isinstance(image, dict) else None, f"field {n}")
        for n, image in enumerate(images)
    )
