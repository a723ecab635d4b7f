"""Images are judged by signature and structure from their headers."""

from pathlib import Path

from evalpipe.sources.vmeval.images import image_problem
from evalpipe.sources.vmeval.samples import png_bytes


def check(tmp_path: Path, data: bytes) -> str | None:
    path = tmp_path / "image"
    path.write_bytes(data)
    return image_problem(path)


def test_a_valid_png_and_jpeg_pass(tmp_path: Path) -> None:
    assert check(tmp_path, png_bytes(4, 3, (1, 2, 3))) is None
    assert check(tmp_path, b"\xff\xd8\xff\xe0" + b"\0" * 30 + b"\xff\xd9") is None


def test_bad_images_say_why(tmp_path: Path) -> None:
    png = png_bytes(4, 3, (1, 2, 3))
    assert check(tmp_path, b"") == "empty file"
    assert check(tmp_path, b"GIF89a....").startswith("not a PNG or JPEG")
    assert check(tmp_path, png[:-12]) == "truncated PNG (no IEND chunk)"
    assert check(tmp_path, png[:40]).startswith("truncated PNG")
    assert "IHDR" in check(tmp_path, png[:8] + png[33:])
    assert check(tmp_path, b"\xff\xd8\xff\xe0" + b"\0" * 30) == "truncated JPEG (no end marker)"
