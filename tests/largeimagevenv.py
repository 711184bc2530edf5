"""A virtualenv holding Girder 3.2, girder-large-image and tilecast's Girder plugin side
by side, for the compatibility tests (tests/integration/girder/test_large_image_compat.py).

It is what a site running large_image's Girder plugin today has, plus tilecast's plugin.
Built once and cached under ``~/.cache/tilecast-test/largeimage-venv`` by
tests/girder3venv.py's machinery (same keys, same lock, the plugin editable); a clean
build takes about 80 s. Stdlib only, like that module.

    python -m tests.largeimagevenv          # ensure the cached venv, print its path
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests import girder3venv

# girder-large-image pins its large-image; the tiff source reads the TIFFs and the SVS,
# the PIL source the PNG (the sources a default site install has for these files).
REQUIREMENTS = (
    *girder3venv.REQUIREMENTS,
    "girder-large-image==1.35.6",
    "large-image-source-tiff==1.35.6",
    "large-image-source-pil==1.35.6",
)
VENV_NAME = "largeimage-venv"


def ensure(cache: Path = girder3venv.CACHE) -> Path:
    """The cached venv, (re)built first when missing or stale."""
    return girder3venv.ensure(cache, name=VENV_NAME, requirements=REQUIREMENTS)


if __name__ == "__main__":
    print(ensure())
    sys.exit(0)
