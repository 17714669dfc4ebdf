"""ui/scatter.py's payloads: the thumbnail atlas holds every image exactly, layers carry positions and colours."""
from __future__ import annotations

import base64
import io

import numpy as np
import torch
from PIL import Image

from ui.scatter import atlas_png, make_layer


def test_atlas_tiles_every_image_losslessly():
    x = torch.rand(300, 1, 28, 28)
    a = atlas_png(x, cols=16)
    assert (a["n"], a["w"], a["h"], a["cols"]) == (300, 28, 28, 16)
    img = np.asarray(Image.open(io.BytesIO(base64.b64decode(a["png"]))))
    assert img.shape == (19 * 28, 16 * 28)  # ceil(300 / 16) rows
    for i in (0, 17, 299):
        r, c = divmod(i, 16)
        tile = img[r * 28:(r + 1) * 28, c * 28:(c + 1) * 28]
        np.testing.assert_array_equal(tile, (x[i, 0] * 255).round().to(torch.uint8).numpy())


def test_atlas_of_colour_images():
    x = torch.rand(5, 3, 32, 32)
    img = np.asarray(Image.open(io.BytesIO(base64.b64decode(atlas_png(x, cols=4)["png"]))))
    assert img.shape == (64, 128, 3)
    np.testing.assert_array_equal(img[32:64, 0:32], (x[4].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())


def test_layers_by_class_and_by_value():
    xy = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    labels = np.arange(50) % 3
    by_class = make_layer("m|test|pca", xy, labels, ["a", "b", "c"], None, "", ("PC 1", "PC 2"))
    pts = np.frombuffer(base64.b64decode(by_class.body["points"]), np.float32).reshape(-1, 2)
    np.testing.assert_array_equal(pts, xy)
    assert by_class.body["legend"] == [["a", "#4e79a7"], ["b", "#f28e2b"], ["c", "#e15759"]]
    assert by_class.body["names"] == ["a", "b", "c"]
    by_value = make_layer("m|test|pca", xy, labels, ["a", "b", "c"], np.linspace(0, 1, 50), "σ", ("PC 1", "PC 2"))
    colours = np.frombuffer(base64.b64decode(by_value.body["color"]), np.uint8)
    assert colours[0] == 0 and colours[-1] == 255 and (np.diff(colours.astype(int)) >= 0).all()
    assert len(by_value.body["palette"]) == 256 and by_value.body["colorbar"]["title"] == "σ"
    assert by_class.id != by_value.id  # the browser caches them apart
    assert make_layer("m|test|tsne", xy, labels, None, None, "", ("", "")).id != by_class.id
