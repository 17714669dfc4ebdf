"""The exported decoder (what the browser runs) against PyTorch's decode, its buffer layout, ids and refusals."""
from __future__ import annotations

import base64

import numpy as np
import pytest
import torch

import vae
from vae.export import DTYPES, MAX_PARAMS, ExportError, decode_exported, export_decoder, max_decode_error

# The canvas stores uint8, which alone costs up to 0.5/255; the float budget for the 1/255 target is the other half.
FLOAT_BUDGET = 0.5 / 255


def _probe_z(latent_dim: int, n: int = 500) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, latent_dim, generator=g) * 3  # well past the prior's bulk, where logits are large


@pytest.mark.parametrize("latent_dim", [1, 2, 8])
def test_float32_export_decodes_like_pytorch(tiny_model, latent_dim):
    model = tiny_model(latent_dim=latent_dim).eval()
    export = export_decoder(model)
    z = _probe_z(latent_dim)
    assert max_decode_error(model, export, z) < 1e-5
    assert decode_exported(export, z.numpy()).shape == (len(z), 1, 8, 8)


def test_trained_model_matches_within_budget(trained_digits, digits):
    export = export_decoder(trained_digits)
    mu, _ = vae.encode(trained_digits, digits.x_test)
    assert max_decode_error(trained_digits, export, mu) < FLOAT_BUDGET
    assert max_decode_error(trained_digits, export, _probe_z(8)) < FLOAT_BUDGET


@pytest.mark.parametrize("name", ["z2", "z16"])
def test_shipped_models_float32_within_budget_float16_not_guaranteed(name):
    """Why the browser gets float32: float16 weights alone use more than the half-pixel budget on these models."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "checkpoints" / f"mnist5k-mlp-{name}.safetensors"
    model = vae.load_checkpoint(path).model.eval()
    z = _probe_z(model.cfg.latent_dim, 2000)
    assert max_decode_error(model, export_decoder(model, "float32"), z) < 1e-5
    assert max_decode_error(model, export_decoder(model, "float16"), z) > 1e-4  # measured 2-3e-3 (0.5-0.7/255)


def test_buffer_layout_round_trips_every_tensor(tiny_model):
    model = tiny_model(latent_dim=3)
    export = export_decoder(model)
    params = np.frombuffer(export.buffer, dtype=DTYPES["float32"])
    linears = [m for m in model.decoder if isinstance(m, torch.nn.Linear)]
    ops = [op for op in export.ops if op["op"] == "linear"]
    assert [o["op"] for o in export.ops] == ["linear", "relu", "linear", "sigmoid"]
    assert export.n_params == len(params) == sum(m.weight.numel() + m.bias.numel() for m in linears)
    for op, layer in zip(ops, linears):
        w = params[op["w"]: op["w"] + op["in"] * op["out"]].reshape(op["out"], op["in"])
        np.testing.assert_array_equal(w, layer.weight.detach().numpy())
        np.testing.assert_array_equal(params[op["b"]: op["b"] + op["out"]], layer.bias.detach().numpy())


def test_json_form_carries_the_exact_bytes(tiny_model):
    export = export_decoder(tiny_model(), "float16")
    j = export.to_json()
    assert base64.b64decode(j["buffer"]) == export.buffer
    assert len(export.buffer) == 2 * export.n_params
    assert j["input_shape"] == [1, 8, 8] and j["latent_dim"] == 8 and j["model_id"] == export.model_id


def test_model_id_follows_the_weights(tiny_model):
    a, b = tiny_model(seed=0), tiny_model(seed=0)
    assert export_decoder(a).model_id == export_decoder(b).model_id
    assert export_decoder(a).model_id != export_decoder(a, "float16").model_id
    with torch.no_grad():
        b.decoder[0].bias[0] += 1e-3
    assert export_decoder(a).model_id != export_decoder(b).model_id


def test_colour_images_keep_torchs_channel_order(tiny_model):
    model = tiny_model(input_shape=(3, 4, 6), latent_dim=2).eval()
    export = export_decoder(model)
    z = _probe_z(2, 20)
    np.testing.assert_allclose(decode_exported(export, z.numpy()), vae.decode(model, z).numpy(), atol=1e-6)


def test_conv_decoder_is_refused(tiny_model):
    with pytest.raises(ExportError, match="ConvTranspose2d"):
        export_decoder(tiny_model(arch="conv"))


def test_unknown_dtype_and_huge_decoder_are_refused(tiny_model):
    with pytest.raises(ExportError, match="dtype"):
        export_decoder(tiny_model(), "float64")
    big = vae.build_model(vae.ModelConfig(input_shape=(3, 64, 64), latent_dim=2, hidden=512))  # 512 * 12288 weights
    assert sum(p.numel() for p in big.decoder.parameters()) > MAX_PARAMS
    with pytest.raises(ExportError, match="server"):
        export_decoder(big)


def test_non_finite_weights_are_refused(tiny_model):
    model = tiny_model()
    with torch.no_grad():
        model.decoder[2].weight[0, 0] = float("nan")
    with pytest.raises(ExportError, match="non-finite"):
        export_decoder(model)
