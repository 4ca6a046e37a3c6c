"""Image pixels: decoding with one-line errors, the size check against the annotations, and the process's
cache of decoded images."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

from mal.errors import UserError


def decode_image(path: Path | str) -> np.ndarray:
    """RGB uint8 (H, W, 3) pixels of an image file."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        # PIL reports some broken files as SyntaxError/ValueError; the message must stay one line
        raise UserError(f"{path}: cannot read image ({' '.join(str(exc).split())})") from None


def load_image(path: Path | str, image_id: int, expected_hw: tuple[int, int]) -> np.ndarray:
    """Decoded pixels, refused when their size disagrees with the annotations (the boxes would be off)."""
    image = decode_image(path)
    if image.shape[:2] != tuple(expected_hw):
        raise UserError(
            f"{path}: image is {image.shape[1]}x{image.shape[0]} but its annotations say "
            f"{expected_hw[1]}x{expected_hw[0]} (image id {image_id})"
        )
    return image


class ImageCache:
    """Decoded images shared by every dataset of this process, bounded in bytes, least recently used out.

    A study's next trial often runs in the process of a finished one (automl reuses Ray actors), and then
    starts with its images decoded. Keyed by path, size and modification time, so an edited file is read again.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._images: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def load(self, path: Path, image_id: int, expected_hw: tuple[int, int]) -> np.ndarray:
        try:
            st = path.stat()
            key = (str(path), st.st_size, st.st_mtime_ns)
        except OSError:
            key = None  # load_image names the problem
        if key in self._images:
            self._images.move_to_end(key)
            return self._images[key]
        image = load_image(path, image_id, expected_hw)
        if key is not None and image.nbytes <= self.max_bytes:
            self._images[key] = image
            self.bytes += image.nbytes
            while self.bytes > self.max_bytes:
                self.bytes -= self._images.popitem(last=False)[1].nbytes
        return image


IMAGE_CACHE = ImageCache(int(float(os.environ.get("MAL_IMAGE_CACHE_MB", "1024")) * 2**20))
