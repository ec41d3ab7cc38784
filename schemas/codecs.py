"""Lossless PNG codecs for label maps and images, an optional lossy image codec, and guarded decoding.

Every decode goes through :func:`open_image`, which checks the declared size before any pixel is decoded so
that a decompression bomb (a tiny file that declares a huge image) is refused with a clear error.
"""

from __future__ import annotations

import io
import warnings

import fsspec
import numpy as np
from PIL import Image

DEFAULT_MAX_PIXELS: int = 8192 * 8192
"""Largest image (width x height) any decoder accepts unless told otherwise."""

PNG_COMPRESS_LEVEL: int = 1
"""Default zlib level for shard PNGs: level 1 encodes ~5x faster than 6 and is only ~13 % larger than 9."""

IMAGE_CODECS: tuple[str, ...] = ("png", "jpeg", "webp")
"""Codecs accepted for shard images; labels and masks are always PNG."""


class ImageDecodeError(ValueError):
    """Raised when bytes or a file cannot be decoded as the expected image."""


def sniff_codec(data: bytes) -> str:
    """Identify the codec of encoded image bytes from their magic number.

    Args:
        data: Encoded image bytes.

    Returns:
        One of ``"png"``, ``"jpeg"``, ``"webp"``, or ``"unknown"``.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "unknown"


def open_image(source: bytes | str, *, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open an image, refusing decompression bombs before decoding any pixel.

    Args:
        source: Encoded bytes, or an fsspec URL / local path.
        name: Name used in error messages (defaults to the URL, or ``"<bytes>"``).
        max_pixels: Largest accepted ``width * height``.

    Returns:
        A fully loaded :class:`PIL.Image.Image`.

    Raises:
        FileNotFoundError: If the URL does not exist.
        ImageDecodeError: If the data is not a decodable image or declares more than ``max_pixels`` pixels.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or "<bytes>"
    else:
        label = name or str(source)
        try:
            with fsspec.open(str(source), "rb") as f:
                data = f.read()
        except FileNotFoundError as err:
            raise FileNotFoundError(f"image file not found: {label}") from err
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise ImageDecodeError(
                    f"{label}: image declares {w}x{h} = {w * h} pixels, more than the allowed {max_pixels}"
                    " (possible decompression bomb; raise max_pixels if the file is genuine)"
                )
            img.load()
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageDecodeError(f"{label}: refused as a decompression bomb: {err}") from err
    except Exception as err:  # PIL raises many types for corrupt data
        raise ImageDecodeError(f"{label}: cannot decode image ({type(err).__name__}: {err})") from err
    return img


def read_rgb(source: bytes | str, *, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image to RGB like ``PIL.Image.open(...).convert("RGB")``.

    Args:
        source: Encoded bytes or an fsspec URL / local path.
        name: Name used in error messages.
        max_pixels: Largest accepted ``width * height``.

    Returns:
        uint8 array (H, W, 3).
    """
    img = open_image(source, name=name, max_pixels=max_pixels)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def read_label(source: bytes | str, *, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a single-channel label map (8-bit or 16-bit PNG) without any colour conversion.

    Args:
        source: Encoded bytes or an fsspec URL / local path.
        name: Name used in error messages.
        max_pixels: Largest accepted ``width * height``.

    Returns:
        uint8 array (H, W) for 8-bit files, uint16 or int32 array (H, W) for 16-bit / 32-bit files.

    Raises:
        ImageDecodeError: If the file is not a single-channel image (e.g. RGB).
    """
    img = open_image(source, name=name, max_pixels=max_pixels)
    label = name or (source if isinstance(source, str) else "<bytes>")
    if img.mode == "P":
        return np.asarray(img, dtype=np.uint8).copy()
    if img.mode == "L":
        return np.asarray(img, dtype=np.uint8).copy()
    if img.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(img, dtype=np.uint16).copy()
    if img.mode == "I":
        return np.asarray(img, dtype=np.int32).copy()
    if img.mode == "1":
        return np.asarray(img, dtype=np.uint8).copy()
    raise ImageDecodeError(f"{label}: expected a single-channel label image, found mode {img.mode!r}")


def encode_png(array: np.ndarray, *, compress_level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """Encode a uint8 (H, W) / (H, W, 3) or uint16 (H, W) array losslessly as PNG.

    Args:
        array: The array; uint8 gray, uint8 RGB or uint16 gray.
        compress_level: zlib level 0..9.

    Returns:
        PNG bytes that :func:`decode_png` turns back into an identical array.

    Raises:
        ValueError: For other dtypes or shapes.
    """
    arr = np.ascontiguousarray(array)
    if arr.dtype == np.uint8 and arr.ndim == 2:
        img = Image.fromarray(arr, mode="L")
    elif arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
        img = Image.fromarray(arr, mode="RGB")
    elif arr.dtype == np.uint16 and arr.ndim == 2:
        img = Image.fromarray(arr.astype("<u2"))  # PIL picks mode I;16
    else:
        raise ValueError(
            f"encode_png takes uint8 (H,W), uint8 (H,W,3) or uint16 (H,W); got {arr.dtype} {arr.shape}"
        )
    if not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level must be in 0..9, got {compress_level}")
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def decode_png(data: bytes, *, name: str = "<png>", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode PNG bytes written by :func:`encode_png` back into the original array.

    Args:
        data: PNG bytes.
        name: Name used in error messages (e.g. ``"shard-00001.parquet row 17 field label"``).
        max_pixels: Largest accepted ``width * height``.

    Returns:
        uint8 (H, W), uint8 (H, W, 3) or uint16 (H, W) array.

    Raises:
        ImageDecodeError: If the bytes are not PNG or use another pixel mode.
    """
    if sniff_codec(data) != "png":
        raise ImageDecodeError(f"{name}: expected PNG bytes, found {sniff_codec(data)}")
    img = open_image(data, name=name, max_pixels=max_pixels)
    if img.mode == "RGB":
        return np.asarray(img, dtype=np.uint8).copy()
    if img.mode == "L":
        return np.asarray(img, dtype=np.uint8).copy()
    if img.mode.startswith("I;16"):
        return np.asarray(img, dtype=np.uint16).copy()
    raise ImageDecodeError(f"{name}: expected an L, RGB or I;16 PNG, found mode {img.mode!r}")


def encode_image(rgb: np.ndarray, codec: str = "png", *, quality: int = 95,
                 compress_level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """Encode an RGB frame with the chosen shard image codec.

    Args:
        rgb: uint8 array (H, W, 3).
        codec: ``"png"`` (lossless, default), ``"jpeg"`` or ``"webp"`` (lossy, faster to read).
        quality: Quality for lossy codecs; at least 95 is required to keep pasted-object detail.
        compress_level: zlib level for PNG.

    Returns:
        Encoded bytes.

    Raises:
        ValueError: For an unknown codec, a quality below 95, or a non-RGB array.
    """
    if codec not in IMAGE_CODECS:
        raise ValueError(f"image codec must be one of {IMAGE_CODECS}, got {codec!r}")
    if codec == "png":
        return encode_png(rgb, compress_level=compress_level)
    arr = np.ascontiguousarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"encode_image takes uint8 (H,W,3), got {arr.dtype} {arr.shape}")
    if not 95 <= quality <= 100:
        raise ValueError(f"lossy image quality must be in 95..100, got {quality}")
    buf = io.BytesIO()
    if codec == "jpeg":
        Image.fromarray(arr, mode="RGB").save(buf, format="JPEG", quality=quality, subsampling=0)
    else:
        Image.fromarray(arr, mode="RGB").save(buf, format="WEBP", quality=quality, method=4)
    return buf.getvalue()


def decode_image(data: bytes, *, name: str = "<image>", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a shard image of any codec in :data:`IMAGE_CODECS` to RGB.

    Args:
        data: Encoded bytes.
        name: Name used in error messages.
        max_pixels: Largest accepted ``width * height``.

    Returns:
        uint8 array (H, W, 3).

    Raises:
        ImageDecodeError: For bytes in another codec or undecodable data.
    """
    codec = sniff_codec(data)
    if codec not in IMAGE_CODECS:
        raise ImageDecodeError(f"{name}: expected one of {IMAGE_CODECS}, found {codec} bytes")
    return read_rgb(data, name=name, max_pixels=max_pixels)
