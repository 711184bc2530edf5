"""dicom-microscopy-viewer and its DICOMweb client, from their npm packages, for the
DICOMweb browser test (tests/integration/test_dicomweb_browser.py).

Both ship prebuilt browser bundles (dicom-microscopy-viewer's ``dist/`` with its data
loader worker and WebAssembly codecs, dicomweb-client's UMD ``build/``), so no npm
install or bundler is needed: the tarballs are fetched from the npm registry, pinned by
version and by the sha512 integrity the registry publishes (api/viewer/assets.py's
download and check), and unpacked once into a cache directory.
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tilecast.api.viewer import assets

STAMP = "INTEGRITY"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    integrity: str
    # The package's folder whose files the page loads.
    folder: str

    @property
    def url(self) -> str:
        return f"https://registry.npmjs.org/{self.name}/-/{self.name}-{self.version}.tgz"


VIEWER = Package(
    "dicom-microscopy-viewer",
    "0.48.24",
    "sha512-016o/23eNqXMxgX5EjnDmFz1ROSMQmU7vmRlTVPUgshl6NaBrZzEyWkzq4BNaFFPfrE274AWdR5crW51cWh+9g==",
    "dist",
)
CLIENT = Package(
    "dicomweb-client",
    "0.11.3",
    "sha512-7t1Rc/01fyFnKlQeNPW9Pvxvmsx8R/BgB2n7BxTuWirRFwlTC5upEeLeS3vO72P+n6/SQZ3+5ij0bgaWDHQG/A==",
    "build",
)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tilecast-tests" / "npm"


def ensure(package: Package, root: Path | None = None) -> Path:
    """The unpacked ``folder`` of ``package`` (fetched, verified and unpacked on first use)."""
    target = (root or cache_root()) / f"{package.name}-{package.version}"
    stamp = target / STAMP
    if stamp.is_file() and stamp.read_text() == package.integrity:
        return target
    data = assets.download(package.url)
    assets.verify_integrity(data, package.integrity)
    prefix = PurePosixPath("package") / package.folder
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            path = PurePosixPath(member.name)
            if not member.isfile() or prefix not in path.parents or ".." in path.parts:
                continue
            name = target / path.relative_to(prefix)
            name.parent.mkdir(parents=True, exist_ok=True)
            extracted = tar.extractfile(member)
            assert extracted is not None
            name.write_bytes(extracted.read())
    stamp.write_text(package.integrity)  # last: the folder is complete
    return target
