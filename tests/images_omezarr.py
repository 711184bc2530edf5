"""Small OME-Zarr stores written by the tests, with the format's own writers (issue 17).

``make_omezarr_images(root)`` writes every store of ``OMEZARR_IMAGES`` and returns name ->
path; ``planes(name)`` is the full-resolution content each holds, as the numpy array
written (axes in the store's order), so a test can compare every pixel it reads.

Two writers: ome-zarr-py's ``write_image`` / plate helpers (its own pyramids: halving
levels, zarr v2 for NGFF 0.4, v3 for 0.5), and ``zarr`` directly with hand-written NGFF
attributes (any chunk shape, axis order, data type and set of reduction factors,
sharding). Each store is a few hundred pixels a side: the whole set takes a few seconds.
"""

from __future__ import annotations

import math
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from ome_zarr.format import FormatV04, FormatV05
from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

CHANNEL_NAMES = ("DAPI", "GFP", "TRITC")
CHANNEL_COLORS = ("0000FF", "00FF00", "FF0000")
PLATE_ROWS, PLATE_COLUMNS, PLATE_FIELDS = ("A", "B"), ("1", "2"), 2


@dataclass(frozen=True)
class Spec:
    """One store: what it holds, and how it is written."""

    description: str
    axes: str  # the axes' names in array order
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    version: str  # "0.4" (zarr v2) or "0.5" (zarr v3)
    writer: str  # "ome-zarr-py" or "zarr"
    factors: tuple[int, ...] = (1, 2, 4)  # x/y reduction of each dataset
    channel_names: tuple[str, ...] | None = None  # omero labels (None: no omero block)
    options: dict[str, Any] = field(default_factory=dict)


OMEZARR_IMAGES: dict[str, Spec] = {
    "ngff04_czyx": Spec(
        "ome-zarr-py, NGFF 0.4: 2 named channels x 3 z, 700x900 uint16, chunks 256x300, "
        "halving levels, 0.5 um pixels",
        "czyx",
        (2, 3, 700, 900),
        "uint16",
        (1, 1, 256, 300),
        "0.4",
        "ome-zarr-py",
        factors=(1, 2, 4, 8),
        channel_names=CHANNEL_NAMES[:2],
    ),
    "ngff05_czyx": Spec(
        "ome-zarr-py, NGFF 0.5 (zarr v3): the same content as ngff04_czyx",
        "czyx",
        (2, 3, 700, 900),
        "uint16",
        (1, 1, 256, 300),
        "0.5",
        "ome-zarr-py",
        factors=(1, 2, 4, 8),
        channel_names=CHANNEL_NAMES[:2],
    ),
    "ngff04_tczyx": Spec(
        "ome-zarr-py, NGFF 0.4: 2 t x 3 named channels x 2 z, 300x400 uint8, chunks 128",
        "tczyx",
        (2, 3, 2, 300, 400),
        "uint8",
        (1, 1, 1, 128, 128),
        "0.4",
        "ome-zarr-py",
        factors=(1, 2),
        channel_names=CHANNEL_NAMES,
    ),
    "rgb04": Spec(
        "zarr, NGFF 0.4: cyx, 3 channels named Channel 0-2 (bands), 450x600 uint8, "
        "chunks 3x100x300",
        "cyx",
        (3, 450, 600),
        "uint8",
        (3, 100, 300),
        "0.4",
        "zarr",
        factors=(1, 2),
        channel_names=("Channel 0", "Channel 1", "Channel 2"),
    ),
    "float04_3x": Spec(
        "zarr, NGFF 0.4: zyx, 2 z, 800x1000 float32 (-25 to 325), chunks 300x300, "
        "reductions 1, 2, 3, 4, 8 (the 3x one is not a halving)",
        "zyx",
        (2, 800, 1000),
        "float32",
        (1, 300, 300),
        "0.4",
        "zarr",
        factors=(1, 2, 3, 4, 8),
        channel_names=("intensity",),
    ),
    "yx04_uint16": Spec(
        "zarr, NGFF 0.4: yx only, 500x700 uint16, chunks 100x300, reductions 1 and 3 "
        "(only full resolution is native)",
        "yx",
        (500, 700),
        "uint16",
        (100, 300),
        "0.4",
        "zarr",
        factors=(1, 3),
        channel_names=("only",),
    ),
    "int16_05_tyx": Spec(
        "zarr, NGFF 0.5 (zarr v3): tyx, 3 t, 400x500 int16 (-20000 to 20000), chunks "
        "200x250, no omero",
        "tyx",
        (3, 400, 500),
        "int16",
        (1, 200, 250),
        "0.5",
        "zarr",
    ),
    "zcyx04": Spec(
        "zarr, NGFF-like 0.4 with axes in a non-standard order (z, c, y, x): 2 z x 2 named "
        "channels, 300x300 uint16, chunks 2x2x150x150 (one chunk holds 4 frames)",
        "zcyx",
        (2, 2, 300, 300),
        "uint16",
        (2, 2, 150, 150),
        "0.4",
        "zarr",
        factors=(1, 2),
        channel_names=CHANNEL_NAMES[:2],
    ),
    "sharded05": Spec(
        "zarr, NGFF 0.5 (zarr v3), sharded: cyx, 2 named channels, 600x600 uint16, inner "
        "chunks 100x100 in shards of 300x300, zstd",
        "cyx",
        (2, 600, 600),
        "uint16",
        (1, 100, 100),
        "0.5",
        "zarr",
        factors=(1, 2),
        channel_names=CHANNEL_NAMES[:2],
        options={"shards": (1, 300, 300)},
    ),
}
# Stores made from others.
ZIP_IMAGES = {
    "zip_root": "ngff04_czyx zipped with its metadata at the zip's root, named image.bin",
    "zip_folder": "ngff05_czyx zipped inside an image.zarr/ folder, named image.zip",
}
PLATE = "plate04"
PLATE_SPEC = Spec(
    "ome-zarr-py, NGFF 0.4 HCS plate: 2 rows x 2 columns x 2 fields, each 2 named channels, "
    "256x320 uint16, chunks 128",
    "cyx", (2, 256, 320), "uint16", (1, 128, 128), "0.4", "ome-zarr-py",
    factors=(1, 2), channel_names=CHANNEL_NAMES[:2],
)  # fmt: skip


def picture(height: int, width: int, seed: int) -> np.ndarray:
    """(height, width) float64 in [0.05, 0.95]: smooth structure plus fine texture, a
    different picture per ``seed`` (so frames, channels and fields differ)."""
    # Open grids: the same values as full ones, ten times faster at 4096 x 4096.
    y, x = (axis.astype(np.float64) for axis in np.ogrid[0:height, 0:width])
    k = seed
    broad = np.sin(x * (0.011 + 0.002 * k) + k) * np.cos(y * (0.009 + 0.0015 * k) - k)
    ramp = (x / width * (1 + k % 3) + y / height * (2 - k % 2)) / 3
    fine = np.sin(x * 0.37 + y * 0.11 * (k + 1))
    return np.clip(0.25 * broad + 0.3 * ramp + 0.05 * fine + 0.35, 0.0, 1.0)


RANGES = {
    "uint8": (0, 255),
    "uint16": (0, 65535),
    "int16": (-20000, 20000),
    "float32": (-25.0, 325.0),
}


def content(spec: Spec, seed: int = 0) -> np.ndarray:
    """The full-resolution array a store holds: one picture per plane."""
    planes = math.prod(spec.shape[:-2])
    return np.stack([plane_content(spec, seed, plane) for plane in range(planes)]).reshape(
        spec.shape
    )


def plane_content(spec: Spec, seed: int, plane: int) -> np.ndarray:
    """Plane ``plane`` (counted over the axes before y and x, the last fastest) of
    ``content(spec, seed)``, computed alone."""
    height, width = spec.shape[-2:]
    low, high = RANGES[spec.dtype]
    unit = picture(height, width, seed * 97 + plane)
    return (unit * (high - low) + low).astype(spec.dtype)


def reduced(array: np.ndarray, factor: int) -> np.ndarray:
    """``array`` reduced ``factor`` times in its last two axes (block means; sizes
    rounded down), in its own type."""
    if factor == 1:
        return array
    height, width = array.shape[-2] // factor, array.shape[-1] // factor
    cropped = array[..., : height * factor, : width * factor].astype(np.float64)
    blocks = cropped.reshape(*array.shape[:-2], height, factor, width, factor)
    return blocks.mean(axis=(-3, -1)).astype(array.dtype)


def make_omezarr_images(root: Path) -> dict[str, Path]:
    """Write every store of OMEZARR_IMAGES, the zips of ZIP_IMAGES and the plate into
    ``root``; name -> path."""
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name in OMEZARR_IMAGES:
        out[name] = write_omezarr_image(root, name)
    out["zip_root"] = zip_store(out["ngff04_czyx"], root / "image.bin", folder=None)
    out["zip_folder"] = zip_store(out["ngff05_czyx"], root / "image.zip", folder="image.zarr")
    out[PLATE] = write_plate(root / f"{PLATE}.zarr", PLATE_SPEC)
    return out


def write_omezarr_image(root: Path, name: str) -> Path:
    """Store ``name`` of OMEZARR_IMAGES written as ``root/{name}.zarr``."""
    spec = OMEZARR_IMAGES[name]
    path = root / f"{name}.zarr"
    if spec.writer == "ome-zarr-py":
        _with_ome_zarr_py(path, spec, content(spec))
    else:
        _with_zarr(path, spec, content(spec))
    return path


def planes(name: str) -> np.ndarray:
    """The full-resolution content of store ``name`` (of OMEZARR_IMAGES or a zip of one)."""
    source = {"zip_root": "ngff04_czyx", "zip_folder": "ngff05_czyx"}.get(name, name)
    return content(OMEZARR_IMAGES[source])


def plate_field(number: int) -> np.ndarray:
    """The content of the plate's field ``number`` (wells in plate order, fields within)."""
    return content(PLATE_SPEC, seed=number + 1)


def _omero(spec: Spec) -> dict[str, Any] | None:
    if spec.channel_names is None:
        return None
    low, high = RANGES[spec.dtype]
    return {
        "channels": [
            {
                "label": label,
                "color": CHANNEL_COLORS[index % len(CHANNEL_COLORS)],
                "active": True,
                "window": {"min": low, "max": high, "start": low, "end": (low + high) / 2},
            }
            for index, label in enumerate(spec.channel_names)
        ]
    }


def _format(spec: Spec) -> FormatV04 | FormatV05:
    return FormatV04() if spec.version == "0.4" else FormatV05()


def _with_ome_zarr_py(path: Path, spec: Spec, data: np.ndarray) -> None:
    fmt = _format(spec)
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format)
    _write_ome_zarr_py_image(group, spec, data)


def _write_ome_zarr_py_image(group: zarr.Group, spec: Spec, data: np.ndarray) -> None:
    units = {axis: "micrometer" for axis in spec.axes if axis in "zyx"}
    write_image(
        data,
        group,
        axes=spec.axes,
        fmt=_format(spec),
        scale_factors=list(spec.factors[1:]),
        storage_options={"chunks": spec.chunks},
        scale={axis: 0.5 if axis in "yx" else 1.0 for axis in spec.axes},
        axes_units=units,
        omero=_omero(spec),
    )


def _with_zarr(path: Path, spec: Spec, data: np.ndarray) -> None:
    """The store written with zarr alone: each dataset a block-mean reduction of the
    full resolution, NGFF attributes written by hand."""
    group, arrays = _zarr_datasets(path, spec)
    for factor, array in zip(spec.factors, arrays, strict=True):
        array[...] = reduced(data, factor)
    _ngff_attributes(group, path, spec)


def write_by_plane(path: Path, spec: Spec, seed: int = 0) -> Path:
    """The store _with_zarr writes of ``content(spec, seed)``, computed and written one
    plane at a time: for stores too large to hold in memory whole (the benchmarks')."""
    group, arrays = _zarr_datasets(path, spec)
    leading = spec.shape[:-2]
    for plane, index in enumerate(np.ndindex(*leading)):
        pixels = plane_content(spec, seed, plane)
        for factor, array in zip(spec.factors, arrays, strict=True):
            array[index] = reduced(pixels, factor)
    _ngff_attributes(group, path, spec)
    return path


def _zarr_datasets(path: Path, spec: Spec) -> tuple[zarr.Group, list[zarr.Array]]:
    """A new group at ``path`` with an empty array per reduction factor (s0, s1, ...):
    the spec's chunks (no larger than the level), shards and compressors."""
    zarr_format = 2 if spec.version == "0.4" else 3
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    arrays = []
    for index, factor in enumerate(spec.factors):
        shape = (*spec.shape[:-2], spec.shape[-2] // factor, spec.shape[-1] // factor)
        chunks = tuple(min(c, s) for c, s in zip(spec.chunks, shape, strict=True))
        options: dict[str, Any] = {"chunks": chunks}
        if "shards" in spec.options:
            # A shard holds whole chunks; no larger than the level needs.
            options["shards"] = tuple(
                min(s, -(-n // c) * c)
                for c, s, n in zip(chunks, spec.options["shards"], shape, strict=True)
            )
        if "compressors" in spec.options:
            options["compressors"] = spec.options["compressors"]
        if zarr_format == 2:
            options["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
        arrays.append(
            group.create_array(
                f"s{index}", shape=shape, dtype=spec.dtype, overwrite=True, **options
            )
        )
    return group, arrays


def _ngff_attributes(group: zarr.Group, path: Path, spec: Spec) -> None:
    """The multiscale (one dataset per reduction factor) and omero attributes."""
    datasets = []
    for index, factor in enumerate(spec.factors):
        scale = [float(factor) if axis in "yx" else 1.0 for axis in spec.axes]
        datasets.append(
            {"path": f"s{index}", "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    axes = [{"name": axis, "type": _axis_type(axis)} for axis in spec.axes]
    for axis in axes:
        if axis["type"] == "space":
            axis["unit"] = "micrometer"
    multiscale: dict[str, Any] = {"axes": axes, "datasets": datasets, "name": path.stem}
    attributes: dict[str, Any] = {"multiscales": [multiscale]}
    omero = _omero(spec)
    if omero is not None:
        attributes["omero"] = omero
    if spec.version == "0.4":
        multiscale["version"] = "0.4"
        group.attrs.update(attributes)
    else:
        group.attrs.update({"ome": {"version": "0.5", **attributes}})


def _axis_type(axis: str) -> str:
    return {"t": "time", "c": "channel"}.get(axis, "space")


def zip_store(store: Path, target: Path, folder: str | None) -> Path:
    """The directory ``store`` zipped (entries stored, metadata first) into ``target``,
    at the zip's root or inside ``folder``."""
    files = sorted(p for p in store.rglob("*") if p.is_file())
    # Metadata first, as zarr's own ZipStore writes it.
    files.sort(key=lambda p: (p.name not in {".zattrs", ".zgroup", "zarr.json", ".zarray"}, str(p)))
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        for file in files:
            name = file.relative_to(store).as_posix()
            archive.write(file, f"{folder}/{name}" if folder else name)
    return target


def write_plate(path: Path, spec: Spec) -> Path:
    """An HCS plate of PLATE_ROWS x PLATE_COLUMNS wells of PLATE_FIELDS fields, written
    with ome-zarr-py's plate, well and image writers."""
    if path.exists():
        shutil.rmtree(path)
    fmt = _format(spec)
    root = zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format)
    wells = [f"{row}/{column}" for row in PLATE_ROWS for column in PLATE_COLUMNS]
    write_plate_metadata(
        root, list(PLATE_ROWS), list(PLATE_COLUMNS), wells, fmt=fmt, field_count=PLATE_FIELDS
    )
    number = 0
    for well in wells:
        row, column = well.split("/")
        well_group = root.require_group(row).require_group(column)
        write_well_metadata(well_group, [{"path": str(f)} for f in range(PLATE_FIELDS)], fmt=fmt)
        for field_number in range(PLATE_FIELDS):
            image = well_group.require_group(str(field_number))
            _write_ome_zarr_py_image(image, spec, plate_field(number))
            number += 1
    return path
