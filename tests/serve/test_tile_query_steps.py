"""The steps of check_tile_query: text parameters, and tile indexes, zoom levels and points of the path."""

from __future__ import annotations

import pytest
from starlette.datastructures import QueryParams

from backend.api.errors import BadQuery
from backend.api.routers.tiles import MAX_TEXT, _check_texts, _check_tile_path


@pytest.mark.parametrize(("query", "parameter"), [
    ("expression=b1%2Bb2", "expression"),
    ("color_formula=" + "x" * (MAX_TEXT + 1), "color_formula"),
    ("algorithm_params=%5B1%5D", "algorithm_params"),
    ("algorithm_params=%7Bnot%20json", "algorithm_params"),
    ("histogram_range=1,1", "histogram_range"),
    ("histogram_range=0,1,2", "histogram_range"),
    ("histogram_range=a,1", "histogram_range"),
])
def test_bad_text_parameters_are_refused(query: str, parameter: str) -> None:
    with pytest.raises(BadQuery) as caught:
        _check_texts(QueryParams(query))
    assert caught.value.parameter == parameter


def test_good_text_parameters_pass() -> None:
    _check_texts(QueryParams("expression=b1*2&algorithm_params=%7B%22azimuth%22%3A45%7D&histogram_range=0,1"))


@pytest.mark.parametrize(("query", "path", "parameter"), [
    ("", {"z": "3.5", "x": "0", "y": "0"}, "z"),
    ("", {"z": "31", "x": "0", "y": "0"}, "z"),
    ("", {"z": "2", "x": "4", "y": "0"}, "z"),
    ("", {"tileMatrixSetId": "WebMercatorQuad", "z": "1", "x": "0", "y": "-1"}, "z"),
    ("", {"lon": "181", "lat": "0"}, "lon"),
    ("", {"lon": "nan", "lat": "0"}, "lon"),
    ("minzoom=0&maxzoom=23", {"tileMatrixSetId": "CDB1GlobalGrid"}, "maxzoom"),
    ("", {"tileMatrixSetId": "GNOSISGlobalGrid", "z": "29", "x": "0", "y": "0"}, "z"),
])
def test_tiles_and_points_outside_their_set_are_refused(query: str, path: dict, parameter: str) -> None:
    with pytest.raises(BadQuery) as caught:
        _check_tile_path(QueryParams(query), path)
    assert caught.value.parameter == parameter


def test_tiles_and_points_inside_pass() -> None:
    _check_tile_path(QueryParams("minzoom=0&maxzoom=20"), {"tileMatrixSetId": "WebMercatorQuad", "z": "2", "x": "3",
                                                           "y": "3"})
    _check_tile_path(QueryParams(""), {"lon": "-120.5", "lat": "39"})
