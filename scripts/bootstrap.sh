# Sourced by scripts/up and scripts/test: a virtual environment in .venv with tilecast
# installed, on a fresh Debian/Ubuntu machine with Python 3.11+.
set -euo pipefail

PYTHON=${PYTHON:-python3}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root (or sudo) to run: $*" >&2; return 1; fi
}

check_python() {
    if ! command -v "$PYTHON" >/dev/null; then
        as_root apt-get update -q && as_root apt-get install -y -q python3 python3-venv
    fi
    "$PYTHON" - <<'PY' || { echo "tilecast needs Python >= 3.11" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY
}

# Debian's python3 has no ensurepip until python3-venv is installed.
# The jpeg2000 reader (workers/sources/openjpeg.py) decodes areas of plain JPEG 2000 files
# with the system's OpenJPEG, Debian's libopenjp2-7 (glymur, which the tests' large_image
# openjpeg source uses, needs the same library).
ensure_openjpeg() {
    if ! { ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null | grep -q 'libopenjp2\.so'; then
        as_root apt-get update -q >/dev/null
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q libopenjp2-7 >/dev/null
    fi
}

ensure_venv() {
    local extras=$1
    check_python
    ensure_openjpeg
    if [ ! -x .venv/bin/python ]; then
        if ! "$PYTHON" -m venv .venv 2>/dev/null; then
            rm -rf .venv
            local minor
            minor=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
            as_root apt-get update -q
            as_root apt-get install -y -q "python${minor}-venv" || as_root apt-get install -y -q python3-venv
            "$PYTHON" -m venv .venv
        fi
    fi
    .venv/bin/python -m pip install -q --upgrade pip
    # OpenSeadragon for the viewer from its pinned npm tarball (the build hook in setup.py
    # does the same, silently); without network the rest still installs.
    .venv/bin/python -m tilecast.api.viewer.assets || echo "warning: the viewer will answer 503" >&2
    .venv/bin/python -m pip install -q -e ".${extras}"
    # The test extra brings Girder 5, which loads every installed plugin: the Girder tests
    # run it with tilecast's (deploy/girder-plugin).
    if [[ "$extras" == *test* ]]; then
        .venv/bin/python -m pip install -q -e deploy/girder-plugin
    fi
}

# The browser test (tests/integration/test_viewer_browser.py) drives Debian's chromium.
ensure_chromium() {
    if [ ! -x /usr/bin/chromium ]; then
        as_root apt-get update -q >/dev/null
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
    fi
}

# The DICOM reader's tests (tests/dicomslides.py) convert slides with Orthanc's own
# dicomizer, Debian's orthanc-wsi. Without its recommends: they would bring the Orthanc
# server, whose package starts a service.
ensure_orthanc_wsi() {
    if [ ! -x /usr/bin/OrthancWSIDicomizer ]; then
        as_root apt-get update -q >/dev/null
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends orthanc-wsi >/dev/null
    fi
}

# The DICOMweb sources' tests (tests/orthancserver.py) run a real DICOMweb server: Orthanc
# and its DICOMweb plugin, started by the tests on a free port with their own config.
# Installed without recommends. Where systemd runs, the package also starts its own
# service (port 8042); the tests do not use it.
ensure_orthanc() {
    if [ ! -x /usr/sbin/Orthanc ] || ! dpkg -s orthanc-dicomweb >/dev/null 2>&1; then
        as_root apt-get update -q >/dev/null
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends orthanc orthanc-dicomweb >/dev/null
    fi
}
