"""Output encodings a client may ask for, parsed and bounded once at the edge."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.errors import BadRequest
from common.params import bounded_int

CONTENT_TYPES: dict[str, str] = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
}
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


@dataclass(frozen=True)
class EncodingOptions:
    """What the encoder produces: format plus the options that change the bytes."""

    format: str = "JPEG"
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    jpeg_subsampling: int = 0
    tiff_compression: str = "raw"

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def key_part(self) -> str:
        """Names the encoding in cache keys: only options that affect the format count."""
        if self.format == "JPEG":
            return f"JPEG.q{self.jpeg_quality}.s{self.jpeg_subsampling}"
        if self.format == "WEBP":
            return f"WEBP.q{self.jpeg_quality}"
        if self.format == "TIFF":
            return f"TIFF.{TIFF_COMPRESSIONS[self.tiff_compression]}"
        return self.format

    def to_payload(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "jpeg_quality": self.jpeg_quality,
            "jpeg_subsampling": self.jpeg_subsampling,
            "tiff_compression": self.tiff_compression,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> EncodingOptions:
        return cls(
            format=str(payload["format"]),
            jpeg_quality=int(payload["jpeg_quality"]),
            jpeg_subsampling=int(payload["jpeg_subsampling"]),
            tiff_compression=str(payload["tiff_compression"]),
        )

    @classmethod
    def from_query(
        cls, args: Mapping[str, str], *, default_quality: int = DEFAULT_JPEG_QUALITY
    ) -> EncodingOptions:
        """Parse large_image's query parameters (``encoding``, ``jpegQuality``, ...)."""
        fmt = (args.get("encoding") or "JPEG").upper()
        if fmt == "JPG":
            fmt = "JPEG"
        if fmt not in CONTENT_TYPES:
            raise BadRequest(
                f"unknown encoding {args.get('encoding')!r}; one of {', '.join(CONTENT_TYPES)}",
                parameter="encoding",
            )
        quality = bounded_int(args, "jpegQuality", default_quality, 1, 100)
        subsampling = bounded_int(args, "jpegSubsampling", 0, 0, 2)
        compression = (args.get("tiffCompression") or "raw").lower()
        if compression not in TIFF_COMPRESSIONS:
            raise BadRequest(
                f"unknown tiffCompression {compression!r}; one of {', '.join(TIFF_COMPRESSIONS)}",
                parameter="tiffCompression",
            )
        assert quality is not None and subsampling is not None
        return cls(fmt, quality, subsampling, compression)
