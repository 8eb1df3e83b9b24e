"""The thread-cached layer reader: one open per thread and file, correct pixels, bounded handles."""

from __future__ import annotations

import threading

import numpy as np
import rasterio
from affine import Affine
from rio_tiler.io import Reader

from backend.layers import reader as layer_reader
from backend.layers.cog import write_layer


def _layer(path, value: float) -> None:
    data = np.full((64, 64), value, dtype=np.float32)
    write_layer(data, "EPSG:5070", Affine(1609.344, 0, -2e6, 0, -1609.344, 2.5e6), path)


def test_reader_reuses_one_handle_per_thread_and_reads_the_same_pixels(tmp_path, monkeypatch):
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    _layer(a, 0.25)
    _layer(b, 0.75)
    opened: list[str] = []
    real_open = rasterio.open
    monkeypatch.setattr(layer_reader.rasterio, "open", lambda p, *args, **kw: opened.append(p) or real_open(p))
    layer_reader.close_thread_handles()
    for _ in range(3):
        with layer_reader.LayerReader(str(a)) as src:
            ours = src.preview(max_size=32)
    with layer_reader.LayerReader(str(b)) as src:
        other = src.preview(max_size=32)
    assert opened == [str(a), str(b)], "each file is opened once per thread"
    monkeypatch.undo()
    with Reader(str(a)) as src:
        plain = src.preview(max_size=32)
    np.testing.assert_array_equal(ours.array, plain.array)
    assert float(other.array.mean()) == np.float32(0.75)
    assert not layer_reader.open_cached(str(a)).closed, "the reader does not close the cached handle"

    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(id(layer_reader.open_cached(str(a)))))
    t.start()
    t.join()
    assert seen[0] != id(layer_reader.open_cached(str(a))), "another thread gets its own handle"
    layer_reader.close_thread_handles()


def test_least_recently_used_handles_are_closed(tmp_path, monkeypatch):
    monkeypatch.setattr(layer_reader, "MAX_OPEN", 2)
    layer_reader.close_thread_handles()
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.tif")
        _layer(paths[-1], i / 4)
    first = layer_reader.open_cached(str(paths[0]))
    layer_reader.open_cached(str(paths[1]))
    layer_reader.open_cached(str(paths[2]))
    assert first.closed
    assert len(layer_reader._thread_handles()) == 2
    layer_reader.close_thread_handles()
