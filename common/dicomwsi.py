"""tilecast's images as DICOM VL Whole Slide Microscopy images (PS3.3 A.32.8), written as
plain datasets for common/dicomjson.py: what the DICOMweb view (api/protocols/)
answers to searches (QIDO-RS) and metadata requests (WADO-RS).

The mapping: a registered source is a study; each of its frames (tilecast's frame
index: a channel, z plane or time point of a multi-frame file) a series, the whole
pyramid of that frame; each tilecast level ``z`` of a series an instance whose
frames, in TILED_FULL order (row by row from the top left, PS3.3 C.7.6.17.3), are
that level's ``zxy`` tiles: DICOM frame ``n`` (1-based) of level ``z`` is tile
``((n - 1) % across, (n - 1) // across)``. Levels are as tilecast serves them (every
power-of-two reduction of the base, whether the file stores it or not), so a viewer
gets the same pyramid as ``/item/{id}/tiles``. The full-resolution level is
``ORIGINAL\\PRIMARY\\VOLUME\\NONE``, the others ``DERIVED\\PRIMARY\\VOLUME\\RESAMPLED``.

Frames are JPEG baseline (transfer syntax 1.2.840.10008.1.2.4.50): a tile stored as
JPEG in the file is passed through byte for byte, any other is encoded to JPEG by the
tile path, as ``/item/{id}/tiles/zxy`` answers it. How its pixels are to be read
(Photometric Interpretation, samples per pixel) is taken from a level's first frame's
JPEG header (common/jpegheader.py), since a passed-through tile keeps the colour
space the file stored.

Pixel spacing is the image's ``mm_x``/``mm_y`` times the level's scale. An image
without a pixel size gets a nominal 0.001 mm (1 um) per pixel, since the IOD requires
one and viewers place tiles by it; ``ImageComments`` says so.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from tilecast.common import dicomuids
from tilecast.common.dicomjson import tag_of
from tilecast.common.grid import Grid

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy Image Storage
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_MEDIA_TYPE = "image/jpeg"
MODALITY = "SM"
UTF8 = "ISO_IR 192"
NOMINAL_MM_PER_PIXEL = 0.001
# The depth of the imaged volume (um) and a frame's slice thickness (mm): tilecast's
# images are one focal plane of unknown depth; 1 um is what converters write then.
NOMINAL_DEPTH_UM = 1.0
# PS3.5: LO and SH values hold at most 64 and 16 characters.
LO_MAX, SH_MAX = 64, 16
ORIGINAL_TYPE = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
RESAMPLED_TYPE = ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"]
BRIGHTFIELD = {"CodeValue": "111744", "CodingSchemeDesignator": "DCM",
               "CodeMeaning": "Brightfield illumination"}  # fmt: skip
EPIFLUORESCENCE = {"CodeValue": "111743", "CodingSchemeDesignator": "DCM",
                   "CodeMeaning": "Epifluorescence illumination"}  # fmt: skip
FULL_SPECTRUM = {"CodeValue": "414298005", "CodingSchemeDesignator": "SCT",
                 "CodeMeaning": "Full Spectrum"}  # fmt: skip
SLIDE_CONTAINER = {"CodeValue": "433466003", "CodingSchemeDesignator": "SCT",
                   "CodeMeaning": "Microscope slide"}  # fmt: skip


@dataclass(frozen=True)
class Slide:
    """One registered source as the DICOMweb view sees it: its record's parts."""

    source: str
    name: str
    generation: int
    created: float  # when this generation was registered (Unix seconds)
    metadata: Mapping[str, Any]

    @functools.cached_property
    def grid(self) -> Grid:
        return Grid.from_metadata(self.metadata)

    @property
    def frame_count(self) -> int:
        return max(1, len(self.metadata.get("frames") or ()))

    @property
    def study_uid(self) -> str:
        return dicomuids.study_uid(self.source, self.generation)

    def series_uid(self, frame: int) -> str:
        return dicomuids.series_uid(self.source, self.generation, frame)

    def instance_uid(self, frame: int, level: int) -> str:
        return dicomuids.instance_uid(self.source, self.generation, frame, level)

    @functools.cached_property
    def _frames_by_series(self) -> dict[str, int]:
        return {self.series_uid(frame): frame for frame in range(self.frame_count)}

    def frame_of(self, series: str) -> int | None:
        """The frame whose series UID is ``series``, or None."""
        return self._frames_by_series.get(series)

    def level_of(self, frame: int, instance: str) -> int | None:
        """The level of ``frame`` whose instance UID is ``instance``, or None."""
        for level in range(self.grid.levels):
            if self.instance_uid(frame, level) == instance:
                return level
        return None

    def frame_label(self, frame: int) -> str:
        """What a series is called: the frame's channel, z and t when the file has them."""
        frames = self.metadata.get("frames") or ()
        if not frames:
            return "image"
        info = frames[frame]
        parts = [f"frame {frame}"]
        channel = info.get("Channel")
        if channel:
            parts.append(f"channel {channel}")
        for axis in ("Z", "T", "XY"):
            if f"Index{axis}" in info:
                parts.append(f"{axis.lower()} {info[f'Index{axis}']}")
        return ", ".join(parts)


@dataclass(frozen=True)
class PixelFormat:
    """How a level's JPEG frames are to be read (from their JPEG header)."""

    photometric: str
    samples: int


@dataclass(frozen=True)
class FrameTile:
    """Where DICOM frame ``number`` (1-based) of a level lies on tilecast's grid."""

    x: int
    y: int


def frame_count(grid: Grid, level: int) -> int:
    across, down = grid.tiles_at(level)
    return across * down


def frame_tile(grid: Grid, level: int, number: int) -> FrameTile | None:
    """The tile of DICOM frame ``number`` of ``level`` (TILED_FULL order); None past
    the last frame."""
    across, down = grid.tiles_at(level)
    if not 1 <= number <= across * down:
        return None
    index = number - 1
    return FrameTile(index % across, index // across)


def _dates(created: float) -> tuple[str, str]:
    moment = time.gmtime(created)
    return time.strftime("%Y%m%d", moment), time.strftime("%H%M%S", moment)


def _lo(text: str) -> str:
    return text[:LO_MAX]


def _spacing(slide: Slide) -> tuple[float, float, bool]:
    """(mm per pixel across, down, whether the image says so) at full resolution."""
    mm_x, mm_y = slide.metadata.get("mm_x"), slide.metadata.get("mm_y")
    if mm_x and mm_y:
        return float(mm_x), float(mm_y), True
    if mm_x or mm_y:
        known = float(mm_x or mm_y)
        return known, known, True
    return NOMINAL_MM_PER_PIXEL, NOMINAL_MM_PER_PIXEL, False


def patient_and_study(slide: Slide) -> dict[str, Any]:
    """The patient and study attributes every answer about ``slide`` repeats."""
    date, clock = _dates(slide.created)
    return {
        "SpecificCharacterSet": UTF8,
        "PatientName": None,
        "PatientID": _lo(slide.source),
        "PatientBirthDate": None,
        "PatientSex": None,
        "StudyInstanceUID": slide.study_uid,
        "StudyDate": date,
        "StudyTime": clock,
        "StudyID": slide.source[:SH_MAX],
        "AccessionNumber": None,
        "ReferringPhysicianName": None,
        "StudyDescription": _lo(slide.name),
    }


def study_record(slide: Slide) -> dict[str, Any]:
    """A study's QIDO-RS answer."""
    return {
        **patient_and_study(slide),
        "ModalitiesInStudy": MODALITY,
        "NumberOfStudyRelatedSeries": slide.frame_count,
        "NumberOfStudyRelatedInstances": slide.frame_count * slide.grid.levels,
        "InstanceAvailability": "ONLINE",
    }


def series_record(slide: Slide, frame: int) -> dict[str, Any]:
    """A series' QIDO-RS answer."""
    date, clock = _dates(slide.created)
    return {
        **patient_and_study(slide),
        "Modality": MODALITY,
        "SeriesInstanceUID": slide.series_uid(frame),
        "SeriesNumber": frame + 1,
        "SeriesDescription": _lo(slide.frame_label(frame)),
        "SeriesDate": date,
        "SeriesTime": clock,
        "NumberOfSeriesRelatedInstances": slide.grid.levels,
        "InstanceAvailability": "ONLINE",
    }


def instance_record(slide: Slide, frame: int, level: int) -> dict[str, Any]:
    """An instance's QIDO-RS answer: what a viewer needs to pick a level."""
    grid = slide.grid
    columns, rows = grid.level_size(level)
    return {
        **patient_and_study(slide),
        "Modality": MODALITY,
        "SeriesInstanceUID": slide.series_uid(frame),
        "SeriesNumber": frame + 1,
        "SOPClassUID": WSI_SOP_CLASS,
        "SOPInstanceUID": slide.instance_uid(frame, level),
        "InstanceNumber": grid.levels - level,
        "ImageType": _image_type(grid, level),
        "Rows": grid.tile_height,
        "Columns": grid.tile_width,
        "NumberOfFrames": frame_count(grid, level),
        "TotalPixelMatrixColumns": columns,
        "TotalPixelMatrixRows": rows,
        "AvailableTransferSyntaxUID": JPEG_BASELINE,
        "InstanceAvailability": "ONLINE",
    }


def _image_type(grid: Grid, level: int) -> list[str]:
    return ORIGINAL_TYPE if level == grid.top_level else RESAMPLED_TYPE


def _code(code: Mapping[str, str]) -> list[dict[str, Any]]:
    return [dict(code)]


def instance_metadata(
    slide: Slide, frame: int, level: int, pixels: PixelFormat, software: str
) -> dict[str, Any]:
    """The VL Whole Slide Microscopy Image dataset of level ``level`` of ``frame``,
    without its pixel data (WADO-RS metadata)."""
    grid = slide.grid
    columns, rows = grid.level_size(level)
    scale = grid.scale(level)
    mm_x, mm_y, known = _spacing(slide)
    date, clock = _dates(slide.created)
    image_type = _image_type(grid, level)
    color = pixels.photometric != "MONOCHROME2"
    optical_path: dict[str, Any] = {
        "OpticalPathIdentifier": "1",
        "OpticalPathDescription": slide.frame_label(frame),
        "IlluminationTypeCodeSequence": _code(BRIGHTFIELD if color else EPIFLUORESCENCE),
        "IlluminationColorCodeSequence": _code(FULL_SPECTRUM),
    }
    if color:
        # Required for colour images (PS3.3 C.8.12.5): tilecast's pixels are sRGB.
        optical_path["ICCProfile"] = srgb_profile()
        optical_path["ColorSpace"] = "SRGB"
    dataset = {
        **series_record(slide, frame),
        "SOPClassUID": WSI_SOP_CLASS,
        "SOPInstanceUID": slide.instance_uid(frame, level),
        "TransferSyntaxUID": JPEG_BASELINE,
        "AvailableTransferSyntaxUID": JPEG_BASELINE,
        "InstanceNumber": grid.levels - level,
        "ImageType": image_type,
        "ContentDate": date,
        "ContentTime": clock,
        "AcquisitionDateTime": date + clock,
        "AcquisitionDuration": 0.0,
        "PyramidUID": slide.series_uid(frame),
        "PyramidLabel": _lo(slide.name),
        "PyramidDescription": _lo(slide.frame_label(frame)),
        # Equipment: tilecast made these images from the file.
        "Manufacturer": "tilecast",
        "ManufacturerModelName": "tilecast DICOMweb view",
        "DeviceSerialNumber": _lo(slide.source),
        "SoftwareVersions": _lo(software),
        # Frame of reference: one slide coordinate system per source.
        "FrameOfReferenceUID": dicomuids.frame_of_reference_uid(slide.source, slide.generation),
        "PositionReferenceIndicator": "SLIDE_CORNER",
        # Image pixel (the compressed frames' own layout).
        "SamplesPerPixel": pixels.samples,
        "PhotometricInterpretation": pixels.photometric,
        "Rows": grid.tile_height,
        "Columns": grid.tile_width,
        "BitsAllocated": 8,
        "BitsStored": 8,
        "HighBit": 7,
        "PixelRepresentation": 0,
        "NumberOfFrames": frame_count(grid, level),
        "LossyImageCompression": "01",
        "LossyImageCompressionMethod": "ISO_10918_1",
        "BurnedInAnnotation": "NO",
        "SpecimenLabelInImage": "NO",
        "VolumetricProperties": "VOLUME",
        "FocusMethod": "AUTO",
        "ExtendedDepthOfField": "NO",
        # The tiled pixel matrix.
        "DimensionOrganizationType": "TILED_FULL",
        "TotalPixelMatrixColumns": columns,
        "TotalPixelMatrixRows": rows,
        "TotalPixelMatrixFocalPlanes": 1,
        "NumberOfOpticalPaths": 1,
        "TotalPixelMatrixOriginSequence": [
            {"XOffsetInSlideCoordinateSystem": 0.0, "YOffsetInSlideCoordinateSystem": 0.0}
        ],
        # Along a row of the matrix is the slide's +Y, down a column its +X: the
        # orientation dicom-microscopy-viewer (and Slim) show upright, as tilecast's
        # own viewer shows the image (tests/integration/test_dicomweb_browser.py).
        "ImageOrientationSlide": [0.0, 1.0, 0.0, 1.0, 0.0, 0.0],
        "ImagedVolumeWidth": grid.size_x * mm_x,
        "ImagedVolumeHeight": grid.size_y * mm_y,
        "ImagedVolumeDepth": NOMINAL_DEPTH_UM,
        "DimensionOrganizationSequence": [
            {
                "DimensionOrganizationUID": dicomuids.dimension_organization_uid(
                    slide.source, slide.generation, frame, level
                )
            }
        ],
        "DimensionIndexSequence": [
            _dimension_index(slide, frame, level, "RowPositionInTotalImagePixelMatrix"),
            _dimension_index(slide, frame, level, "ColumnPositionInTotalImagePixelMatrix"),
        ],
        "SharedFunctionalGroupsSequence": [
            {
                "PixelMeasuresSequence": [
                    {
                        "PixelSpacing": [mm_y * scale, mm_x * scale],
                        "SliceThickness": NOMINAL_DEPTH_UM / 1000,
                        "SpacingBetweenSlices": NOMINAL_DEPTH_UM / 1000,
                    }
                ],
                "WholeSlideMicroscopyImageFrameTypeSequence": [{"FrameType": image_type}],
                "OpticalPathIdentificationSequence": [{"OpticalPathIdentifier": "1"}],
            }
        ],
        "OpticalPathSequence": [optical_path],
        "AcquisitionContextSequence": [],
        # Specimen: the file is the slide.
        "ContainerIdentifier": _lo(slide.source),
        "IssuerOfTheContainerIdentifierSequence": [],
        "ContainerTypeCodeSequence": _code(SLIDE_CONTAINER),
        "SpecimenDescriptionSequence": [
            {
                "SpecimenIdentifier": _lo(slide.name),
                "SpecimenUID": dicomuids.specimen_uid(slide.source, slide.generation),
                "IssuerOfTheSpecimenIdentifierSequence": [],
                "SpecimenPreparationSequence": [],
            }
        ],
    }
    if pixels.samples > 1:
        dataset["PlanarConfiguration"] = 0
    if not known:
        dataset["ImageComments"] = (
            f"the image has no pixel size: a nominal {NOMINAL_MM_PER_PIXEL} mm per pixel"
        )
    return dataset


def _dimension_index(slide: Slide, frame: int, level: int, pointer: str) -> dict[str, Any]:
    return {
        "DimensionOrganizationUID": dicomuids.dimension_organization_uid(
            slide.source, slide.generation, frame, level
        ),
        "DimensionIndexPointer": tag_of(pointer),
        "FunctionalGroupPointer": tag_of("PlanePositionSlideSequence"),
    }


@functools.cache
def srgb_profile() -> bytes:
    """The sRGB ICC profile (package data, LittleCMS's built-in sRGB as PIL's
    ``ImageCms.createProfile("sRGB")`` writes it: 588 bytes)."""
    return resources.files("tilecast.common").joinpath("srgb.icc").read_bytes()
