"""DICOM JSON (PS3.18 F.2) from plain dictionaries, with no DICOM library: a
dataset is a ``dict`` of attribute keywords to values, written out under their tags
with their value representations from :data:`ATTRIBUTES`.

Values: ``None`` or ``[]`` for an empty (type 2) attribute; a string or number, or a
list of them for several values; a list of dicts for a sequence's items; ``bytes`` for
binary data (sent inline, base64). Person names are plain strings (their alphabetic
group). The table holds the attributes the DICOMweb view writes (common/dicomwsi.py);
``tests/unit/test_dicomjson.py`` checks every entry against pydicom's data dictionary.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

# keyword -> (tag as 8 hex digits, value representation)
ATTRIBUTES: dict[str, tuple[str, str]] = {
    "TransferSyntaxUID": ("00020010", "UI"),
    "SpecificCharacterSet": ("00080005", "CS"),
    "ImageType": ("00080008", "CS"),
    "SOPClassUID": ("00080016", "UI"),
    "SOPInstanceUID": ("00080018", "UI"),
    "PyramidUID": ("00080019", "UI"),
    "StudyDate": ("00080020", "DA"),
    "SeriesDate": ("00080021", "DA"),
    "ContentDate": ("00080023", "DA"),
    "AcquisitionDateTime": ("0008002A", "DT"),
    "StudyTime": ("00080030", "TM"),
    "SeriesTime": ("00080031", "TM"),
    "ContentTime": ("00080033", "TM"),
    "AccessionNumber": ("00080050", "SH"),
    "InstanceAvailability": ("00080056", "CS"),
    "Modality": ("00080060", "CS"),
    "ModalitiesInStudy": ("00080061", "CS"),
    "Manufacturer": ("00080070", "LO"),
    "ReferringPhysicianName": ("00080090", "PN"),
    "CodeValue": ("00080100", "SH"),
    "CodingSchemeDesignator": ("00080102", "SH"),
    "CodeMeaning": ("00080104", "LO"),
    "StudyDescription": ("00081030", "LO"),
    "SeriesDescription": ("0008103E", "LO"),
    "PyramidDescription": ("00081088", "LO"),
    "ManufacturerModelName": ("00081090", "LO"),
    "RetrieveURL": ("00081190", "UR"),
    "AvailableTransferSyntaxUID": ("00083002", "UI"),
    "FrameType": ("00089007", "CS"),
    "VolumetricProperties": ("00089206", "CS"),
    "PatientName": ("00100010", "PN"),
    "PatientID": ("00100020", "LO"),
    "PatientBirthDate": ("00100030", "DA"),
    "PatientSex": ("00100040", "CS"),
    "SliceThickness": ("00180050", "DS"),
    "SpacingBetweenSlices": ("00180088", "DS"),
    "DeviceSerialNumber": ("00181000", "LO"),
    "SoftwareVersions": ("00181020", "LO"),
    "AcquisitionDuration": ("00189073", "FD"),
    "StudyInstanceUID": ("0020000D", "UI"),
    "SeriesInstanceUID": ("0020000E", "UI"),
    "StudyID": ("00200010", "SH"),
    "SeriesNumber": ("00200011", "IS"),
    "InstanceNumber": ("00200013", "IS"),
    "PyramidLabel": ("00200027", "LO"),
    "FrameOfReferenceUID": ("00200052", "UI"),
    "PositionReferenceIndicator": ("00201040", "LO"),
    "NumberOfStudyRelatedSeries": ("00201206", "IS"),
    "NumberOfStudyRelatedInstances": ("00201208", "IS"),
    "NumberOfSeriesRelatedInstances": ("00201209", "IS"),
    "ImageComments": ("00204000", "LT"),
    "DimensionOrganizationUID": ("00209164", "UI"),
    "DimensionIndexPointer": ("00209165", "AT"),
    "FunctionalGroupPointer": ("00209167", "AT"),
    "DimensionOrganizationSequence": ("00209221", "SQ"),
    "DimensionIndexSequence": ("00209222", "SQ"),
    "DimensionOrganizationType": ("00209311", "CS"),
    "IlluminationTypeCodeSequence": ("00220016", "SQ"),
    "SamplesPerPixel": ("00280002", "US"),
    "PhotometricInterpretation": ("00280004", "CS"),
    "PlanarConfiguration": ("00280006", "US"),
    "NumberOfFrames": ("00280008", "IS"),
    "Rows": ("00280010", "US"),
    "Columns": ("00280011", "US"),
    "PixelSpacing": ("00280030", "DS"),
    "BitsAllocated": ("00280100", "US"),
    "BitsStored": ("00280101", "US"),
    "HighBit": ("00280102", "US"),
    "PixelRepresentation": ("00280103", "US"),
    "BurnedInAnnotation": ("00280301", "CS"),
    "LossyImageCompression": ("00282110", "CS"),
    "LossyImageCompressionMethod": ("00282114", "CS"),
    "ICCProfile": ("00282000", "OB"),
    "ColorSpace": ("00282002", "CS"),
    "PixelMeasuresSequence": ("00289110", "SQ"),
    "AcquisitionContextSequence": ("00400555", "SQ"),
    "ContainerIdentifier": ("00400512", "LO"),
    "IssuerOfTheContainerIdentifierSequence": ("00400513", "SQ"),
    "ContainerTypeCodeSequence": ("00400518", "SQ"),
    "SpecimenIdentifier": ("00400551", "LO"),
    "SpecimenUID": ("00400554", "UI"),
    "SpecimenDescriptionSequence": ("00400560", "SQ"),
    "IssuerOfTheSpecimenIdentifierSequence": ("00400562", "SQ"),
    "SpecimenPreparationSequence": ("00400610", "SQ"),
    "XOffsetInSlideCoordinateSystem": ("0040072A", "DS"),
    "YOffsetInSlideCoordinateSystem": ("0040073A", "DS"),
    "ZOffsetInSlideCoordinateSystem": ("0040074A", "DS"),
    "WholeSlideMicroscopyImageFrameTypeSequence": ("00400710", "SQ"),
    "ImagedVolumeWidth": ("00480001", "FL"),
    "ImagedVolumeHeight": ("00480002", "FL"),
    "ImagedVolumeDepth": ("00480003", "FL"),
    "TotalPixelMatrixColumns": ("00480006", "UL"),
    "TotalPixelMatrixRows": ("00480007", "UL"),
    "TotalPixelMatrixOriginSequence": ("00480008", "SQ"),
    "SpecimenLabelInImage": ("00480010", "CS"),
    "FocusMethod": ("00480011", "CS"),
    "ExtendedDepthOfField": ("00480012", "CS"),
    "ImageOrientationSlide": ("00480102", "DS"),
    "OpticalPathSequence": ("00480105", "SQ"),
    "OpticalPathIdentifier": ("00480106", "SH"),
    "OpticalPathDescription": ("00480107", "ST"),
    "IlluminationColorCodeSequence": ("00480108", "SQ"),
    "OpticalPathIdentificationSequence": ("00480207", "SQ"),
    "PlanePositionSlideSequence": ("0048021A", "SQ"),
    "ColumnPositionInTotalImagePixelMatrix": ("0048021E", "SL"),
    "RowPositionInTotalImagePixelMatrix": ("0048021F", "SL"),
    "NumberOfOpticalPaths": ("00480302", "UL"),
    "TotalPixelMatrixFocalPlanes": ("00480303", "UL"),
    "SharedFunctionalGroupsSequence": ("52009229", "SQ"),
}
TAGS: dict[str, str] = {tag: keyword for keyword, (tag, _) in ATTRIBUTES.items()}
NUMBER_VRS = frozenset({"DS", "IS", "FL", "FD", "SL", "SS", "UL", "US", "SV", "UV"})
# Decimal strings hold at most 16 characters (PS3.5 6.2).
DS_DIGITS = 10


def tag_of(keyword: str) -> str:
    return ATTRIBUTES[keyword][0]


def keyword_of(name: str) -> str | None:
    """The keyword of an attribute named by keyword or by its 8 hex digits (QIDO
    accepts both); None for an attribute this table lacks."""
    if name in ATTRIBUTES:
        return name
    return TAGS.get(name.upper())


def to_json(dataset: Mapping[str, Any]) -> dict[str, Any]:
    """The DICOM JSON object of ``dataset`` (keyword -> value), keys in tag order."""
    out: dict[str, Any] = {}
    for keyword in sorted(dataset, key=tag_of):
        tag, vr = ATTRIBUTES[keyword]
        out[tag] = _element(vr, dataset[keyword])
    return out


def _element(vr: str, value: Any) -> dict[str, Any]:
    if value is None or (isinstance(value, list) and not value):
        return {"vr": vr}
    if vr == "SQ":
        return {"vr": vr, "Value": [to_json(item) for item in value]}
    if isinstance(value, bytes):
        return {"vr": vr, "InlineBinary": base64.b64encode(value).decode("ascii")}
    values = value if isinstance(value, list) else [value]
    return {"vr": vr, "Value": [_value(vr, v) for v in values]}


def _value(vr: str, value: Any) -> Any:
    if vr == "PN":
        return {"Alphabetic": str(value)}
    if vr == "DS":
        return float(f"{float(value):.{DS_DIGITS}g}")
    if vr in NUMBER_VRS:
        return value if isinstance(value, (int, float)) else float(value)
    return str(value)


def first_value(element: Mapping[str, Any]) -> str | None:
    """A JSON element's first value as text (a person name's alphabetic group), for
    matching QIDO keys; None when it has none."""
    values = element.get("Value")
    if not values:
        return None
    value = values[0]
    if isinstance(value, dict):
        return str(value.get("Alphabetic", ""))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
