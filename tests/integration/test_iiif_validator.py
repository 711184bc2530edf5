"""tilecast's IIIF service checked by the IIIF Image API validator: iiif-validator-ng
(PyPI; the IIIF community's image-validator checks, on pyvips), run offline against the
running stack with the validator's own test image registered as a source.

Its command line and runner (``iiif_validator.validate``) need Python 3.12; its checks
need 3.11 only, so they are run here one by one: each one applicable to the features
pinned in ``DECLARED`` (compliance level 1 and the extra features, formats and
qualities), the selection the validator's runner makes from an info.json. The pinned
list, not the info.json under test, chooses the checks (an info.json that stopped
declaring a feature would otherwise drop its checks silently); a test holds info.json
to the list.
"""

from __future__ import annotations

import importlib.resources
import shutil
from pathlib import Path

import pytest
import pyvips
from iiif_validator.tests import test as validator

from tests.conftest import ApiServer

pytestmark = pytest.mark.integration

CHECKS = sorted(validator.get_tests(validator.IIIFVersion.V3), key=lambda check: check.__name__)
# What tilecast's info.json declares (api/protocols/iiif.py), pinned.
DECLARED = validator.ServerFeatures(
    version=validator.IIIFVersion.V3,
    compliance_level=validator.ComplianceLevel.LEVEL_1,
    extra_qualities=["color"],
    extra_formats=["png", "webp", "tif"],
    extra_features=[
        "regionByPct",
        "sizeByPct",
        "sizeByConfinedWh",
        "sizeUpscaling",
        "canonicalLinkHeader",
        "profileLinkHeader",
    ],
    supports_caching=True,  # ETags: the validator's caching check runs too
)
# The checks of features tilecast does not have (rotation, mirroring, gray and bitonal
# qualities, GIF / JPEG 2000 / PDF): named, so that a change of either list shows.
NOT_RUN = {
    "BitonalImagesAreReturned",
    "FormatGif",
    "FormatJP2",
    "FormatPDF",
    "GrayscaleImagesAreReturned",
    "RotationFullBasicTest",
    "RotationFullNon90Test",
    "RotationMirror180Test",
    "RotationMirrorTest",
    "RotationRegionBasicTest",
    "RotationRegionNon90Test",
}
# Where the validator and the specification disagree, tilecast follows the
# specification (4.2), and the validator's one result for that request is set aside:
# - "!2000,3000" on the 1000 x 1000 image: the validator wants a failure (upscaling), but
#   "!w,h" is "as large as possible but not larger than the extracted region, w or h":
#   1000 x 1000, a 200.
# - "^max": the validator wants 1000 x 1000, but "^max" is scaled "to the maximum size
#   permitted by maxWidth, maxHeight, or maxArea" -- and info.json declares maxArea.
SPEC_OVERRIDES = {("SizeNoUpTest", "/!2000,3000/"), ("SizeUpTest", "/^max/")}
# Checks the validator's runner leaves out at level 1 whose features tilecast has: its
# caching check (ETags and 304s) and region-and-size combinations (level 2's list).
ALSO_RUN = {"HttpCachingTest", "SizeRegionTest"}


@pytest.fixture(scope="module")
def validation_image(api: ApiServer, source_root: Path) -> str:
    path = source_root / "iiif-validation.png"
    image = importlib.resources.files("iiif_validator") / "validation_image.png"
    with importlib.resources.as_file(image) as found:
        shutil.copyfile(found, path)
    return api.register(path)


@pytest.fixture(scope="module")
def server(api: ApiServer, validation_image: str) -> validator.TargetServer:
    return validator.TargetServer(api.url("/iiif"), validation_image, validator.IIIFVersion.V3)


def applies(check: type[validator.ValidationTest], features: validator.ServerFeatures) -> bool:
    if check.__name__ in ALSO_RUN:
        return True
    level = check.compliance_level
    if isinstance(level, dict):
        level = level[features.version]
    if level <= features.compliance_level:
        return True
    names = check.extra_name or []
    names = [names] if isinstance(names, str) else names
    declared = {
        validator.TestCategory.FORMAT: features.extra_formats,
        validator.TestCategory.QUALITY: features.extra_qualities,
    }.get(check.category, [])
    return any(name in declared or name in features.extra_features for name in names)


RUN = [check for check in CHECKS if applies(check, DECLARED)]


def test_info_declares_the_pinned_features(server: validator.TargetServer) -> None:
    features = server.feature_set()
    assert features.version == DECLARED.version
    assert features.compliance_level == DECLARED.compliance_level
    assert features.supports_caching == DECLARED.supports_caching
    for field in ("extra_qualities", "extra_formats", "extra_features"):
        assert sorted(getattr(features, field)) == sorted(getattr(DECLARED, field)), field


def test_the_checks_left_out_are_the_named_ones() -> None:
    assert {check.__name__ for check in CHECKS} - {check.__name__ for check in RUN} == NOT_RUN


@pytest.mark.parametrize("check", RUN, ids=lambda check: check.__name__)
def test_validator_check(
    server: validator.TargetServer,
    check: type[validator.ValidationTest],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The validator describes some failures with ``image.size``, which pyvips images
    # lack: without it a failure it should report crashes the check instead.
    monkeypatch.setattr(
        pyvips.Image, "size", property(lambda image: (image.width, image.height)), raising=False
    )
    results = check.run(server)
    results = results if isinstance(results, list) else [results]
    failures = [
        result
        for result in results
        if isinstance(result, validator.ValidationFailure)
        and not any(name == check.__name__ and part in result.url for name, part in SPEC_OVERRIDES)
    ]
    assert not failures, "\n".join(f"{f.details}: {f.received} ({f.url})" for f in failures)
