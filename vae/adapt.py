"""One image, many models: turn an image at its own size into a given model's input (the app's "current image").

An upload or a drawing is "raw" (a photo of ink on paper, any size and colour): it goes through the same recipe as
Reconstruct's upload (MNIST-style for digit models). An image that came out of a data set or a decoder is already in
a model's conventions (white ink on black, centred): it is only resized and converted between grey and colour.
Never imports streamlit.
"""
from __future__ import annotations

import numpy as np
import torch

from vae.data import DataError, Preprocessed, _array_to_pil, digit_style_input, image_to_array

MAX_SIDE = 512  # a raw image is kept at most this large: the models read 8-32 px, the MNIST recipe crops first


def decode_upload(data: bytes) -> torch.Tensor:
    """Bytes of an image file -> (3, H, W) float in [0, 1], longest side at most MAX_SIDE; DataError if unusable."""
    from PIL import Image

    from vae.data import _flatten_alpha, load_image

    im = _flatten_alpha(load_image(data)).convert("RGB")
    w, h = im.size
    if max(w, h) > MAX_SIDE:
        s = MAX_SIDE / max(w, h)
        im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0)


def _hwc(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) -> (H, W) or (H, W, 3) float32 numpy for display and PIL."""
    a = x.detach().cpu().float().numpy()
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def adapt(x: torch.Tensor, input_shape: tuple[int, int, int], raw: bool, digit_style: bool = False) -> Preprocessed:
    """An image (C, H, W) in [0, 1] -> a model's input of `input_shape`, with every step kept for display.

    Raises DataError when it cannot be done (a blank image under the MNIST recipe, a wrong shape).
    """
    if x.ndim != 3 or x.shape[0] not in (1, 3) or min(x.shape[1:]) < 1 or not torch.isfinite(x).all():
        raise DataError(f"an image must be (1 or 3, H, W) finite values, not {tuple(x.shape)}")
    c, h, w = input_shape
    x = x.float().clamp(0, 1)
    steps: list[tuple[str, np.ndarray]] = [("uploaded" if raw else "image", _hwc(x))]
    if tuple(x.shape) == (c, h, w) and not (raw and digit_style):
        return Preprocessed(x.clone(), steps)
    if raw and digit_style and c == 1:
        grey = _hwc(x) if x.shape[0] == 1 else np.asarray(_array_to_pil(_hwc(x)).convert("L"), dtype=np.float32) / 255
        if x.shape[0] == 3:
            steps.append(("grey", grey))
        out = digit_style_input(grey, (h, w), steps)
    else:
        out = torch.from_numpy(image_to_array(_array_to_pil(_hwc(x)), c, (h, w)))
        steps.append((f"resized to {h}x{w}" + (" grey" if c == 1 and x.shape[0] == 3 else ""), _hwc(out)))
    return Preprocessed(out.clamp(0, 1), steps)


def try_adapt(x: torch.Tensor, input_shape: tuple[int, int, int], raw: bool, digit_style: bool = False) -> torch.Tensor | None:
    """adapt(...).x, or None when the image cannot be made into this model's input."""
    try:
        return adapt(x, input_shape, raw, digit_style).x
    except DataError:
        return None

