"""A rio-tiler reader that keeps each thread's layer files open between tile requests.

Layer files are immutable: a new layer version is a new folder and an on-request layer a new name, so a
file handle opened for one request stays valid for the next. Opening a COG (reading its header and
tile index) is a large share of an uncached tile's time; this reader pays it once per thread and file.
rasterio datasets are not thread-safe, so every worker thread holds its own handles (least recently
used dropped beyond ``MAX_OPEN``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import rasterio
from rasterio.io import DatasetReader
from rio_tiler.io import Reader

#: Open layer files kept per thread.
MAX_OPEN = 48

_local = threading.local()


def _thread_handles() -> OrderedDict[str, DatasetReader]:
    """The open datasets of the calling thread, least recently used first."""
    handles = getattr(_local, "handles", None)
    if handles is None:
        handles = _local.handles = OrderedDict()
    return handles


def open_cached(path: str) -> DatasetReader:
    """The thread's open dataset of ``path``, opened now if needed."""
    handles = _thread_handles()
    ds = handles.get(path)
    if ds is not None and not ds.closed:
        handles.move_to_end(path)
        return ds
    ds = rasterio.open(path)
    handles[path] = ds
    while len(handles) > MAX_OPEN:
        _, old = handles.popitem(last=False)
        old.close()
    return ds


def close_thread_handles() -> None:
    """Close the calling thread's open layer files (used by the tests)."""
    handles = _thread_handles()
    while handles:
        handles.popitem()[1].close()


class LayerReader(Reader):
    """rio-tiler's Reader on a thread-cached dataset (the reader never closes it)."""

    def __attrs_post_init__(self) -> None:
        """Use the cached handle, then let rio-tiler read its metadata as usual."""
        if self.dataset is None:
            self.dataset = open_cached(str(self.input))
        super().__attrs_post_init__()
