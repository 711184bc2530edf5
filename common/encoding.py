"""Output encodings a client may ask for, parsed and bounded once at the edge.

Parameter names are large_image's where it has them: ``encoding``, ``jpegQuality``,
``jpegSubsampling``, ``tiffCompression``. large_image's tile endpoints have no WEBP or
AVIF options (it hands WEBP and AVIF to PIL with PIL's defaults: WEBP quality 80, lossy),
so tilecast adds ``webpQuality`` / ``webpLossless`` and ``avifQuality`` in the same
style, defaulting to what large_image produces. Every option that changes the bytes is
part of :attr:`EncodingOptions.key_part`; options of other formats are not, so they
never split the cache.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tilecast.common.errors import BadRequest
from tilecast.common.params import BOOLEAN, INTEGER, Param, names

CONTENT_TYPES: dict[str, str] = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "AVIF": "image/avif",
}
# Other spellings of the formats; JFIF is large_image's "JPEG through PIL" alias.
FORMAT_ALIASES: dict[str, str] = {"JPG": "JPEG", "JFIF": "JPEG", "TIF": "TIFF"}
# large_image's names for TIFF compression, mapped to libvips' names.
TIFF_COMPRESSIONS: dict[str, str] = {
    "raw": "none",
    "none": "none",
    "lzw": "lzw",
    "tiff_lzw": "lzw",
    "jpeg": "jpeg",
    "deflate": "deflate",
    "zip": "deflate",
    "tiff_adobe_deflate": "deflate",
    "zstd": "zstd",
}
DEFAULT_JPEG_QUALITY = 95
DEFAULT_WEBP_QUALITY = 80  # PIL's default, what large_image's WEBP output gets
DEFAULT_AVIF_QUALITY = 75  # PIL's default, what large_image's AVIF output gets

# The query parameters of every image answer (tiles, thumbnails, regions, ...).
ENCODING = Param(
    "encoding",
    "output format (default JPEG)",
    choices=(*CONTENT_TYPES, *FORMAT_ALIASES),
    default="JPEG",
)
JPEG_QUALITY = Param(
    "jpegQuality",
    "JPEG quality (default TILECAST_JPEG_QUALITY)",
    INTEGER,
    default=DEFAULT_JPEG_QUALITY,
    low=1,
    high=100,
    default_setting="jpeg_quality",
)
JPEG_SUBSAMPLING = Param(
    "jpegSubsampling", "0, 1, 2 = 4:4:4, 4:2:2, 4:2:0", INTEGER, default=0, low=0, high=2
)
TIFF_COMPRESSION = Param(
    "tiffCompression", "TIFF compression", choices=tuple(TIFF_COMPRESSIONS), default="raw"
)
WEBP_QUALITY = Param(
    "webpQuality", "WEBP quality", INTEGER, default=DEFAULT_WEBP_QUALITY, low=1, high=100
)
WEBP_LOSSLESS = Param("webpLossless", "lossless WEBP", BOOLEAN, default=False)
AVIF_QUALITY = Param(
    "avifQuality", "AVIF quality", INTEGER, default=DEFAULT_AVIF_QUALITY, low=1, high=100
)
ENCODING_PARAMS = (
    ENCODING,
    JPEG_QUALITY,
    JPEG_SUBSAMPLING,
    TIFF_COMPRESSION,
    WEBP_QUALITY,
    WEBP_LOSSLESS,
    AVIF_QUALITY,
)
QUERY_PARAMETERS = names(ENCODING_PARAMS)


@dataclass(frozen=True)
class EncodingOptions:
    """What the encoder produces: format plus the options that change the bytes."""

    format: str = "JPEG"
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    jpeg_subsampling: int = 0
    tiff_compression: str = "raw"
    webp_quality: int = DEFAULT_WEBP_QUALITY
    webp_lossless: bool = False
    avif_quality: int = DEFAULT_AVIF_QUALITY

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def key_part(self) -> str:
        """Names the encoding in cache keys: only options that affect the format count."""
        if self.format == "JPEG":
            return f"JPEG.q{self.jpeg_quality}.s{self.jpeg_subsampling}"
        if self.format == "WEBP":
            return "WEBP.lossless" if self.webp_lossless else f"WEBP.q{self.webp_quality}"
        if self.format == "AVIF":
            return f"AVIF.q{self.avif_quality}"
        if self.format == "TIFF":
            # JPEG-in-TIFF uses PIL's own quality, as in large_image: no quality here.
            return f"TIFF.{TIFF_COMPRESSIONS[self.tiff_compression]}"
        return self.format

    def to_payload(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "jpeg_quality": self.jpeg_quality,
            "jpeg_subsampling": self.jpeg_subsampling,
            "tiff_compression": self.tiff_compression,
            "webp_quality": self.webp_quality,
            "webp_lossless": self.webp_lossless,
            "avif_quality": self.avif_quality,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> EncodingOptions:
        return cls(
            format=str(payload["format"]),
            jpeg_quality=int(payload["jpeg_quality"]),
            jpeg_subsampling=int(payload["jpeg_subsampling"]),
            tiff_compression=str(payload["tiff_compression"]),
            webp_quality=int(payload.get("webp_quality", DEFAULT_WEBP_QUALITY)),
            webp_lossless=bool(payload.get("webp_lossless", False)),
            avif_quality=int(payload.get("avif_quality", DEFAULT_AVIF_QUALITY)),
        )

    @classmethod
    def from_query(
        cls, args: Mapping[str, str], *, default_quality: int = DEFAULT_JPEG_QUALITY
    ) -> EncodingOptions:
        """Parse the query parameters (``encoding``, ``jpegQuality``, ...)."""
        if not any(name in args for name in QUERY_PARAMETERS):
            # Most viewers name no encoding: the hit path skips the parsing.
            return _default_options(default_quality)
        raw_format = args.get(ENCODING.name)
        fmt = (raw_format or ENCODING.default).upper()
        fmt = FORMAT_ALIASES.get(fmt, fmt)
        if fmt not in CONTENT_TYPES:
            raise BadRequest(
                f"unknown encoding {raw_format!r}; one of {', '.join(CONTENT_TYPES)}",
                parameter=ENCODING.name,
            )
        quality = JPEG_QUALITY.integer(args, default=default_quality)
        subsampling = JPEG_SUBSAMPLING.integer(args)
        compression = (args.get(TIFF_COMPRESSION.name) or TIFF_COMPRESSION.default).lower()
        if compression not in TIFF_COMPRESSIONS:
            raise BadRequest(
                f"unknown tiffCompression {compression!r}; one of {', '.join(TIFF_COMPRESSIONS)}",
                parameter=TIFF_COMPRESSION.name,
            )
        webp_quality = WEBP_QUALITY.integer(args)
        avif_quality = AVIF_QUALITY.integer(args)
        assert None not in (quality, subsampling, webp_quality, avif_quality)
        return cls(
            fmt,
            int(quality),  # type: ignore[arg-type]
            int(subsampling),  # type: ignore[arg-type]
            compression,
            webp_quality=int(webp_quality),  # type: ignore[arg-type]
            webp_lossless=WEBP_LOSSLESS.boolean(args),
            avif_quality=int(avif_quality),  # type: ignore[arg-type]
        )


@functools.cache
def _default_options(jpeg_quality: int) -> EncodingOptions:
    return EncodingOptions(jpeg_quality=jpeg_quality)
