"""A small, CPU-friendly U-Net noise predictor for denoising diffusion.

Layout (DDPM-style): a 3x3 input conv, then per resolution level ``num_res_blocks``
residual blocks (optionally each followed by self-attention) and a stride-2 conv
down-sampler; a ResBlock-Attention-ResBlock middle at the lowest resolution; a
mirrored decoder whose blocks concatenate the matching encoder activation
(``num_res_blocks + 1`` blocks per level, one per stored skip) followed by nearest x2
up-sampling + 3x3 conv; finally GroupNorm-SiLU-conv3x3 to ``out_channels``.

Every block receives the (SiLU-activated) time embedding; residual blocks inject
it through a FiLM-style scale and shift after their second GroupNorm.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from diffusion_lit.models.embeddings import TimeEmbedding
from diffusion_lit.utils.errors import UserError

__all__ = ["UNet", "ResBlock", "AttentionBlock", "Downsample", "Upsample"]


def _zero_(module: nn.Module) -> nn.Module:
    """Set all parameters of ``module`` to zero in place and return it."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def _is_channels_last(x: Tensor) -> bool:
    """True when ``x`` (B, C, H, W) is laid out NHWC and not also plain contiguous."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


class ResBlock(nn.Module):
    """Residual block with time conditioning.

    ``GN -> SiLU -> conv3x3 -> GN -> FiLM(t) -> SiLU -> Dropout -> conv3x3`` plus a
    (1x1 conv when channels change) skip.

    The timestep enters as a per-sample, per-channel *scale and shift* applied to the
    normalised activations (``h * (1 + scale) + shift``) rather than as an additive
    bias only: GroupNorm would otherwise partly wash out an added bias at the next
    normalisation, whereas a multiplicative gain lets the noise level re-weight
    channels (improved-DDPM found this helps sample quality). It costs one Linear
    of width ``2 * out_channels`` and a single fused ``addcmul``.

    Args:
        in_channels: Channels of the input.
        out_channels: Channels of the output.
        time_dim: Size of the time embedding passed to :meth:`forward`.
        dropout: Dropout probability before the second conv.
        norm_groups: Number of GroupNorm groups (must divide both channel counts).

    Shapes:
        forward(x, temb): ``x`` (B, in_channels, H, W), ``temb`` (B, time_dim) ->
        (B, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, time_dim: int, dropout: float, norm_groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(norm_groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_proj = nn.Linear(time_dim, 2 * out_channels)
        self.norm2 = nn.GroupNorm(norm_groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        # Zero init: the block starts as the identity (skip path only), which keeps
        # activations well scaled through a deep stack of residual blocks at init.
        self.conv2 = _zero_(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip: nn.Module = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: Features, shape (B, in_channels, H, W).
            temb: SiLU-activated time embedding, shape (B, time_dim).

        Returns:
            Tensor of shape (B, out_channels, H, W).
        """
        h = self.conv1(F.silu(self.norm1(x)))
        # (B, 2C) -> two (B, C, 1, 1) tensors that broadcast over H, W.
        scale, shift = self.time_proj(temb)[:, :, None, None].chunk(2, dim=1)
        h = torch.addcmul(shift, self.norm2(h), 1.0 + scale)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the spatial positions of a feature map, with residual.

    ``x + proj(MHSA(qkv(GN(x))))`` using 1x1 convs for the q/k/v and output projections
    and :func:`torch.nn.functional.scaled_dot_product_attention` for the attention.

    Args:
        channels: Channels of the feature map (must be divisible by ``num_heads``).
        num_heads: Number of attention heads.
        norm_groups: Number of GroupNorm groups.

    Shapes:
        forward(x): (B, channels, H, W) -> (B, channels, H, W).
    """

    def __init__(self, channels: int, num_heads: int, norm_groups: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(norm_groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        # Zero init: the block starts as the identity, attention is learned in gradually.
        self.proj = _zero_(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        """Apply self-attention.

        Args:
            x: Features, shape (B, C, H, W).
            temb: Unused; accepted so all blocks share one call signature.

        Returns:
            Tensor of shape (B, C, H, W).
        """
        b, c, height, width = x.shape
        length = height * width
        head_dim = c // self.num_heads
        qkv = self.qkv(self.norm(x))  # (B, 3C, H, W)
        # Splitting the channel dim and merging H, W is a view for both NCHW and
        # NHWC layouts, so no copy here. (B, 3, heads, d, L) -> (B, 3, heads, L, d).
        qkv = qkv.reshape(b, 3, self.num_heads, head_dim, length).transpose(-1, -2)
        q, k, v = qkv.unbind(1)  # each (B, heads, L, d)
        if x.device.type == "cpu":
            # PyTorch's fused CPU flash-attention kernel has a slow backward for these
            # shapes (measured on a 2-core AVX-512 VM, fwd+bwd, B=64, 4 heads: L=64 bf16
            # 20 ms vs 5 ms for the math path; L=256 fp32 183 ms vs 81 ms), and it is
            # picked whenever the head dim is contiguous (e.g. channels_last input). The
            # math path loses at most a few ms per step (fp32, L=64: 9 vs 6 ms), so force
            # it on CPU only; accelerators keep their fused kernels.
            with sdpa_kernel(SDPBackend.MATH):
                out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, L, d)
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        # Rebuild (B, C, H, W) in the same memory layout as the input so the following
        # conv and residual add do not silently switch formats (one copy either way).
        if _is_channels_last(x):
            out = out.permute(0, 2, 1, 3).reshape(b, height, width, c).permute(0, 3, 1, 2)
        else:
            out = out.transpose(-1, -2).reshape(b, c, height, width)
        return x + self.proj(out)


class ResAttnBlock(nn.Module):
    """A :class:`ResBlock` optionally followed by an :class:`AttentionBlock`.

    Shapes:
        forward(x, temb): (B, in_channels, H, W), (B, time_dim) -> (B, out_channels, H, W).
    """

    def __init__(self, res: ResBlock, attn: AttentionBlock | None) -> None:
        super().__init__()
        self.res = res
        self.attn = attn

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        """Apply the residual block, then attention if present."""
        h = self.res(x, temb)
        if self.attn is not None:
            h = self.attn(h)
        return h


class Downsample(nn.Module):
    """Halve the spatial size with a stride-2 3x3 conv (learned, unlike pooling).

    Shapes:
        forward(x): (B, C, H, W) -> (B, C, H/2, W/2).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        """Downsample ``x``; ``temb`` is ignored."""
        return self.conv(x)


class Upsample(nn.Module):
    """Double the spatial size: nearest-neighbour x2 then a 3x3 conv.

    Nearest + conv avoids the checkerboard artefacts of transposed convolutions.

    Shapes:
        forward(x): (B, C, H, W) -> (B, C, 2H, 2W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        """Upsample ``x``; ``temb`` is ignored."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """Time-conditioned U-Net that maps a noisy image and its timestep to a same-sized output.

    Args:
        in_channels: Image channels (1 for grey, 3 for RGB).
        out_channels: Output channels; defaults to ``in_channels`` (noise prediction).
        image_size: Height/width of the training images. Must be divisible by
            ``2 ** (len(channel_mults) - 1)``; it also fixes which feature resolution
            each level has (``image_size / 2**level``) for ``attention_resolutions``. None in a
            config (``data.image_size=null``: the data's own size) is filled in by
            :func:`~diffusion_lit.lit.build.build_module` from the data.
        base_channels: Channels of the first level.
        channel_mults: Channel multiplier per resolution level; its length is the number
            of levels (``len - 1`` downsamplings).
        num_res_blocks: Residual blocks per level in the encoder (decoder uses one more).
        attention_resolutions: Feature-map sizes (in pixels) whose encoder/decoder blocks
            are followed by self-attention, e.g. ``(8,)``. The middle block always has
            attention, at the lowest resolution.
        num_heads: Attention heads; must divide the channels of every attention layer.
        dropout: Dropout probability inside residual blocks, in ``[0, 1)``.
        time_embed_dim: Size of the time embedding; defaults to ``4 * base_channels``.
        norm_groups: GroupNorm groups; must divide ``base_channels * m`` for every ``m``.
        num_classes: K > 0 adds a learned class embedding with K + 1 entries, the last one
            (index K, :attr:`null_label`) meaning "no class": it is added to the time
            embedding, so every block sees it. 0 (default) builds an unconditional net.
        class_embed_init: ``"zeros"`` starts the class embedding at zero (a new conditional
            net is exactly the unconditional one); ``"normal"`` draws it from N(0, 1), as
            ``nn.Embedding`` does (and guided-diffusion's ``label_emb``): the classes are
            distinguishable from the first step instead of growing out of zero at Adam's
            per-step pace (about ``lr`` per step per entry).

    Shapes:
        forward(x, t, labels=None): ``x`` (B, in_channels, H, W), ``t`` (B,) int or float
        timesteps (a scalar is broadcast to the batch), ``labels`` (B,) class indices in
        [0, K] (None = all null) -> (B, out_channels, H, W).

    Raises:
        ValueError: For any invalid argument (the message names the value and what is allowed).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int | None = None,
        image_size: int | None = 32,
        base_channels: int = 64,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (8,),
        num_heads: int = 4,
        dropout: float = 0.0,
        time_embed_dim: int | None = None,
        norm_groups: int = 8,
        num_classes: int = 0,
        class_embed_init: Literal["zeros", "normal"] = "zeros",
    ) -> None:
        super().__init__()
        if image_size is None:
            raise UserError("the U-Net needs image_size: set data.image_size (or build the module with build_module)")
        if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 0:
            raise UserError(f"model.num_classes must be an integer >= 0 (0 = unconditional), got {num_classes!r}")
        # Hydra passes ListConfig; normalise to plain tuples of ints.
        mults = tuple(channel_mults)
        if any(isinstance(m, bool) or not isinstance(m, numbers.Integral) for m in mults):
            raise UserError(f"channel_mults must be positive integers, got {list(mults)}")
        mults = tuple(int(m) for m in mults)
        attn_res = tuple(attention_resolutions)
        out_channels = in_channels if out_channels is None else out_channels
        time_embed_dim = 4 * base_channels if time_embed_dim is None else time_embed_dim
        self._validate(
            in_channels, out_channels, image_size, base_channels, mults, num_res_blocks,
            attn_res, num_heads, dropout, time_embed_dim, norm_groups,
        )  # fmt: skip

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.image_size = image_size
        self.num_levels = len(mults)
        # Spatial sizes must be divisible by this so every skip matches its decoder input.
        self.size_multiple = 2 ** (self.num_levels - 1)

        # At least 16 frequencies even for tiny nets so nearby timesteps stay distinguishable;
        # the extra cost is a slightly wider first Linear.
        self.time_embed = TimeEmbedding(time_embed_dim, sinusoidal_dim=max(base_channels, 32))
        # Class conditioning as in classifier-free guidance (Ho & Salimans 2022): one extra
        # "null" row that training uses for dropped labels and guidance for the unconditional
        # branch.
        if class_embed_init not in ("zeros", "normal"):
            raise UserError(f"class_embed_init must be 'zeros' or 'normal', got {class_embed_init!r}")
        self.num_classes = int(num_classes)
        self.class_embed = nn.Embedding(self.num_classes + 1, time_embed_dim) if self.num_classes else None
        if self.class_embed is not None and class_embed_init == "zeros":
            nn.init.zeros_(self.class_embed.weight)  # nn.Embedding's own init is N(0, 1)

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, cout, time_embed_dim, dropout, norm_groups)

        def attn(ch: int, resolution: int) -> AttentionBlock | None:
            return AttentionBlock(ch, num_heads, norm_groups) if resolution in attn_res else None

        ch = base_channels * mults[0]
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)

        # Encoder. Every module output is kept as a skip; record their channel counts.
        skip_channels = [ch]
        self.down = nn.ModuleList()
        for level, mult in enumerate(mults):
            resolution = image_size // 2**level
            cout = base_channels * mult
            for _ in range(num_res_blocks):
                self.down.append(ResAttnBlock(res(ch, cout), attn(cout, resolution)))
                ch = cout
                skip_channels.append(ch)
            if level != self.num_levels - 1:
                self.down.append(Downsample(ch))
                skip_channels.append(ch)

        self.mid = nn.ModuleList([res(ch, ch), AttentionBlock(ch, num_heads, norm_groups), res(ch, ch)])

        # Decoder: num_res_blocks + 1 blocks per level, each concatenating one skip.
        self.up = nn.ModuleList()
        for level in reversed(range(self.num_levels)):
            resolution = image_size // 2**level
            cout = base_channels * mults[level]
            for _ in range(num_res_blocks + 1):
                cin = ch + skip_channels.pop()
                self.up.append(ResAttnBlock(res(cin, cout), attn(cout, resolution)))
                ch = cout
            if level != 0:
                self.up.append(Upsample(ch))
        assert not skip_channels, "internal error: unmatched skip connections"

        self.norm_out = nn.GroupNorm(norm_groups, ch)
        # Zero init of the last conv: the untrained net predicts ~0 everywhere, so the
        # initial loss is just the target variance (~1 for unit-variance noise) instead
        # of a large random error, which makes the first optimiser steps stable.
        self.conv_out = _zero_(nn.Conv2d(ch, out_channels, 3, padding=1))

    @staticmethod
    def _validate(
        in_channels: int,
        out_channels: int,
        image_size: int,
        base_channels: int,
        mults: tuple[int, ...],
        num_res_blocks: int,
        attn_res: tuple[int, ...],
        num_heads: int,
        dropout: float,
        time_embed_dim: int,
        norm_groups: int,
    ) -> None:
        """Check constructor arguments; raise ValueError (``UserError``) naming the problem."""
        if in_channels < 1:
            raise UserError(f"in_channels must be >= 1 (1 for grey, 3 for RGB), got {in_channels}")
        if out_channels < 1:
            raise UserError(f"out_channels must be >= 1 (or None for in_channels), got {out_channels}")
        if base_channels < 1:
            raise UserError(f"base_channels must be >= 1, got {base_channels}")
        if len(mults) == 0:
            raise UserError("channel_mults must not be empty; use e.g. [1, 2, 2] (one entry per resolution level)")
        if any(m < 1 for m in mults):
            raise UserError(f"channel_mults must be positive integers, got {list(mults)}")
        if num_res_blocks < 1:
            raise UserError(f"num_res_blocks must be >= 1, got {num_res_blocks}")
        levels = len(mults)
        multiple = 2 ** (levels - 1)
        if image_size < 1 or image_size % multiple != 0:
            raise UserError(
                f"image_size={image_size} is not divisible by {multiple}: channel_mults has "
                f"{levels} levels ({levels - 1} downsamplings); use image_size divisible by "
                f"{multiple} or fewer channel_mults"
            )
        resolutions = [image_size // 2**level for level in range(levels)]
        bad = [r for r in attn_res if r not in resolutions]
        if bad:
            raise UserError(
                f"attention_resolutions {bad} are not feature-map sizes of this net; with "
                f"image_size={image_size} and {levels} levels the sizes are {resolutions} "
                f"(the lowest one, {resolutions[-1]}, always has attention in the middle block)"
            )
        if norm_groups < 1:
            raise UserError(f"norm_groups must be >= 1, got {norm_groups}")
        for m in mults:
            if (base_channels * m) % norm_groups != 0:
                raise UserError(
                    f"channels {base_channels * m} (base_channels={base_channels} x mult {m}) are not "
                    f"divisible by norm_groups={norm_groups}; pick base_channels a multiple of "
                    f"{norm_groups} or a norm_groups that divides it"
                )
        if not 0.0 <= dropout < 1.0:
            raise UserError(f"dropout must be in [0, 1), got {dropout}")
        if num_heads < 1:
            raise UserError(f"num_heads must be >= 1, got {num_heads}")
        # Attention sits at the listed resolutions and always in the middle (last level).
        attn_channels = sorted(
            {base_channels * mults[lvl] for lvl, r in enumerate(resolutions) if r in attn_res}
            | {base_channels * mults[-1]}
        )
        for ch in attn_channels:
            if ch % num_heads != 0:
                raise UserError(
                    f"num_heads={num_heads} does not divide {ch} channels at an attention layer "
                    f"(attention channels: {attn_channels}); pick num_heads dividing all of them"
                )
        if time_embed_dim < 1:
            raise UserError(f"time_embed_dim must be >= 1 (or None for 4*base_channels), got {time_embed_dim}")

    @property
    def null_label(self) -> int:
        """The class index meaning "unconditional" (= num_classes)."""
        return self.num_classes

    def forward(self, x: Tensor, t: Tensor | float | int, labels: Tensor | None = None) -> Tensor:
        """Predict the output (usually the noise) for noisy images ``x`` at timesteps ``t``.

        Args:
            x: Noisy images, shape (B, in_channels, H, W) with H and W divisible by
                ``2 ** (len(channel_mults) - 1)``. Either memory format works.
            t: Timesteps, shape (B,), integer or float; a Python number or 0-d tensor is
                used for the whole batch.
            labels: Class indices (B,) in [0, num_classes], num_classes meaning "no class";
                None for the whole batch unconditional. Must be None for an unconditional net.

        Returns:
            Tensor of shape (B, out_channels, H, W) (bf16 under bf16 autocast).
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise UserError(f"expected input of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        if height % self.size_multiple or width % self.size_multiple:
            raise UserError(
                f"input size {height}x{width} is not divisible by {self.size_multiple} "
                f"({self.num_levels} levels); resize/pad the images or use fewer channel_mults"
            )
        batch = x.shape[0]
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise UserError(f"t must have shape ({batch},) to match the batch, got {tuple(t.shape)}")

        temb = self.time_embed(t)  # (B, time_embed_dim)
        if self.class_embed is not None:
            if labels is None:
                labels = torch.full((batch,), self.null_label, device=x.device, dtype=torch.long)
            temb = temb + self.class_embed(labels)
        elif labels is not None:
            raise UserError("labels were given to an unconditional net: build it with model.num_classes=K")
        # SiLU once here instead of in every block's time projection.
        temb = F.silu(temb)

        h = self.conv_in(x)
        skips = [h]
        for block in self.down:
            h = block(h, temb)
            skips.append(h)

        res1, mid_attn, res2 = self.mid
        h = res2(mid_attn(res1(h, temb)), temb)

        for block in self.up:
            if isinstance(block, Upsample):
                h = block(h)
            else:
                h = block(torch.cat([h, skips.pop()], dim=1), temb)

        return self.conv_out(F.silu(self.norm_out(h)))
