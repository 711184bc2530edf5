"""What a file's first bytes say it is, for the 415 that names what no reader reads.

Only a description for people: readers decide by their own ``can_read``; this names the
usual suspects (an archive, a document, text, a format tilecast has no reader for) so
that "unsupported format" says what was uploaded.
"""

from __future__ import annotations

# (offset, magic, what it is), first match wins.
MAGICS: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%PDF", "a PDF document"),
    (0, b"PK\x03\x04", "a zip archive"),
    (0, b"PK\x05\x06", "an empty zip archive"),
    (0, b"\x1f\x8b", "gzip-compressed data"),
    (0, b"BZh", "bzip2-compressed data"),
    (0, b"\xfd7zXZ\x00", "xz-compressed data"),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (0, b"\x28\xb5\x2f\xfd", "zstd-compressed data"),
    (257, b"ustar", "a tar archive"),
    (0, b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (0, b"SQLite format 3\x00", "an SQLite database"),
    (0, b"ZISRAWFILE", "a Zeiss CZI file"),
    (0, b"\xda\xce\xbe\x0a", "a Nikon ND2 file"),
    (128, b"DICM", "a DICOM file"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000 (jp2) file"),
    (0, b"\xff\x4f\xff\x51", "a JPEG 2000 codestream"),
    (0, b"BM", "a BMP image"),
    (0, b"\x7fELF", "an ELF executable"),
    (0, b"MZ", "a Windows executable"),
    (0, b"II*\x00", "a TIFF file"),
    (0, b"MM\x00*", "a TIFF file"),
    (0, b"II+\x00", "a BigTIFF file"),
    (0, b"MM\x00+", "a BigTIFF file"),
)
TEXT_KINDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("<!doctype html", "<html"), "an HTML page"),
    (("<?xml",), "an XML document"),
    (("{", "["), "JSON or other text"),
)


def describe_content(head: bytes, size: int) -> str:
    """A few words on what ``head`` (a file's first bytes; the file is ``size`` bytes)
    is: "an empty file", "a zip archive", "text", "unrecognised binary data (starting
    3f 2a 00 ...)"."""
    if size == 0:
        return "an empty file"
    for offset, magic, what in MAGICS:
        if head[offset : offset + len(magic)] == magic:
            return what
    if _is_text(head):
        lowered = head.lstrip(b"\xef\xbb\xbf \t\r\n").decode("utf-8", "replace")[:64].lower()
        for prefixes, what in TEXT_KINDS:
            if lowered.startswith(prefixes):
                return what
        return "text"
    return f"unrecognised binary data (starting {head[:8].hex(' ')})"


def _is_text(head: bytes) -> bool:
    sample = head[:1024]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the sample's end is still text.
        if exc.start < len(sample) - 3:
            return False
        text = sample[: exc.start].decode("utf-8")
    return all(ch.isprintable() or ch in "\t\r\n\f" for ch in text)
