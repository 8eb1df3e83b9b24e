"""Paletted PNG tiles: the same pixels as TiTiler's RGBA rendering, smaller, with TiTiler as the fallback."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from rio_tiler.colormap import cmap
from rio_tiler.models import ImageData
from titiler.core.resources.enums import ImageType
from titiler.core.utils import render_image

from backend.layers.render import render_layer_image


def layer_image(seed: int = 0, masked_fraction: float = 0.3, full_range: bool = False) -> ImageData:
    rng = np.random.default_rng(seed)
    values = rng.random((1, 256, 256)).astype(np.float32)
    if full_range:
        values[0].flat[:256] = (np.arange(256) + 0.25) / 255  # every colour index appears
    mask = rng.random((1, 256, 256)) < masked_fraction
    return ImageData(np.ma.MaskedArray(values, mask=mask))


def rgba(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)).convert("RGBA"))


@pytest.mark.parametrize("name", ["viridis", "magma", "rdylgn_r"])
@pytest.mark.parametrize("masked_fraction", [0.0, 0.3, 1.0])
def test_paletted_png_has_titilers_pixels(name: str, masked_fraction: float) -> None:
    colormap = cmap.get(name)
    ours, media = render_layer_image(layer_image(masked_fraction=masked_fraction), colormap=colormap,
                                     output_format=ImageType.png, rescale=[(0, 1)])
    theirs, _ = render_image(layer_image(masked_fraction=masked_fraction), colormap=colormap,
                             output_format=ImageType.png, rescale=[(0, 1)])
    assert media == "image/png"
    assert Image.open(io.BytesIO(ours)).mode == "P"
    a, b = rgba(ours), rgba(theirs)
    assert a.shape == b.shape == (256, 256, 4)
    visible = b[..., 3] > 0
    assert np.array_equal(a[..., 3], b[..., 3])           # same transparency
    assert np.array_equal(a[visible], b[visible])         # same colours where anything shows
    if 0 < masked_fraction < 1:
        assert len(ours) < len(theirs)


def test_tile_using_every_index_with_masked_cells_falls_back_to_titiler() -> None:
    colormap = cmap.get("viridis")

    def image() -> ImageData:
        im = layer_image(seed=2, masked_fraction=0.1, full_range=True)
        im.array.mask[0].flat[:256] = False
        return im

    ours, _ = render_layer_image(image(), colormap=colormap, output_format=ImageType.png, rescale=[(0, 1)])
    assert Image.open(io.BytesIO(ours)).mode == "RGBA"
    theirs, _ = render_image(image(), colormap=colormap, output_format=ImageType.png, rescale=[(0, 1)])
    assert np.array_equal(rgba(ours), rgba(theirs))


def test_other_formats_and_no_colormap_go_to_titiler() -> None:
    jpeg, media = render_layer_image(layer_image(masked_fraction=0.0), colormap=cmap.get("viridis"),
                                     output_format=ImageType.jpeg, rescale=[(0, 1)])
    assert media == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
    grey, media = render_layer_image(layer_image(), colormap=None, output_format=ImageType.png, rescale=[(0, 1)])
    assert media == "image/png" and Image.open(io.BytesIO(grey)).mode in ("LA", "RGBA", "L")


def test_tile_matrix_sets_are_shared_not_copied() -> None:
    from morecantile import tms
    from morecantile.errors import InvalidIdentifier

    from backend.api.routers.tiles import TILE_MATRIX_SETS

    first = TILE_MATRIX_SETS.get("WebMercatorQuad")
    assert first is TILE_MATRIX_SETS.get("WebMercatorQuad")  # no deep copy per tile request
    assert first.model_dump() == tms.get("WebMercatorQuad").model_dump()
    assert set(TILE_MATRIX_SETS.list()) == set(tms.list())
    with pytest.raises(InvalidIdentifier):
        TILE_MATRIX_SETS.get("NoSuchGrid")
