"""Tests for the diffusion U-Net and its timestep embeddings (CPU, a few seconds)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lit.models import TimeEmbedding, UNet, sinusoidal_embedding
from diffusion_lit.models.unet import AttentionBlock, ResBlock

# Small settings that keep every structural feature (3 levels, attention in the level
# blocks and the middle) but run in milliseconds.
SMALL = dict(base_channels=8, channel_mults=(1, 2, 2), num_res_blocks=1, num_heads=2, norm_groups=4)
# The conf/model/tiny.yaml settings.
TINY = dict(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(), num_heads=2,
            norm_groups=4)  # fmt: skip


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def perturb_(model: nn.Module, std: float = 0.05) -> nn.Module:
    """Give the zero-initialised layers random weights so every path affects the output."""
    with torch.no_grad():
        for p in model.parameters():
            if torch.count_nonzero(p) == 0:
                p.normal_(0.0, std)
    return model


# ---------------------------------------------------------------------------- embeddings


def test_sinusoidal_embedding_values_and_shapes() -> None:
    t = torch.tensor([0, 1, 999])
    emb = sinusoidal_embedding(t, 8)
    assert emb.shape == (3, 8) and emb.dtype == torch.float32
    # t=0: all sines 0, all cosines 1.
    torch.testing.assert_close(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    # First frequency is 1: sin(t), cos(t).
    assert emb[2, 0].item() == pytest.approx(math.sin(999.0), abs=1e-4)
    assert emb[2, 4].item() == pytest.approx(math.cos(999.0), abs=1e-4)
    # Lowest frequency is 1/max_period ** ((half-1)/half).
    assert emb[1, 3].item() == pytest.approx(math.sin(10000.0 ** (-3 / 4)), rel=1e-5)
    # Integer and float timesteps agree; fractional timesteps are supported.
    torch.testing.assert_close(emb, sinusoidal_embedding(t.float(), 8))
    frac = sinusoidal_embedding(torch.tensor([0.5]), 8)
    assert frac[0, 0].item() == pytest.approx(math.sin(0.5), abs=1e-6)


def test_sinusoidal_embedding_odd_dim_and_errors() -> None:
    emb = sinusoidal_embedding(torch.arange(4), 7)
    assert emb.shape == (4, 7)
    assert torch.all(emb[:, -1] == 0)
    torch.testing.assert_close(emb[:, :6], sinusoidal_embedding(torch.arange(4), 6))
    with pytest.raises(ValueError, match="1-D"):
        sinusoidal_embedding(torch.zeros(2, 2), 8)
    with pytest.raises(ValueError, match="dim"):
        sinusoidal_embedding(torch.arange(3), 1)


def test_time_embedding_mlp() -> None:
    emb = TimeEmbedding(32, sinusoidal_dim=16)
    out = emb(torch.tensor([0, 10, 500]))
    assert out.shape == (3, 32)
    assert not torch.allclose(out[0], out[1])
    kinds = [type(m) for m in emb.mlp]
    assert kinds == [nn.Linear, nn.SiLU, nn.Linear]


# ---------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size,attn", [(28, (7,)), (32, (8,))])
def test_output_shape(channels: int, size: int, attn: tuple[int, ...]) -> None:
    model = UNet(in_channels=channels, image_size=size, attention_resolutions=attn, **SMALL)
    x = torch.randn(2, channels, size, size)
    out = model(x, torch.tensor([3, 700]))
    assert out.shape == (2, channels, size, size)
    # Zero-initialised output conv: the untrained net predicts exactly 0.
    assert torch.count_nonzero(out) == 0


def test_tiny_settings_16px_and_8px() -> None:
    for size in (16, 8):
        model = UNet(in_channels=1, image_size=size, **TINY)
        assert model(torch.randn(3, 1, size, size), torch.tensor([0.0, 0.5, 999.0])).shape == (3, 1, size, size)


def test_out_channels_and_scalar_t() -> None:
    model = UNet(in_channels=3, out_channels=6, image_size=16, **TINY)
    assert model(torch.randn(2, 3, 16, 16), 5).shape == (2, 6, 16, 16)
    assert model(torch.randn(2, 3, 16, 16), torch.tensor(5)).shape == (2, 6, 16, 16)


def test_structure_matches_config() -> None:
    model = UNet(in_channels=1, image_size=32, attention_resolutions=(16,), **SMALL)
    attn = [m for m in model.modules() if isinstance(m, AttentionBlock)]
    # 16 px level: 1 encoder + 2 decoder blocks, plus the middle block.
    assert len(attn) == 4
    res = [m for m in model.modules() if isinstance(m, ResBlock)]
    # 3 levels x (1 encoder + 2 decoder) + 2 middle.
    assert len(res) == 11


# ---------------------------------------------------------------------------- behaviour


def test_time_conditioning_changes_output() -> None:
    model = perturb_(UNet(in_channels=1, image_size=16, attention_resolutions=(4,), **SMALL)).eval()
    x = torch.randn(1, 1, 16, 16).expand(2, -1, -1, -1)
    out = model(x, torch.tensor([1, 900]))
    assert out.abs().max() > 0
    diff = (out[0] - out[1]).abs().max()
    assert diff > 1e-3 * out.abs().max(), "output ignores the timestep"
    # Same t -> same output (the difference above comes from t, not from batch effects).
    same = model(x, torch.tensor([1, 1]))
    torch.testing.assert_close(same[0], same[1])


def test_gradients_reach_every_parameter() -> None:
    model = perturb_(UNet(in_channels=1, image_size=16, attention_resolutions=(8, 4), dropout=0.1, **SMALL))
    x = torch.randn(4, 1, 16, 16)
    loss = F.mse_loss(model(x, torch.randint(0, 1000, (4,))), torch.randn_like(x))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or torch.count_nonzero(p.grad) == 0]
    assert not missing, f"no gradient for {missing}"


def test_untrained_output_is_zero_but_final_conv_learns() -> None:
    model = UNet(in_channels=1, image_size=16, **TINY)
    x = torch.randn(2, 1, 16, 16)
    target = torch.randn_like(x)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # Step 0: only the output conv gets gradient (its zero weights block the rest) ...
    F.mse_loss(model(x, torch.tensor([1, 2])), target).backward()
    assert torch.count_nonzero(model.conv_out.weight.grad) > 0
    assert torch.count_nonzero(model.conv_in.weight.grad) == 0
    opt.step()
    opt.zero_grad()
    # ... after which the output is non-zero and gradient reaches the input conv.
    out = model(x, torch.tensor([1, 2]))
    assert out.abs().max() > 0
    F.mse_loss(out, target).backward()
    assert torch.count_nonzero(model.conv_in.weight.grad) > 0


def test_attention_block_matches_reference() -> None:
    block = AttentionBlock(channels=8, num_heads=2, norm_groups=4)
    x = torch.randn(2, 8, 4, 4)
    # Zero-initialised output projection: the block starts as the identity.
    torch.testing.assert_close(block(x), x)
    perturb_(block, std=0.3)
    b, c, hw, heads, d = 2, 8, 16, 2, 4
    qkv = block.qkv(block.norm(x)).reshape(b, 3 * c, hw)
    q, k, v = (qkv[:, i * c : (i + 1) * c].reshape(b, heads, d, hw) for i in range(3))
    weights = torch.softmax(torch.einsum("bhdi,bhdj->bhij", q, k) / math.sqrt(d), dim=-1)
    attended = torch.einsum("bhij,bhdj->bhdi", weights, v).reshape(b, c, 4, 4)
    expected = x + block.proj(attended)
    torch.testing.assert_close(block(x), expected, rtol=1e-4, atol=1e-5)


def test_bf16_autocast_forward_backward() -> None:
    model = perturb_(UNet(in_channels=1, image_size=16, attention_resolutions=(8,), **SMALL))
    x = torch.randn(2, 1, 16, 16)
    t = torch.tensor([10, 400])
    ref = model(x, t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, t)
    assert out.shape == (2, 1, 16, 16)
    assert torch.isfinite(out).all()
    # bf16 has ~3 significant digits; just check it computes the same function.
    err = (out.float() - ref).abs().max() / ref.abs().max()
    assert err < 0.1
    out.float().square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_channels_last_matches_contiguous() -> None:
    model = perturb_(UNet(in_channels=3, image_size=16, attention_resolutions=(8, 4), **SMALL)).eval()
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([5, 600])
    ref = model(x, t)
    model_cl = model.to(memory_format=torch.channels_last)
    out = model_cl(x.contiguous(memory_format=torch.channels_last), t)
    torch.testing.assert_close(out.contiguous(), ref, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(in_channels=0), "in_channels"),
        (dict(out_channels=0), "out_channels"),
        (dict(channel_mults=()), "channel_mults must not be empty"),
        (dict(channel_mults=(1, 0, 2)), "positive integers"),
        (dict(channel_mults=(1, 2.5)), "positive integers"),
        (dict(image_size=30), r"image_size=30 .*divisible by 4.*3 levels.*fewer channel_mults"),
        (dict(image_size=32, attention_resolutions=(7,)), r"\[7\].*\[32, 16, 8\]"),
        (dict(base_channels=12, norm_groups=8), "norm_groups=8"),
        (dict(dropout=1.0), "dropout"),
        (dict(dropout=-0.1), "dropout"),
        (dict(base_channels=24, num_heads=5, norm_groups=8, attention_resolutions=(16,)), "num_heads=5"),
        (dict(num_res_blocks=0), "num_res_blocks"),
    ],
)
def test_invalid_arguments_raise_value_error(kwargs: dict, match: str) -> None:
    args = dict(in_channels=1, image_size=32, base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1,
                attention_resolutions=(8,), num_heads=4, norm_groups=8)  # fmt: skip
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        UNet(**args)


def test_heads_checked_at_middle_attention() -> None:
    # No level attention, but the middle block (16 * 3 = 48 channels) still attends.
    with pytest.raises(ValueError, match="num_heads=5"):
        UNet(in_channels=1, image_size=16, base_channels=16, channel_mults=(1, 3), num_heads=5,
             attention_resolutions=(), norm_groups=8)  # fmt: skip


def test_invalid_forward_inputs() -> None:
    model = UNet(in_channels=1, image_size=16, **TINY)
    with pytest.raises(ValueError, match="shape"):
        model(torch.randn(2, 3, 16, 16), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="divisible"):
        model(torch.randn(2, 1, 15, 15), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="t must have shape"):
        model(torch.randn(2, 1, 16, 16), torch.tensor([1, 2, 3]))


# ---------------------------------------------------------------------------- presets


@pytest.mark.parametrize("preset", ["tiny", "narrow", "small", "base"])
def test_hydra_presets_instantiate(preset: str) -> None:
    omegaconf = pytest.importorskip("omegaconf")
    hydra_utils = pytest.importorskip("hydra.utils")
    path = Path(__file__).resolve().parents[1] / "conf" / "model" / f"{preset}.yaml"
    cfg = omegaconf.OmegaConf.merge({"data": {"image_size": 16 if preset == "tiny" else 32}},
                                    {"model": omegaconf.OmegaConf.load(path)})  # fmt: skip
    model = hydra_utils.instantiate(cfg.model.net, in_channels=1)
    assert isinstance(model, UNet)
    n_params = sum(p.numel() for p in model.parameters())
    expected = {"tiny": n_params < 100_000, "narrow": 2e5 <= n_params <= 4e5, "small": 1e6 <= n_params <= 2e6,
                "base": 6e6 <= n_params <= 10e6}  # fmt: skip
    assert expected[preset], n_params
    with torch.no_grad():
        size = cfg.data.image_size
        assert model(torch.randn(1, 1, size, size), torch.tensor([1])).shape == (1, 1, size, size)
