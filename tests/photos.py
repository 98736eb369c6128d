"""Real photos shipped in scikit-image, as a detector's inputs (no download)."""

from __future__ import annotations

import numpy as np


def square_photo(img: np.ndarray, size: int) -> np.ndarray:
    """One photo (grey or RGB, uint8 or float in [0, 1]) as ``size`` px square RGB in
    [-1, 1], resized bilinearly."""
    from PIL import Image

    a = np.asarray(img, np.float32)
    a = a / (255.0 if a.max() > 1.5 else 1.0)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    pil = Image.fromarray((a[..., :3] * 255).astype(np.uint8))
    return np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR),
                      np.float32) / 127.5 - 1.0


def scenes() -> list[np.ndarray]:
    """scikit-image's astronaut, camera man, cat, coffee and rocket."""
    import skimage.data as skdata

    return [skdata.astronaut(), skdata.camera(), skdata.chelsea(), skdata.coffee(),
            skdata.rocket()]
