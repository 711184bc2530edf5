"""DICOM whole-slide series for the DICOM reader's tests, written by two independent
writers from generated slides, plus the real two-file series of tests/realslides.py.

- ``wsidicomizer`` (PyPI, the writer large_image's docs point to) converts the Aperio-like
  SVS of tests/images_frames.py through OpenSlide: 512-pixel JPEG or 256-pixel JPEG 2000
  frames, TILED_FULL, label / overview / thumbnail instances, the SVS's 2x level missing.
- ``OrthancWSIDicomizer`` (Debian's ``orthanc-wsi``, installed by scripts/test) converts a
  pyramidal TIFF: the TIFF's own JPEG tiles copied (RGB, TILED_SPARSE), or re-encoded
  as JPEG 2000, with levels split over several instances (a concatenation), as the
  JPEG ones can be too (``max_size``).
- No available writer makes several focal planes or optical paths from these inputs, so
  :func:`multiplane` rewrites a wsidicomizer instance with pydicom into three focal planes
  times two optical paths (frames re-encoded as JPEG): a test-made series, said so.

Every builder writes into a folder of its own and returns it; the series' instances are
its files.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pyvips
from PIL import Image
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import generate_uid

from tests import realslides
from tests.images_frames import _svs as write_svs
from tilecast.sample import sample_image, write_tiff

ORTHANC_DICOMIZER = "/usr/bin/OrthancWSIDicomizer"
# Focal planes (um apart) and optical paths of the test-made multi-plane series.
FOCAL_PLANES, FOCAL_SPACING_MM = 3, 0.001
OPTICAL_PATHS = ("0", "1")


def instances(folder: Path) -> list[Path]:
    """The series' files, by name."""
    return sorted(path for path in folder.iterdir() if path.is_file())


def boxes(folder: Path) -> Path:
    """The real two-file series (a JPEG volume and an uncompressed thumbnail), copied;
    the volume's file is returned: its thumbnail is found beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("boxes_0.dcm", "boxes_1.dcm"):
        shutil.copy(realslides.path(name), folder / name)
    return folder / "boxes_0.dcm"


def wsidicomizer_svs(folder: Path, *, jpeg2000: bool = False) -> Path:
    """tests/images_frames.py's SVS converted by wsidicomizer (through OpenSlide)."""
    from wsidicom.codec.settings import Channels, Jpeg2kSettings
    from wsidicomizer import WsiDicomizer
    from wsidicomizer.wsidicomizer import SourceIdentifier

    work = folder.parent / f"{folder.name}-svs"
    work.mkdir(parents=True, exist_ok=True)
    svs = write_svs(work)
    folder.mkdir(parents=True, exist_ok=True)
    options: dict[str, object] = {"preferred_source": SourceIdentifier.OPENSLIDE}
    if jpeg2000:
        # 256-pixel JPEG 2000 frames without an offset table: frames found by scanning.
        options.update(
            encoding=Jpeg2kSettings(levels=[80], channels=Channels.YBR),
            tile_size=256,
            offset_table="empty",
            include_overview=False,
        )
    WsiDicomizer.convert(str(svs), str(folder), **options)
    return folder


def pyramid_tiff(path: Path, width: int = 1000, height: int = 700, *, noise: bool = False) -> Path:
    """A JPEG-tiled pyramidal TIFF of the sample picture (plus noise, to make large
    losslessly compressed instances)."""
    picture = sample_image(width, height).copy_memory()
    if noise:
        grain = pyvips.Image.gaussnoise(width, height, sigma=30, seed=3)
        picture = (picture + grain.bandjoin([grain, grain])).cast("uchar")
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_tiff(picture, path, pyramid=True, pixels_per_mm=4000)


def orthanc(
    source: Path, folder: Path, *, jpeg2000: bool = False, max_size: int | None = None
) -> Path:
    """``source`` (a pyramidal TIFF) converted by OrthancWSIDicomizer: its JPEG tiles
    copied, or re-encoded as JPEG 2000 with instances of at most 1 MB (concatenations);
    ``max_size`` (MB) splits the copied JPEG tiles' levels so too (the writer's default,
    10 MB, leaves the tests' small slides one instance per level).
    Orthanc WSI 1.1 writes an ImageType only from a dataset file: its own sample's."""
    if not Path(ORTHANC_DICOMIZER).exists():
        raise FileNotFoundError(
            f"{ORTHANC_DICOMIZER} is missing: scripts/test installs Debian's orthanc-wsi"
        )
    folder.mkdir(parents=True, exist_ok=True)
    dataset = folder.parent / f"{folder.name}-dataset.json"
    sample = subprocess.run(
        [ORTHANC_DICOMIZER, "--sample-dataset"], capture_output=True, text=True, check=True
    )
    dataset.write_text(json.dumps(json.loads(sample.stdout)))
    with pyvips.Image.new_from_file(str(source)) as image:
        width, height = image.width, image.height
    # Orthanc sizes pixels as imaged width / rows and height / columns: these make
    # them square, 0.25 um.
    size = ["--imaged-width", str(height * 0.00025), "--imaged-height", str(width * 0.00025)]
    argv = [ORTHANC_DICOMIZER, "--dataset", str(dataset), "--folder", str(folder), *size]
    if jpeg2000:
        argv += ["--compression", "jpeg2000", "--reencode", "1", "--max-size", "1"]
    elif max_size is not None:
        argv += ["--max-size", str(max_size)]
    subprocess.run([*argv, str(source)], capture_output=True, check=True, timeout=300)
    return folder


def multiplane(template: Path, folder: Path) -> Path:
    """A series of three focal planes times two optical paths at full resolution (the
    lower levels keep one, the first): ``template`` (a wsidicomizer JPEG series) with
    its largest instance rewritten. Plane (path p, focal plane k) is the picture shifted
    by ``24 * k - 40 * p`` grey levels; plane (0, 0) keeps the template's own frames."""
    folder.mkdir(parents=True, exist_ok=True)
    files = instances(template)
    datasets = [pydicom.dcmread(path) for path in files]
    base = max(
        (ds for ds in datasets if ds.ImageType[2] == "VOLUME"),
        key=lambda ds: int(ds.TotalPixelMatrixColumns),
    )
    for path, ds in zip(files, datasets, strict=True):
        if ds is not base:
            shutil.copy(path, folder / path.name)
    frames = list(generate_frames(base.PixelData, number_of_frames=int(base.NumberOfFrames)))
    planes: list[bytes] = []
    for p in range(len(OPTICAL_PATHS)):
        for k in range(FOCAL_PLANES):
            if (p, k) == (0, 0):
                planes += frames
            else:
                planes += [_shifted_jpeg(frame, 24 * k - 40 * p) for frame in frames]
    base.PixelData = encapsulate(planes, has_bot=True)
    base.NumberOfFrames = len(planes)
    base.TotalPixelMatrixFocalPlanes = FOCAL_PLANES
    base.NumberOfFocalPlanes = FOCAL_PLANES
    base.DistanceBetweenFocalPlanes = FOCAL_SPACING_MM
    base.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[
        0
    ].SpacingBetweenSlices = FOCAL_SPACING_MM
    path_item = base.OpticalPathSequence[0]
    items = []
    for identifier in OPTICAL_PATHS:
        item = pydicom.Dataset()
        item.update(path_item)
        item.OpticalPathIdentifier = identifier
        items.append(item)
    base.OpticalPathSequence = pydicom.Sequence(items)
    base.NumberOfOpticalPaths = len(OPTICAL_PATHS)
    base.SOPInstanceUID = generate_uid()
    base.file_meta.MediaStorageSOPInstanceUID = base.SOPInstanceUID
    base.save_as(folder / "multiplane.dcm", enforce_file_format=True)
    return folder


def _shifted_jpeg(frame: bytes, shift: int) -> bytes:
    with Image.open(io.BytesIO(frame)) as image:
        pixels = np.asarray(image.convert("RGB")).astype(int) + shift
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
        out, "JPEG", quality=90, subsampling=1
    )
    return out.getvalue()


def sparse_gap(template: Path, folder: Path) -> tuple[Path, tuple[int, int]]:
    """``template`` (an Orthanc JPEG series: TILED_SPARSE) with the largest level's
    frame at tile (1, 1) left out, as a scanner leaves out empty background; the folder
    and that tile's (x, y)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = instances(template)
    datasets = [pydicom.dcmread(path) for path in files]
    base = max(datasets, key=lambda ds: int(ds.TotalPixelMatrixColumns))
    for path, ds in zip(files, datasets, strict=True):
        if ds is not base:
            shutil.copy(path, folder / path.name)
    gap = (1, 1)
    frames = list(generate_frames(base.PixelData, number_of_frames=int(base.NumberOfFrames)))
    kept_frames, kept_items = [], []
    for frame, item in zip(frames, base.PerFrameFunctionalGroupsSequence, strict=True):
        position = item.PlanePositionSlideSequence[0]
        column = (int(position.ColumnPositionInTotalImagePixelMatrix) - 1) // int(base.Columns)
        row = (int(position.RowPositionInTotalImagePixelMatrix) - 1) // int(base.Rows)
        if (column, row) != gap:
            kept_frames.append(frame)
            kept_items.append(item)
    assert len(kept_frames) == len(frames) - 1
    base.PixelData = encapsulate(kept_frames, has_bot=True)
    base.NumberOfFrames = len(kept_frames)
    base.PerFrameFunctionalGroupsSequence = pydicom.Sequence(kept_items)
    base.save_as(folder / "sparse.dcm", enforce_file_format=True)
    return folder, gap
