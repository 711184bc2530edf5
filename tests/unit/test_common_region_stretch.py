"""``RegionRequest.stretch``: a region returned at exactly ``width`` x ``height`` (IIIF's
``w,h``, Deep Zoom's edge tiles), where large_image's fit would keep the aspect ratio."""

from __future__ import annotations

from tilecast.common.grid import Grid
from tilecast.common.regionplan import RegionSpec
from tilecast.common.regions import RegionRequest

# A sliver at the right edge of a 3000 x 2000 image at scale factor 8: 58 x 2000 base
# pixels are 7.25 x 250 there, 8 x 250 as an edge tile of that level.
SPEC = RegionSpec(left=2942.0, top=0.0, right=3000.0, bottom=2000.0)
GEOMETRY = {"grid": Grid(3000, 2000, 256, 256, 5), "max_pixels": 4096 * 4096}


def test_stretch_returns_exactly_the_size_asked() -> None:
    fitted = RegionRequest("s", SPEC, width=8, height=250).plan(**GEOMETRY)
    assert (fitted.out_width, fitted.out_height) == (7, 250)  # the aspect kept
    stretched = RegionRequest("s", SPEC, width=8, height=250, stretch=True).plan(**GEOMETRY)
    assert (stretched.out_width, stretched.out_height) == (8, 250)
    assert stretched.level == fitted.level == 1  # read from the level of that scale


def test_stretch_is_part_of_the_key_and_the_payload() -> None:
    fitted = RegionRequest("s", SPEC, width=8, height=250)
    stretched = RegionRequest("s", SPEC, width=8, height=250, stretch=True)
    assert fitted.key(3) != stretched.key(3)
    again = RegionRequest.from_payload(stretched.to_payload())
    assert again == stretched and again.key(3) == stretched.key(3)
    # A request from before the field existed reads as not stretched.
    payload = fitted.to_payload()
    del payload["stretch"]
    assert RegionRequest.from_payload(payload) == fitted


def test_stretch_needs_both_sides() -> None:
    assert not RegionRequest("s", SPEC, width=8, stretch=True).stretch
    assert RegionRequest("s", SPEC, width=8, stretch=True).key(1) == RegionRequest(
        "s", SPEC, width=8
    ).key(1)
