"""QGAC: quantization-guided JPEG artifact correction in the DCT domain.

M. Ehrlich, L. Davis, S.-N. Lim and A. Shrivastava, "Quantization Guided JPEG Artifact
Correction", ECCV 2020. https://arxiv.org/abs/2004.09320

The net reads what a JPEG file holds, not its decoded pixels: the dequantized DCT coefficients
of Y (and of Cb, Cr at their own, possibly subsampled, resolution) and the file's quantization
tables. Its convolutions that cross block boundaries are *convolutional filter manifolds*
(CFM): small nets that turn the 8x8 quantization table into the weights of an 8x8-stride
convolution, so one model serves every quality (and custom tables).

- Y network: block-wise CFM encoder -> RRDB on the block grid -> CFM decoder back to the
  coefficient plane; a *frequency-wise* branch (convolutions over the block grid with one group
  per DCT frequency, all frequencies kept apart); a second block-wise stage; a frequency-wise
  fusion of the three feature maps predicts the residual of the Y coefficients.
- Colour network (guided by Y): each chroma channel is encoded block-wise with the chroma
  table, upsampled on the block grid to luma resolution (chroma subsampling), concatenated with
  block-wise features of the *restored* Y, refined, and decoded by a CFM into a residual on the
  chroma coefficients brought to luma resolution (the paper's DCT-domain "doubling").

The output is pixels: the restored coefficients through the inverse block DCT and JFIF YCbCr
-> RGB, so the net trains with a pixel loss in :class:`m3l.models.restoration.RestorationModule`.

Parameters (``count_parameters`` below; the counts are checked by a test): at the paper's
sizes (``model=original_qgac_paper``: block features 256, filter manifolds 64 wide, 64 feature
planes between the Y stages, 4 channels per frequency, one RRDB per block stage, colour
features 32) 259.4 M weights, Y network 256.8 M and colour network 2.6 M. Nearly all sit in the
filter manifolds that generate 256 x 64 kernels of 8x8 (67.1 M each) and the 256-channel RRDBs
(26.5 M each). The paper does not print a count; counting the layers of the original M3L
code (``QGAC`` with ``BlockNet``, ``FrequencyNet``, ``FrequencyFuser``, ``ColorRestore``) by
hand gives the same 259.4 M to within 0.01 M (its chroma upsampling is a 4x4 transposed
convolution where m3l uses nearest + 3x3, to serve 4:2:2 and 4:4:4 as well). m3l's CPU default (``model=qgac``: block features 32, manifolds 8 wide, 16
planes, colour features 16) has 2.81 M (gray, Y network alone: 2.25 M). The QGAC of the
follow-up paper (Ehrlich et al., "Analyzing and Mitigating JPEG Compression Defects in Deep
Learning", ICCVW 2021; ``model=qgac_crab``: block-only Y network with three RRDBs, manifolds
16 wide, Cb and Cr restored jointly) has 82.5 M.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from m3l.data.dct import BLOCK, block_dct, block_idct, upsample_chroma, ycbcr_to_rgb
from m3l.errors import ConfigError, ShapeError

LEVEL = 128 / 255  # JPEG's level shift on the [0, 1] scale


class FilterManifold(nn.Module):
    """A convolution whose kernels (and biases) are generated per sample from the 8x8
    quantization table: ``q -> conv8x8 -> PReLU -> conv1x1 -> PReLU -> kernels``.

    Block-wise by default (kernel 8, stride 8: one output per block); ``transposed`` maps block
    features back to the coefficient plane.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = BLOCK,
        stride: int = BLOCK,
        transposed: bool = False,
        manifold_channels: int = 64,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.transposed = kernel_size, stride, transposed
        self.manifold = nn.Sequential(
            nn.Conv2d(1, manifold_channels, BLOCK),
            nn.PReLU(),
            nn.Conv2d(manifold_channels, manifold_channels, 1),
            nn.PReLU(),
        )
        self.to_weight = nn.ConvTranspose2d(manifold_channels, in_channels * out_channels, kernel_size)
        self.to_bias = nn.Conv2d(manifold_channels, out_channels, 1)

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        m = self.manifold(q)  # (B, M, 1, 1)
        k = self.kernel_size
        bias = self.to_bias(m).reshape(b * self.out_channels)
        grouped = x.reshape(1, b * self.in_channels, *x.shape[-2:])
        if self.transposed:
            weight = self.to_weight(m).reshape(b * self.in_channels, self.out_channels, k, k)
            y = F.conv_transpose2d(grouped, weight, bias, stride=self.stride, groups=b)
        else:
            weight = self.to_weight(m).reshape(b * self.out_channels, self.in_channels, k, k)
            y = F.conv2d(grouped, weight, bias, stride=self.stride, groups=b)
        return y.reshape(b, self.out_channels, *y.shape[-2:])


class _Dense(nn.Module):
    """Five densely connected 3x3 convolutions (ESRGAN's dense block), residual scaled by 0.2."""

    def __init__(self, channels: int, groups: int = 1) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(channels * (i + 1), channels, 3, padding=1, groups=groups) for i in range(5)
        )
        self.acts = nn.ModuleList(nn.PReLU() for _ in range(5))
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv, act in zip(self.convs, self.acts):
            feats.append(act(conv(_cat_grouped(feats, self.groups))))
        return x + 0.2 * feats[-1]


def _cat_grouped(feats: list[torch.Tensor], groups: int) -> torch.Tensor:
    """Concatenate channels so that a grouped convolution sees each group's own channels."""
    if groups == 1:
        return torch.cat(feats, 1)
    b, _, h, w = feats[0].shape
    return torch.cat([f.reshape(b, groups, -1, h, w) for f in feats], 2).reshape(b, -1, h, w)


class RRDB(nn.Module):
    """Residual-in-residual dense block (Wang et al., ESRGAN, ECCVW 2018): three dense blocks,
    residual scaled by 0.2. ``groups=64`` keeps the 64 DCT frequencies apart."""

    def __init__(self, channels: int, groups: int = 1) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(_Dense(channels, groups) for _ in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.blocks(x)


def to_frequencies(x: torch.Tensor) -> torch.Tensor:
    """Coefficient-plane features ``(B, C, H, W)`` -> ``(B, 64 C, H/8, W/8)``, frequency-major
    (channels ``f*C .. f*C + C - 1`` are frequency ``f``'s), for per-frequency convolutions."""
    b, c, h, w = x.shape
    x = F.pixel_unshuffle(x, BLOCK).reshape(b, c, BLOCK * BLOCK, h // BLOCK, w // BLOCK)
    return x.transpose(1, 2).reshape(b, BLOCK * BLOCK * c, h // BLOCK, w // BLOCK)


def from_frequencies(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`to_frequencies`."""
    b, fc, hb, wb = x.shape
    c = fc // (BLOCK * BLOCK)
    x = x.reshape(b, BLOCK * BLOCK, c, hb, wb).transpose(1, 2).reshape(b, c * BLOCK * BLOCK, hb, wb)
    return F.pixel_shuffle(x, BLOCK)


class FrequencyConv(nn.Module):
    """A 3x3 convolution over the block grid, one group per DCT frequency."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        n = BLOCK * BLOCK
        self.conv = nn.Conv2d(in_channels * n, out_channels * n, 3, padding=1, groups=n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class BlockStage(nn.Module):
    """Block-wise processing: CFM encoder (one feature vector per block), RRDBs on the block
    grid, CFM decoder back to a coefficient plane of ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, features: int, manifold: int, rrdbs: int = 1) -> None:
        super().__init__()
        self.encode = FilterManifold(in_channels, features, manifold_channels=manifold)
        self.act_in = nn.PReLU()
        self.body = nn.Sequential(*(RRDB(features) for _ in range(rrdbs)))
        self.decode = FilterManifold(features, out_channels, transposed=True, manifold_channels=manifold)
        self.act_out = nn.PReLU()

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.act_out(self.decode(q, self.body(self.act_in(self.encode(q, x)))))


class FrequencyStage(nn.Module):
    """Frequency-wise processing of coefficient-plane features: per-frequency convolutions
    (``features`` channels per frequency) with an RRDB, back to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, features: int = 4) -> None:
        super().__init__()
        n = BLOCK * BLOCK
        self.body = nn.Sequential(
            FrequencyConv(in_channels, features),
            nn.PReLU(),
            RRDB(features * n, groups=n),
            FrequencyConv(features, out_channels),
            nn.PReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return from_frequencies(self.body(to_frequencies(x)))


class FrequencyFusion(nn.Module):
    """Per-frequency fusion of feature planes into one residual coefficient plane."""

    def __init__(self, in_channels: int, features: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(
            FrequencyConv(in_channels, features),
            nn.PReLU(),
            FrequencyConv(features, features),
            nn.PReLU(),
            FrequencyConv(features, 1),
        )

    def forward(self, *planes: torch.Tensor) -> torch.Tensor:
        return from_frequencies(self.body(to_frequencies(torch.cat(planes, 1))))


class ColorNet(nn.Module):
    """Chroma restoration guided by the restored Y (see the module docstring)."""

    def __init__(self, features: int, manifold: int, joint: bool = False) -> None:
        super().__init__()
        self.channels = 2 if joint else 1
        self.encode_c = FilterManifold(self.channels, features, manifold_channels=manifold)
        self.low = nn.Sequential(nn.PReLU(), RRDB(features))
        self.upsample = nn.Sequential(nn.Conv2d(features, features, 3, padding=1), nn.PReLU())
        self.encode_y = FilterManifold(1, features, manifold_channels=manifold)
        self.act_y = nn.PReLU()
        self.high = nn.Sequential(nn.PReLU(), RRDB(2 * features))
        self.decode = FilterManifold(2 * features, self.channels, transposed=True, manifold_channels=manifold)

    def forward(
        self, q_y: torch.Tensor, q_c: torch.Tensor, y: torch.Tensor, c: torch.Tensor, factor: tuple[int, int]
    ) -> torch.Tensor:
        """Residual of the chroma coefficients at luma resolution (same grid as ``y``)."""
        hb, wb = y.shape[-2] // BLOCK, y.shape[-1] // BLOCK
        low = self.low(self.encode_c(q_c, c))
        up = self.upsample(upsample_chroma(low, factor)[..., :hb, :wb])
        guide = self.act_y(self.encode_y(q_y, y))
        return self.decode(q_c, self.high(torch.cat([up, guide], 1)))


class QGAC(nn.Module):
    """QGAC (Ehrlich et al., ECCV 2020) with configurable widths; see the module docstring.

    Args:
        in_channels: 3 restores Cb and Cr as well (RGB output), 1 restores Y only (gray).
        block_features: channels per block of the block-wise stages (paper 256).
        manifold_channels: width of the filter manifolds (paper 64).
        frequency_features: channels per frequency of the frequency-wise stage (paper 4).
        fusion_features: channels per frequency of the fusion (paper 4).
        rrdbs: RRDBs per block-wise stage (paper 1).
        plane_channels: feature channels of the coefficient planes passed between the
            stages of the Y network (paper 64).
        frequency_net: the paper's frequency-wise stage, second block stage and fusion; False
            gives the follow-up paper's block-only Y network (QGAC "crab").
        color_features: block features of the colour network (paper 32).
        joint_color: restore Cb and Cr together (follow-up paper) instead of one shared net
            applied to each (paper).
        init_scale: factor on the He initialization of every convolution (the residual
            heads start at zero whatever it is).

    ``forward(x, dct_y, qt, dct_c=None, chroma_factor=None)``: ``x`` is only the decoded image
    whose size the output takes; ``dct_y`` ``(B, 1, H8, W8)`` and ``dct_c`` ``(B, 2, Hc, Wc)``
    are dequantized coefficients on the [0, 1] scale (``coefficient * table / 255``), ``qt``
    ``(B, 2, 8, 8)`` the luma and chroma tables (1..255), ``chroma_factor`` ``(B, 2)``.
    """

    pad_multiple = BLOCK

    def __init__(
        self,
        in_channels: int = 3,
        block_features: int = 256,
        manifold_channels: int = 64,
        frequency_features: int = 4,
        fusion_features: int = 4,
        rrdbs: int = 1,
        frequency_net: bool = True,
        plane_channels: int = 64,
        color_features: int = 32,
        joint_color: bool = False,
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ConfigError(
                f"QGAC: in_channels must be 1 (gray: Y) or 3 (colour: YCbCr), got {in_channels}; set net.in_channels to 1 or 3"
            )
        color = in_channels == 3
        self.in_channels = in_channels
        self.conditions = ("dct_y", "qt", "dct_c", "chroma_factor") if color else ("dct_y", "qt")
        self.frequency_net = frequency_net
        planes = plane_channels  # coefficient-plane feature channels between stages
        if frequency_net:
            self.blocks_in = BlockStage(1, planes, block_features, manifold_channels, rrdbs)
            self.frequencies = FrequencyStage(planes, planes, frequency_features)
            self.blocks_out = BlockStage(planes, planes, block_features, manifold_channels, rrdbs)
            self.fusion = FrequencyFusion(3 * planes, fusion_features)
        else:
            self.blocks_in = BlockStage(1, 1, block_features, manifold_channels, rrdbs)
        self.color_net = ColorNet(color_features, manifold_channels, joint_color) if color else None
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight)
                module.weight.data.mul_(init_scale)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        # the layers that produce the residuals start at zero: the net starts as the decoder,
        # with O(1) activations inside (a small init everywhere makes the gradients vanish
        # through the stacked filter manifolds: 1e-12 at the first layer with a 0.1 scale)
        heads = (
            [self.fusion.body[-1].conv]
            if frequency_net
            else [self.blocks_in.decode.to_weight, self.blocks_in.decode.to_bias]
        )
        if self.color_net is not None:
            heads += [self.color_net.decode.to_weight, self.color_net.decode.to_bias]
        for module in heads:
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)

    def restore_y(self, q_y: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Restored Y coefficients (the input plus the predicted residual)."""
        if not self.frequency_net:
            return y + self.blocks_in(q_y, y)
        e = self.blocks_in(q_y, y)
        f = self.frequencies(e)
        d = self.blocks_out(q_y, f)
        return y + self.fusion(d, f, e)

    def restore_coefficients(
        self, dct_y: torch.Tensor, qt: torch.Tensor, dct_c: torch.Tensor | None = None, factor: tuple[int, int] = (2, 2)
    ) -> torch.Tensor:
        """Restored coefficient planes ``(B, 1 or 3, H8, W8)`` (chroma at luma resolution)."""
        q = qt.to(dct_y.dtype) / 255
        q_y, q_c = q[:, :1], q[:, 1:2]
        y = self.restore_y(q_y, dct_y)
        if self.color_net is None:
            return y
        if dct_c is None:
            raise ConfigError(
                "QGAC(in_channels=3) needs the chroma coefficients dct_c (B, 2, Hc, Wc): feed it batches of "
                "m3l.data.dct_domain.JPEGCoefficientDataModule with channels=3, or build it with in_channels=1"
            )
        hy, wy = y.shape[-2:]
        doubled = block_dct(upsample_chroma(block_idct(dct_c), factor)[..., :hy, :wy])
        if self.color_net.channels == 2:
            residual = self.color_net(q_y, q_c, y, dct_c, factor)
        else:
            residual = torch.cat([self.color_net(q_y, q_c, y, dct_c[:, i : i + 1], factor) for i in range(2)], 1)
        return torch.cat([y, doubled + residual], 1)

    def forward(
        self,
        x: torch.Tensor,
        dct_y: torch.Tensor,
        qt: torch.Tensor,
        dct_c: torch.Tensor | None = None,
        chroma_factor: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if dct_y.dim() != 4 or dct_y.shape[1] != 1 or dct_y.shape[-1] % BLOCK or dct_y.shape[-2] % BLOCK:
            raise ShapeError(
                f"QGAC expects dct_y of shape (B, 1, H, W) with H, W multiples of 8, got {tuple(dct_y.shape)}; "
                "read inputs with m3l.data.dct_domain (jpeg_net_inputs)"
            )
        if qt.dim() != 4 or qt.shape[-2:] != (BLOCK, BLOCK):
            raise ShapeError(
                f"QGAC expects qt of shape (B, 2, 8, 8) (luma and chroma tables), got {tuple(qt.shape)}; "
                "read inputs with m3l.data.dct_domain (jpeg_net_inputs)"
            )
        factor = (2, 2) if chroma_factor is None else tuple(int(v) for v in chroma_factor.reshape(-1, 2)[0].tolist())
        coefficients = self.restore_coefficients(dct_y, qt, dct_c, factor)  # type: ignore[arg-type]
        pixels = block_idct(coefficients) + LEVEL
        if self.color_net is not None:
            pixels = ycbcr_to_rgb(pixels, center=LEVEL)
        h, w = x.shape[-2:]
        ph, pw = max(0, h - pixels.shape[-2]), max(0, w - pixels.shape[-1])
        if ph or pw:
            pixels = F.pad(pixels, (0, pw, 0, ph), mode="replicate")
        return pixels[..., :h, :w]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
