"""What every endpoint reads from a request, as data: the parameters no one module owns
(frame, style, sizes, downloads, layouts, access credentials) and, for each family of
endpoints, the named group of :class:`~tilecast.common.params.Param` it reads.

The parsers read their parameters through these declarations (bounds, defaults,
names), the routes attach the groups to their views (api/openapi.py ``document``),
and ``/openapi.json`` is built from the same groups: one declaration, read by both.
A parameter whose meaning belongs to one module is declared there (the encoding's in
common/encoding.py, a region's in common/regionparams.py, ``fill`` in common/fill.py).
"""

from __future__ import annotations

from tilecast.common import signing
from tilecast.common.encoding import ENCODING_PARAMS
from tilecast.common.fill import FILL
from tilecast.common.girder import SECRET_HEADER, TOKEN_COOKIE, TOKEN_HEADER, TOKEN_PARAMETER
from tilecast.common.params import INTEGER, JSON_TEXT, Param
from tilecast.common.regionparams import (
    BOTTOM,
    HISTOGRAM_PARAMS,
    LEFT,
    OUTPUT_SIZE,
    REGION_PARAMS,
    RIGHT,
    SCALE_PARAMS,
    TOP,
    UNITS_PARAM,
)

MAX_FRAME = 2**31 - 1
# large_image's thumbnail size when a request names neither width nor height.
DEFAULT_THUMBNAIL_SIZE = 256
# large_image refuses thumbnails smaller than this in either dimension.
MIN_THUMBNAIL_SIZE = 2
# The most jobs one listing returns.
MAX_LISTED = 1000
DEFAULT_LISTED = 100
# Deep Zoom: a tile is rendered whole, so at most 4096 x 4096 (the default region bound).
DEFAULT_TILE_SIZE = 256
MAX_TILE_SIZE = 4096

# --- image parameters -------------------------------------------------------------------

FRAME = Param("frame", "frame index (0-based)", INTEGER, default=0, low=0, high=MAX_FRAME)
STYLE = Param(
    "style",
    "large_image style JSON (README, Styles), at most TILECAST_MAX_STYLE_BYTES bytes",
    JSON_TEXT,
    high_setting="max_style_bytes",
)
GENERATION = Param(
    "gen",
    "the source's generation (X-Tilecast-Generation): when current, the answer is "
    "cacheable for a year (immutable); an older one is a 404; not part of the cache key",
    INTEGER,
    low=0,
)
THUMBNAIL_WIDTH = Param(
    "width",
    "output width in pixels (fit, aspect kept; 256 x 256 when neither is given), at most "
    "TILECAST_MAX_THUMBNAIL_SIZE",
    INTEGER,
    low=MIN_THUMBNAIL_SIZE,
    high_setting="max_thumbnail_size",
)
THUMBNAIL_HEIGHT = Param(
    "height",
    "output height in pixels (fit, aspect kept), at most TILECAST_MAX_THUMBNAIL_SIZE",
    INTEGER,
    low=MIN_THUMBNAIL_SIZE,
    high_setting="max_thumbnail_size",
)
IMAGE_WIDTH = Param(
    "width",
    "output width in pixels (fit, aspect kept; 0: as stored), at most TILECAST_MAX_THUMBNAIL_SIZE",
    INTEGER,
    default=0,
    low=0,
    high_setting="max_thumbnail_size",
)
IMAGE_HEIGHT = Param(
    "height",
    "output height in pixels (fit, aspect kept; 0: as stored), at most TILECAST_MAX_THUMBNAIL_SIZE",
    INTEGER,
    default=0,
    low=0,
    high_setting="max_thumbnail_size",
)
CONTENT_DISPOSITION = Param(
    "contentDisposition",
    "send Content-Disposition (any other value: none)",
    choices=("inline", "attachment"),
)
CONTENT_DISPOSITION_FILENAME = Param(
    "contentDispositionFilename", "the file name it offers (default: the item's name)"
)
DISPOSITION = (CONTENT_DISPOSITION, CONTENT_DISPOSITION_FILENAME)

# --- Deep Zoom layout -------------------------------------------------------------------

TILESIZE = Param(
    "tilesize",
    "Deep Zoom tile size, a power of two",
    INTEGER,
    default=DEFAULT_TILE_SIZE,
    low=1,
    high=MAX_TILE_SIZE,
)
# Its upper bound is the request's tilesize: not a number the document can state.
OVERLAP = Param(
    "overlap",
    "pixels each tile repeats of its neighbours, at most tilesize",
    INTEGER,
    default=0,
    low=0,
)
DZI_LAYOUT = (TILESIZE, OVERLAP)

# --- pre-rendering (query or JSON body) ---------------------------------------------------

LEVELS = Param("levels", "levels: 0-6, 0,2,4 or all (default all)", default="all")
FRAMES = Param("frames", "frames: a range, a list or all (default 0)")
REGION = Param("region", "l,t,r,b in base pixels (default: the whole image)")
PRECACHE_THUMBNAIL = Param(
    "thumbnail", "also the thumbnail", choices=("true", "false", "1", "0"), default="false"
)
LIMIT = Param("limit", "at most this many", INTEGER, default=DEFAULT_LISTED, low=1, high=MAX_LISTED)

# --- access credentials (api/middleware/access.py, api/middleware/signed.py) ----------------------

GIRDER_TOKEN_HEADER = Param(TOKEN_HEADER, "a Girder token (girder access mode)", location="header")
GIRDER_TOKEN = Param(TOKEN_PARAMETER, "a Girder token (girder access mode)")
GIRDER_TOKEN_COOKIE = Param(
    TOKEN_COOKIE,
    "a Girder token (girder access mode), as Girder's web client sets it",
    location="cookie",
)
# Girder's clients send a token in any of these; the header wins, then the query.
GIRDER_CREDENTIALS = (GIRDER_TOKEN_HEADER, GIRDER_TOKEN, GIRDER_TOKEN_COOKIE)
PLUGIN_SECRET = Param(
    SECRET_HEADER,
    "the Girder plugin's shared secret (TILECAST_GIRDER_SECRET)",
    location="header",
)
# A signed URL's grant (common/signing.py): all four, or the /signed/... path form.
SIGNED_GRANT = (
    Param(signing.PREFIX_PARAMETER, "the path prefix the signature grants"),
    Param(
        signing.EXPIRES_PARAMETER,
        "when the grant ends (Unix seconds)",
        INTEGER,
        low=0,
        high=signing.MAX_EXPIRES,
    ),
    Param(signing.KEYID_PARAMETER, "which of TILECAST_SIGNING_KEYS signed it"),
    Param(signing.SIGNATURE_PARAMETER, "the HMAC-SHA256 signature, base64url"),
)
assert tuple(p.name for p in SIGNED_GRANT) == signing.PARAMETERS

# --- what each family of endpoints reads ---------------------------------------------------

TILE = (FRAME, STYLE, *ENCODING_PARAMS, GENERATION)
# fzxy: the frame is in the path.
TILE_IN_FRAME = (STYLE, *ENCODING_PARAMS, GENERATION)
THUMBNAIL_QUERY = (
    THUMBNAIL_WIDTH,
    THUMBNAIL_HEIGHT,
    FILL,
    FRAME,
    STYLE,
    *ENCODING_PARAMS,
    *DISPOSITION,
    GENERATION,
)
IMAGE = (IMAGE_WIDTH, IMAGE_HEIGHT, *ENCODING_PARAMS, *DISPOSITION, GENERATION)
REGION_QUERY = (
    *REGION_PARAMS,
    *OUTPUT_SIZE,
    *SCALE_PARAMS,
    FILL,
    FRAME,
    STYLE,
    *ENCODING_PARAMS,
    *DISPOSITION,
    GENERATION,
)
PIXEL = (
    LEFT.described("x of the pixel"),
    TOP.described("y of the pixel"),
    UNITS_PARAM,
    FRAME,
    GENERATION,
)
HISTOGRAM = (*HISTOGRAM_PARAMS, *OUTPUT_SIZE, FRAME, *REGION_PARAMS, *SCALE_PARAMS, GENERATION)
BANDS = (FRAME, GENERATION)
PRECACHE = (
    LEVELS,
    FRAMES,
    Param("frame", "one frame (when no frames)", INTEGER, low=0),
    REGION,
    *(p.described(p.doc + " (when no region)") for p in (LEFT, TOP, RIGHT, BOTTOM)),
    UNITS_PARAM.described("units of left, top, right, bottom (base_pixels or fraction)"),
    STYLE,
    *ENCODING_PARAMS,
    PRECACHE_THUMBNAIL,
)
JOBS_LIST = (LIMIT,)
DZI_DESCRIPTOR = (*DZI_LAYOUT, FRAME, STYLE, *ENCODING_PARAMS)
DZI_TILE = (*DZI_LAYOUT, *TILE)
TILEJSON = (*TILE, GIRDER_TOKEN.described("a Girder token the tile URLs carry on"))
# The viewer pages' own scripts read these and pass them on to every request they make,
# whose parsers check them: the page itself does not.
VIEWER_PAGE = (
    GIRDER_TOKEN.described("a Girder token (girder access mode), sent on with every request"),
    Param("frame", "the frame shown first", INTEGER, low=0),
    Param("style", "the style JSON applied first", JSON_TEXT),
)
INDEX_PAGE = VIEWER_PAGE[:1]
