"""Chunked signals: one Zarr v3 group per recording, laid out (channel, time).

Layout and codec
----------------
``data`` is float32 microvolts, shape ``(n_channels, n_samples)``, chunks of
``CHUNK_CHANNELS`` channels by ``CHUNK_SECONDS`` seconds, Blosc-lz4 level 5 with byte
shuffle, no sharding. Why (measured by ``bench/zarr_layout.py`` on 128 channels x 30 min at
1 kHz; figures and command in ``bench/RESULTS.md``):

* float32, not int16 + scale: the store holds notched and resampled values, not the source's
  digital samples, and NaN marks missing samples; int16 would need a second pass over the
  source to choose a scale.
* 64 channels x 10 s beat the first choice (16 x 10 s, zstd 3) on every hot read: a 5-s
  slice of all channels 2.7 vs 7.3 CPU-ms, a 60-s slice 15.8 vs 37.4, 125-s model windows
  60 vs 81; 4 channels x 60 s 21 vs 29. One-channel or 60-s chunks were 2-7x worse on
  all-channel reads. A chunk is 2.5 MB uncompressed (zarr advises >= 1 MB).
* lz4 instead of zstd: 550 vs 156 MB/s when writing (the ETL's second cost after the notch)
  for 6 % more bytes (compression 1.11 vs 1.18 on SEEG-like float32); no compression would
  cost 18 % more bytes for no faster reads (decoding, not the disk, bounds reads here).
* no sharding: reads were 0.6-0.9x as fast, and a recording is written by one process front
  to back in whole chunks, so there is no shard to share (zarr-python#3682); a 20-hour
  64-channel recording makes 7 200 chunk files.

Checksums
---------
Each chunk ends with a CRC-32C of its compressed bytes (zarr v3's ``crc32c`` codec, the
last bytes-to-bytes codec: compress, then checksum what is stored), so a flipped byte or a
truncated chunk fails its read instead of returning wrong microvolts; the read error is one
line naming the chunk file (:class:`~sozstore.store.verify.DamagedObjectError`). Every
chunk is written, even an all-NaN one (``write_empty_chunks``), so that a missing chunk file
is damage too rather than silently NaN. Groups written before the checksum still read
(their codecs are in their own metadata); ``sozstore verify`` reports them as unchecked.
The CRC runs in hardware (google-crc32c, a dependency of zarr) over the compressed bytes:
on a 64-channel, 5-minute, 1 kHz signal written by :class:`SignalWriter` with and without
it, the read CPU time was 0.9-1.0x for 5-s slices of all channels and 1.13-1.24x for 60-s
and 125-s slices (best of 3 x 40 reads each, on a loaded 2-core machine); the same store's
bytes checked end to end by ``sozstore verify`` at about 2.6 GB/s.

Attributes carry provenance: the source file's SHA-256, the sozstore version, the ETL
parameters, the channel names in row order, the sampling rate and units.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numpy.typing import NDArray
from zarr.codecs import BloscCodec, Crc32cCodec

from sozstore.store.atomic import replace_dir_atomic, temporary_sibling

CHUNK_CHANNELS = 64
CHUNK_SECONDS = 10.0
COMPRESSOR = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
CHECKSUM = Crc32cCodec()
#: Bytes-to-bytes codecs of new arrays, applied in this order when writing: compress, then
#: append the CRC-32C of the compressed bytes (checked first when reading).
STORED_CODECS = (COMPRESSOR, CHECKSUM)
DATA = "data"


def has_checksums(array: zarr.Array) -> bool:
    """Whether ``array``'s chunks end with a CRC-32C (groups written since checksums were added)."""
    return any(isinstance(codec, Crc32cCodec) for codec in array.compressors)


class SignalWriter:
    """Write one recording's signal front to back, whole chunks at a time.

    The group is built under a temporary name and moved into place by :meth:`commit`; a
    writer that is never committed leaves nothing visible.

    Parameters
    ----------
    final : Path
        Where the group will live (``.../<recording_id>.zarr``).
    n_channels, n_samples : int
        Shape of the signal.
    sfreq : float
        Sampling rate of the store (Hz).
    attrs : dict
        Provenance and description, JSON-serialisable.
    """

    def __init__(self, final: Path, *, n_channels: int, n_samples: int, sfreq: float,
                 attrs: dict[str, Any]) -> None:
        self.final = Path(final)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temporary_sibling(self.final)
        self.n_channels = n_channels
        self.n_samples = n_samples
        self.chunk_t = max(1, int(round(CHUNK_SECONDS * sfreq)))
        group = zarr.open_group(self.tmp, mode="w", zarr_format=3)
        group.attrs.update(json.loads(json.dumps(attrs)))
        self.array = group.create_array(
            DATA, shape=(n_channels, n_samples),
            chunks=(min(CHUNK_CHANNELS, max(n_channels, 1)), self.chunk_t),
            dtype="float32", compressors=STORED_CODECS, fill_value=np.nan,
            dimension_names=("channel", "time"),
            # every chunk on disk, so that a missing chunk file reads as damage, not as NaN
            config={"write_empty_chunks": True},
        )
        self.group = group
        self.written = 0
        self._pending: list[NDArray[np.float32]] = []
        self._pending_n = 0

    def append(self, block: NDArray[np.float32]) -> None:
        """Append ``block`` of shape (n_channels, n) after what was written so far."""
        if block.shape[0] != self.n_channels:
            raise ValueError(f"block has {block.shape[0]} channels, expected {self.n_channels}")
        self._pending.append(np.ascontiguousarray(block, dtype=np.float32))
        self._pending_n += block.shape[1]
        if self._pending_n >= self.chunk_t:
            self._flush(final=False)

    def _flush(self, *, final: bool) -> None:
        if not self._pending:
            return
        data = np.concatenate(self._pending, axis=1) if len(self._pending) > 1 \
            else self._pending[0]
        n = data.shape[1] if final else (data.shape[1] // self.chunk_t) * self.chunk_t
        if self.written + n > self.n_samples:
            raise ValueError(f"more samples than declared ({self.written + n} > {self.n_samples})")
        if n:
            self.array[:, self.written:self.written + n] = data[:, :n]
            self.written += n
        rest = data[:, n:]
        self._pending = [rest] if rest.shape[1] else []
        self._pending_n = rest.shape[1]

    def commit(self, extra_attrs: dict[str, Any] | None = None) -> Path:
        """Flush, consolidate metadata and move the group into place."""
        self._flush(final=True)
        if self.written != self.n_samples:
            raise ValueError(f"wrote {self.written} samples, declared {self.n_samples}")
        if extra_attrs:
            self.group.attrs.update(json.loads(json.dumps(extra_attrs)))
        with warnings.catch_warnings():
            # Consolidated metadata is a zarr-python extension of v3; readers that do not know
            # it still read the per-array metadata.
            warnings.filterwarnings("ignore", message="Consolidated metadata")
            zarr.consolidate_metadata(self.tmp, zarr_format=3)
        replace_dir_atomic(self.tmp, self.final)
        return self.final

    def abort(self) -> None:
        """Throw the temporary group away."""
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)


class SignalReader:
    """Read slices of one recording's signal; never the whole of it unless asked.

    Parameters
    ----------
    path : Path
        The recording's Zarr group.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.group = zarr.open_group(self.path, mode="r", zarr_format=3)
            array = self.group[DATA]
        except (ValueError, KeyError, TypeError) as err:
            # a missing group stays FileNotFoundError; what is left is damaged metadata
            from sozstore.store.verify import DamagedObjectError, one_line

            raise DamagedObjectError(f"{self.path / 'zarr.json'}: unreadable Zarr metadata "
                                     f"({one_line(err)})") from err
        if not isinstance(array, zarr.Array):
            raise ValueError(f"{self.path}: {DATA!r} is not an array")
        self.array: zarr.Array = array
        self.attrs: dict[str, Any] = dict(self.group.attrs)
        self.channels: list[str] = list(self.attrs["channels"])
        self.sfreq = float(self.attrs["sfreq"])
        self._index = {name: i for i, name in enumerate(self.channels)}

    @property
    def n_samples(self) -> int:
        return int(self.array.shape[1])

    @property
    def duration(self) -> float:
        return self.n_samples / self.sfreq

    def channel_indices(self, channels: Sequence[str] | None) -> list[int]:
        if channels is None:
            return list(range(len(self.channels)))
        try:
            return [self._index[c] for c in channels]
        except KeyError as err:
            raise KeyError(f"{self.path}: no channel {err.args[0]!r}") from None

    def read_samples(self, start: int, stop: int, channels: Sequence[str] | None = None
                     ) -> NDArray[np.float32]:
        """Samples ``[start, stop)`` of the given channels (all by default), (n_ch, n)."""
        start, stop = max(0, int(start)), min(self.n_samples, int(stop))
        idx = self.channel_indices(channels)
        try:
            if channels is None:
                block = self.array[:, start:stop]
            elif (hi := max(idx) + 1) - (lo := min(idx)) == len(idx) and idx == sorted(idx):
                block = self.array[lo:hi, start:stop]
            else:
                block = self.array.get_orthogonal_selection((np.asarray(idx),
                                                             slice(start, stop)))
        except Exception as err:
            # re-raised below unless a chunk of the selection is found damaged
            damaged = self._damaged_chunk_error(idx, start, stop)
            if damaged is None:
                raise
            raise damaged from err
        # zarr types a selection loosely; the store's arrays are float32 (no copy here)
        return np.asarray(block, dtype=np.float32)

    def _damaged_chunk_error(self, rows: Sequence[int], start: int, stop: int
                             ) -> Exception | None:
        """After a failed read: the one-line error naming the first damaged chunk of the
        selection (rows ``rows``, samples ``[start, stop)``), None when every chunk is
        intact (the failure was something else)."""
        from sozstore.store.verify import DamagedObjectError, chunk_problem

        chunk_rows, chunk_t = self.array.chunks
        for coords in chunks_of_selection(rows, start, stop, (chunk_rows, chunk_t)):
            problem = chunk_problem(self.array, self.path / DATA, coords, deep=True)
            if problem is None:
                continue
            row0, t0 = coords[0] * chunk_rows, coords[1] * chunk_t
            row1 = min(row0 + chunk_rows, len(self.channels))
            chunk_file = self.path / DATA / self.array.metadata.encode_chunk_key(coords)
            what = self.attrs.get("recording_id", self.path.stem)
            return DamagedObjectError(
                f"{chunk_file}: damaged signal chunk of recording {what} (channels "
                f"{self.channels[row0]}..{self.channels[row1 - 1]}, "
                f"{t0 / self.sfreq:g}-{(t0 + chunk_t) / self.sfreq:g} s): {problem}; "
                f"`sozstore verify` lists what depends on it")
        return None

    def read(self, tmin: float, tmax: float, channels: Sequence[str] | None = None
             ) -> NDArray[np.float32]:
        """Seconds ``[tmin, tmax)`` of the given channels, shape (n_channels, n_samples)."""
        return self.read_samples(int(round(tmin * self.sfreq)), int(round(tmax * self.sfreq)),
                                 channels)


def chunks_of_selection(rows: Sequence[int], start: int, stop: int,
                        chunks: tuple[int, int]) -> list[tuple[int, int]]:
    """The (row chunk, time chunk) coordinates that a read of ``rows`` x ``[start, stop)``
    touches, for chunks of shape ``chunks``, in row-major order."""
    chunk_rows, chunk_t = chunks
    if stop <= start or not rows:
        return []
    row_chunks = sorted({int(r) // chunk_rows for r in rows})
    return [(rc, tc) for rc in row_chunks
            for tc in range(start // chunk_t, (stop - 1) // chunk_t + 1)]


def open_signals(path: str | Path) -> SignalReader:
    """Open a recording's Zarr group for slice reads (see :class:`SignalReader`)."""
    return SignalReader(path)
