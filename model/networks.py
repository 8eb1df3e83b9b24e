"""The networks: an input stem shared by all, the ResNet-encoder UNet, and the ViT baseline (a registry)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from model.config import UNET_ARCH


class InputStem(nn.Module):
    """Raw contract channels to network features, inside the graph.

    Applies the per-channel affine normalisation, maps NaN to 0, and appends derived channels
    computed from the visible layers: per-species neighbourhood density among visible cells, the
    co-occurrence prior sum_j P(s|j) visible_j and its neighbourhood density, optionally the
    same-species density over a wide ``context_radius`` (reaching into large hidden regions), and
    "any species visible here" with its densities.
    """

    scale: torch.Tensor
    shift: torch.Tensor
    cooccurrence: torch.Tensor

    def __init__(self, n_species: int, n_covariates: int, blur_radius: int, cooccurrence: torch.Tensor | None = None,
                 context_radius: int = 0, extra_channels: int = 0):
        super().__init__()
        if blur_radius < 1 or context_radius < 0:
            raise ValueError(f"stem radii must be positive: blur {blur_radius}, context {context_radius}")
        self.n_species = n_species
        # the contract's channels: visible and hidden per species, covariates and validity, then the extra
        # channels (the surveyed-cells channel of a model that reads unsurveyed cells as unknown)
        self.in_channels = 2 * n_species + 2 * n_covariates + extra_channels
        self.radius = blur_radius
        self.context_radius = context_radius
        self.register_buffer("scale", torch.ones(1, self.in_channels, 1, 1))
        self.register_buffer("shift", torch.zeros(1, self.in_channels, 1, 1))
        co = cooccurrence if cooccurrence is not None else torch.zeros(n_species, n_species)
        self.register_buffer("cooccurrence", co.reshape(n_species, n_species, 1, 1).float().clone())

    @property
    def n_derived(self) -> int:
        """Derived per-species channel groups: density, prior, prior density (+ wide density)."""
        return 4 if self.context_radius > 0 else 3

    @property
    def out_channels(self) -> int:
        """Raw channels plus the derived per-species groups plus the 'any visible' channels."""
        return self.in_channels + self.n_derived * self.n_species + (3 if self.context_radius > 0 else 2)

    @staticmethod
    def _box_sum(t: torch.Tensor, radius: int) -> torch.Tensor:
        """Sum of ``t`` over the (2r+1)^2 square around each cell, zero outside (summed-area, O(1) per cell).

        Two running sums (CumSum in the exported graph) and a difference of shifted slices replace a box
        filter whose cost grows with the radius. Sums of 0/1 layers stay exact integers in float32, so a
        window with nothing in it sums to exactly 0.
        """
        k = 2 * radius + 1
        t = F.pad(t, (radius + 1, radius, radius + 1, radius))
        t = torch.cumsum(t, dim=3)
        t = t[..., k:] - t[..., :-k]
        t = torch.cumsum(t, dim=2)
        return t[..., k:, :] - t[..., :-k, :]

    @classmethod
    def _density(cls, values: torch.Tensor, known: torch.Tensor, radius: int) -> torch.Tensor:
        """Share of known neighbours within a (2r+1)^2 square where ``values`` is set.

        Equals ``box(values * known) / (box(known) + 1e-3)`` with ``box`` the zero-padded mean over the square.
        """
        area = float((2 * radius + 1) ** 2)
        return cls._box_sum(values * known, radius) / (cls._box_sum(known, radius) + 1e-3 * area)

    def _identity_affine(self) -> bool:
        """Whether the per-channel normalisation is x * 1 + 0 (the cube stores covariates normalised)."""
        return bool(torch.all(self.scale == 1) and torch.all(self.shift == 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) raw inputs to (N, out_channels, H, W) features.

        Covariate and validity channels may hold NaN (no data), which becomes 0; the presence and hidden
        channels are 0/1 by contract.
        """
        s, r = self.n_species, self.radius
        if not self._identity_affine():  # traced once: an identity normalisation adds no ops to the graph
            x = x * self.scale + self.shift
        species, cov = x[:, :2 * s], x[:, 2 * s:]
        cov = torch.where(torch.isnan(cov), torch.zeros((), dtype=cov.dtype, device=cov.device), cov)
        visible, hidden = species[:, :s], species[:, s:]
        known = 1.0 - hidden
        prior = F.conv2d(visible, self.cooccurrence)
        any_visible = visible.amax(dim=1, keepdim=True)
        any_known = known.amax(dim=1, keepdim=True)
        parts = [species, cov, self._density(visible, known, r), prior, self._density(prior, any_known, r)]
        if self.context_radius > 0:
            parts.append(self._density(visible, known, self.context_radius))
        parts += [any_visible, self._density(any_visible, any_known, r)]
        if self.context_radius > 0:
            parts.append(self._density(any_visible, any_known, self.context_radius))
        return torch.cat(parts, dim=1)


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ResidualBlock(nn.Module):
    """A ResNet basic block (two 3x3 convolutions and a shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                                  nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(cout))
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual sum then ReLU."""
        return F.relu(self.body(x) + self.shortcut(x))


class ResUNet(nn.Module):
    """A UNet whose encoder is a ResNet of basic blocks; width K and depth configurable.

    Level i has ``width * 2**i`` channels (capped at 8 * width); ``depth`` stride-2 stages, so H and W
    must be multiples of ``2**depth``.
    """

    def __init__(self, in_channels: int, n_species: int, width: int = 32, depth: int = 3, blocks: int = 1):
        super().__init__()
        chans = [min(width * 2**i, 8 * width) for i in range(depth + 1)]
        self.multiple = 2**depth
        self.stem = _conv_bn(in_channels, chans[0])
        self.encoder = nn.ModuleList()
        for i in range(depth + 1):
            stride = 1 if i == 0 else 2
            cin = chans[0] if i == 0 else chans[i - 1]
            layers = [ResidualBlock(cin, chans[i], stride)]
            layers += [ResidualBlock(chans[i], chans[i]) for _ in range(blocks - 1)]
            self.encoder.append(nn.Sequential(*layers))
        self.decoder = nn.ModuleList(
            nn.Sequential(_conv_bn(chans[i] + chans[i - 1], chans[i - 1]), _conv_bn(chans[i - 1], chans[i - 1]))
            for i in range(depth, 0, -1))
        self.head = nn.Conv2d(chans[0], n_species, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N, C, H, W) to logits (N, S, H, W)."""
        skips = []
        h = self.stem(x)
        for stage in self.encoder:
            h = stage(h)
            skips.append(h)
        h = skips.pop()
        for block in self.decoder:
            skip = skips.pop()
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = block(torch.cat([h, skip], dim=1))
        return self.head(h)


class PatchViT(nn.Module):
    """A ViT baseline: patch embedding, transformer encoder, and a linear patch decoder (pixel shuffle)."""

    def __init__(self, in_channels: int, n_species: int, patch: int = 8, embed_dim: int = 128, layers: int = 4,
                 heads: int = 4, pos_grid: int = 12):
        super().__init__()
        self.multiple = patch
        self.patch = patch
        self.embed = nn.Conv2d(in_channels, embed_dim, patch, stride=patch)
        self.pos = nn.Parameter(torch.randn(1, embed_dim, pos_grid, pos_grid) * 0.02)
        layer = nn.TransformerEncoderLayer(embed_dim, heads, 4 * embed_dim, dropout=0.0, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dim)
        self.decode = nn.Linear(embed_dim, n_species * patch * patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N, C, H, W) to logits (N, S, H, W)."""
        tokens = self.embed(x)
        n, d, gh, gw = tokens.shape
        tokens = tokens + F.interpolate(self.pos, size=(gh, gw), mode="bilinear", align_corners=False)
        seq = self.norm(self.encoder(tokens.flatten(2).transpose(1, 2)))
        out = self.decode(seq).transpose(1, 2).reshape(n, -1, gh, gw)
        return F.pixel_shuffle(out, self.patch)


#: The network registry: architecture name to constructor (in_channels, n_species, **params).
NETWORKS: dict[str, Callable[..., nn.Module]] = {UNET_ARCH: ResUNet, "vit": PatchViT}


class M3Network(nn.Module):
    """Stem plus body: raw contract channels (N, C_in, H, W) to logits (N, S, H, W).

    With ``prior_skip`` the logits also get a learned per-species term linear in each of the stem's derived
    per-species features (same-species density, co-occurrence prior, prior density, ...). The body then
    learns a residual on this shortcut from the neighbourhood features.
    """

    #: The prior skip's starting weight on each feature.
    SKIP_INIT = 3.0

    def __init__(self, stem: InputStem, body: nn.Module, prior_skip: bool = False):
        super().__init__()
        self.stem, self.body = stem, body
        self.multiple = int(cast(int, body.multiple))
        self.prior_skip = prior_skip
        if prior_skip:
            self.skip_weight = nn.Parameter(torch.full((stem.n_derived, 1, stem.n_species, 1, 1), self.SKIP_INIT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits per species."""
        features = self.stem(x)
        logits = self.body(features)
        if self.prior_skip:
            c, s = self.stem.in_channels, self.stem.n_species
            for i in range(self.stem.n_derived):
                feature = features[:, c + i * s:c + (i + 1) * s]  # sliced before the weight: the exported graph's order
                logits = logits + self.skip_weight[i] * feature
        return logits


class GatedExperts(nn.Module):
    """Two networks behind a per-cell gate on the hidden-mask channels: raw inputs to logits (N, S, H, W).

    Where some species is visible at a cell (a species layer hidden there, others recorded), the logits are
    the ``known`` expert's; where every species is hidden (a hidden region), the ``blind`` expert's. The two
    tasks differ (co-occurrence at the cell against the density of records around a hidden area), and one
    network trained on both learns the second at the cost of the first. The gate reads the raw 0/1 hidden
    channels, so it is the same in training, evaluation and the exported graph.
    """

    def __init__(self, known: M3Network, blind: M3Network):
        super().__init__()
        if known.stem.in_channels != blind.stem.in_channels:
            raise ValueError("the experts must read the same input channels")
        self.known, self.blind = known, blind
        self.stem = known.stem  # the input contract and normalisation (the experts share them)
        self.multiple = math.lcm(known.multiple, blind.multiple)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The known expert's logits where any species is visible at the cell, else the blind expert's."""
        s = self.stem.n_species
        any_known = 1.0 - x[:, s:2 * s].amin(dim=1, keepdim=True)
        return any_known * self.known(x) + (1.0 - any_known) * self.blind(x)


class ProbabilityModel(nn.Module):
    """The exported graph: raw inputs to sigmoid probabilities."""

    def __init__(self, net: M3Network | GatedExperts):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities (N, S, H, W)."""
        return torch.sigmoid(self.net(x))


def build_network(arch: str, params: dict, n_species: int, n_covariates: int, blur_radius: int,
                  cooccurrence: torch.Tensor | None = None, prior_skip: bool = False,
                  context_radius: int = 0, extra_channels: int = 0) -> M3Network:
    """Build a registered architecture behind the shared input stem (see :class:`M3Network` for the options)."""
    if arch not in NETWORKS:
        raise ValueError(f"architecture {arch!r} is unknown; known: {', '.join(sorted(NETWORKS))}")
    stem = InputStem(n_species, n_covariates, blur_radius, cooccurrence, context_radius, extra_channels)
    return M3Network(stem, NETWORKS[arch](stem.out_channels, n_species, **params), prior_skip=prior_skip)
