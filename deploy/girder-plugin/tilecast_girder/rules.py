"""Pure decisions of the plugin (no Girder import): which files are images, what a
levels setting means, what a boolean setting holds."""

from __future__ import annotations

# Extensions tilecast (or large_image) may read, lower case, matched at the end of the file
# name so that double extensions ("ome.tif") count. A file that matches but that tilecast
# cannot read costs one refused call, so the list errs on the side of announcing.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    "tif",
    "tiff",
    "ome.tif",
    "ome.tiff",
    "ome.tf2",
    "ome.tf8",
    "ome.btf",
    "btf",
    "tf2",
    "tf8",
    "svs",
    "ndpi",
    "scn",
    "bif",
    "qptiff",
    "vms",
    "vmu",
    "mrxs",
    "czi",
    "png",
    "jpg",
    "jpeg",
    "jpe",
    "webp",
    "jp2",
    "j2k",
    "jpx",
)

IMAGE_MIME_TYPES: frozenset[str] = frozenset(
    {
        "image/tiff",
        "image/x-tiff",
        "image/png",
        "image/jpeg",
        "image/pjpeg",
        "image/webp",
        "image/jp2",
        "image/jpx",
        "image/jpm",
        "image/x-ndpi",
        "image/x-svs",
    }
)

# Far beyond any real pyramid (2^40 px on a side); keeps a typo from asking for millions
# of levels.
MAX_LEVEL = 40
DEFAULT_LEVELS = "0-2"
TRUE_TEXTS = frozenset({"true", "1", "yes", "on"})
FALSE_TEXTS = frozenset({"false", "0", "no", "off", ""})


def looks_like_image(name: str | None, mime_type: str | None) -> bool:
    """Whether a file named ``name`` with ``mime_type`` is worth announcing to tilecast."""
    if mime_type and mime_type.split(";", 1)[0].strip().lower() in IMAGE_MIME_TYPES:
        return True
    lowered = (name or "").lower()
    return any(lowered.endswith("." + ext) for ext in IMAGE_EXTENSIONS)


def parse_levels(text: str) -> list[int]:
    """The sorted levels named by ``text``: numbers and ranges, comma separated
    ("0-3", "0,1,2", "0-2,5"). Raises ValueError with a message fit for a user."""
    levels: set[int] = set()
    parts = [part.strip() for part in str(text).split(",")]
    if not any(parts):
        raise ValueError("tilecast.levels must name at least one level, e.g. '0-2' or '0,1,2'")
    for part in parts:
        levels.update(_parse_part(part))
    return sorted(levels)


def _parse_part(part: str) -> range:
    low_text, dash, high_text = part.partition("-")
    try:
        low = int(low_text)
        high = int(high_text) if dash else low
    except ValueError:
        raise ValueError(f"tilecast.levels: {part!r} is not a level or a range like 0-3") from None
    if not 0 <= low <= high <= MAX_LEVEL:
        raise ValueError(f"tilecast.levels: {part!r} must satisfy 0 <= low <= high <= {MAX_LEVEL}")
    return range(low, high + 1)


def normalize_levels(text: str) -> str:
    """``text`` validated and without blanks, as stored and sent to tilecast."""
    parse_levels(text)
    return ",".join(part.strip() for part in str(text).split(","))


def parse_bool(value: object) -> bool:
    """A boolean setting from what Girder stores (a JSON bool, or text through the API)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_TEXTS:
        return True
    if text in FALSE_TEXTS:
        return False
    raise ValueError(f"expected true or false, got {value!r}")
