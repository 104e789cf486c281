"""What a file really is, from its first bytes: for messages about files whose name says something else (a PDF
renamed .png, notes saved as .mp4). Pure Python, no dependencies; `talkface.media` uses it in its errors."""

from __future__ import annotations

# what a file's first bytes say it is, checked in order (MP4/MOV: "ftyp" at offset 4, see describe_content)
_SIGNATURES = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or a docx/xlsx/pptx document)"),
    (b"GIF8", "a GIF image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"BM", "a BMP image"),
    (b"RIFF", "a RIFF file (WAV audio, AVI video or WebP image)"),
    (b"ID3", "an MP3 audio file"),
    (b"fLaC", "a FLAC audio file"),
    (b"OggS", "an Ogg audio/video file"),
    (b"\x1a\x45\xdf\xa3", "a Matroska/WebM video"),
    (b"\x80\x02", "a Python pickle (e.g. a PyTorch checkpoint)"),
    (b"\x7fELF", "a program (ELF executable)"),
)


def describe_content(path) -> str | None:
    """What a file looks like from its first bytes ("a PDF document", "a text file", "an empty file", ...), to say
    what a wrongly named upload really is; None when unknown or unreadable."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return None
    if not head:
        return "an empty file (0 bytes)"
    if head[4:8] == b"ftyp":
        return "an MP4/MOV file"
    for signature, what in _SIGNATURES:
        if head.startswith(signature):
            return what
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as err:
            if err.start < len(head) - 4:  # not just a character cut at the end of the 512 bytes
                return None
        return "a text file"
    return None


__all__ = ["describe_content"]
