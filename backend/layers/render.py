"""Tile rendering: one-band layers with a colormap as paletted PNGs, everything else through TiTiler.

TiTiler's ``render_image`` turns a colormapped band into RGBA and has GDAL deflate 4 bytes per pixel;
a layer tile is one band of 0-255 colour indices, so a paletted PNG (PLTE + tRNS chunks) holds the same
picture in 1 byte per pixel and encodes several times faster. Masked cells take a palette index that
the tile does not otherwise use, made fully transparent; a tile that uses all 256 indices and has
masked cells (or any case this does not cover: other formats, several bands, colour formulas) is
rendered by TiTiler as before. Decoded to RGBA, both give the same pixels (tested).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image
from rio_tiler.models import ImageData
from rio_tiler.types import ColorMapType, IntervalTuple
from titiler.core.resources.enums import ImageType
from titiler.core.utils import render_image

#: zlib level of the paletted PNGs (GDAL's PNG driver uses 6 too).
PNG_COMPRESS_LEVEL = 6


def _palette(colormap: ColorMapType) -> np.ndarray | None:
    """The colormap as a uint8 [256, 4] RGBA table, or None if it is not a plain 0-255 lookup."""
    if not isinstance(colormap, dict) or len(colormap) != 256 or set(colormap) != set(range(256)):
        return None
    table = np.zeros((256, 4), dtype=np.uint8)
    for k, rgba in colormap.items():
        if len(rgba) != 4:
            return None
        table[int(k)] = rgba
    return table


def render_layer_image(
    image: ImageData,
    colormap: ColorMapType | None = None,
    output_format: ImageType | None = None,
    add_mask: bool = True,
    rescale: Sequence[IntervalTuple] | None = None,
    color_formula: str | None = None,
    **kwargs: Any,
) -> tuple[bytes, str]:
    """``render_func`` of the tile factory: a paletted PNG where possible, TiTiler's rendering otherwise."""
    def titiler(**rendering: Any) -> tuple[bytes, str]:
        return render_image(image, colormap=colormap, output_format=output_format, add_mask=add_mask,
                            **rendering, **kwargs)

    table = _palette(colormap) if colormap else None
    if (table is None or output_format != ImageType.png or image.count != 1 or color_formula or not add_mask
            or kwargs):
        return titiler(rescale=rescale, color_formula=color_formula)
    if rescale:
        image.rescale(rescale)  # from here on TiTiler is called without rescale: already done
    data = image.data[0]
    if data.dtype != np.uint8:
        return titiler()
    masked = image.mask == 0
    index = data
    alpha = table[:, 3].copy()
    if masked.any():
        unused = np.flatnonzero(np.bincount(data[~masked], minlength=256) == 0)
        if unused.size == 0:
            return titiler()
        index = data.copy()
        index[masked] = unused[0]
        alpha[unused[0]] = 0
    # colormap entries with alpha 0 are transparent in TiTiler's rendering whatever the mask says
    picture = Image.frombytes("P", (index.shape[1], index.shape[0]), np.ascontiguousarray(index).tobytes())
    picture.putpalette(table[:, :3].tobytes(), rawmode="RGB")
    buffer = io.BytesIO()
    if (alpha == 255).all():
        picture.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    else:
        last = int(np.flatnonzero(alpha != 255).max()) + 1  # tRNS may stop at the last non-opaque index
        picture.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL, transparency=alpha[:last].tobytes())
    return buffer.getvalue(), ImageType.png.mediatype
