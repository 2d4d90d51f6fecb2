"""Streaming BrainVision writer built on :mod:`pybv`.

pybv writes the three files (``.vhdr``, ``.vmrk``, ``.eeg``) from one in-memory array. To
keep memory bounded, :class:`BrainVisionWriter` lets pybv write the header, the marker
file (with its ``New Segment`` date) and the *first* block, then appends further blocks
to the ``.eeg`` in pybv's own encoding (multiplexed little-endian float32 in
``unit / resolution``) and the markers to the ``.vmrk`` in pybv's own line format. A
BrainVision header carries no sample count (readers derive it from the ``.eeg`` size),
so the result is exactly what pybv would have written for the whole array.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
import pybv

__all__ = ["BrainVisionWriter"]


class BrainVisionWriter:
    """Write a BrainVision recording block by block.

    Parameters
    ----------
    vhdr_path : str or Path
        Path of the ``.vhdr`` file; the ``.vmrk`` and ``.eeg`` go beside it.
    ch_names : sequence of str
        Channel names (unique).
    sfreq : float
        Sampling rate (written as ``SamplingInterval = 1e6 / sfreq`` microseconds).
    markers : sequence of (float, str)
        ``(onset seconds, description)`` pairs written as ``Comment`` markers.
    meas_date : datetime, optional
        Date of the ``New Segment`` marker.
    resolution : float
        Microvolts per stored unit (pybv's default 0.1).
    """

    def __init__(
        self,
        vhdr_path: str | Path,
        ch_names: Sequence[str],
        *,
        sfreq: float,
        markers: Sequence[tuple[float, str]] = (),
        meas_date: datetime | None = None,
        resolution: float = 0.1,
    ) -> None:
        self.vhdr_path = Path(vhdr_path)
        if self.vhdr_path.suffix != ".vhdr":
            raise ValueError(f"expected a .vhdr path, got {self.vhdr_path}")
        self.ch_names = list(ch_names)
        self.sfreq = float(sfreq)
        self.markers = sorted(markers)
        self.meas_date = meas_date
        self.resolution = float(resolution)
        self.n_samples = 0
        self._eeg: BinaryIO | None = None  # opened after pybv wrote the first block
        self._closed = False

    @property
    def paths(self) -> list[Path]:
        """The three files of the recording."""
        base = self.vhdr_path.with_suffix("")
        return [base.with_suffix(ext) for ext in (".vhdr", ".vmrk", ".eeg")]

    def write(self, block: np.ndarray) -> None:
        """Append a block.

        Parameters
        ----------
        block : numpy.ndarray, shape (n_channels, n)
            Signal in microvolts.
        """
        if block.shape[1] == 0:
            return
        if self._eeg is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pybv warns about unit spellings only
                pybv.write_brainvision(
                    data=block.astype(np.float64) * 1e-6,  # pybv expects volts
                    sfreq=self.sfreq,
                    ch_names=self.ch_names,
                    fname_base=self.vhdr_path.stem,
                    folder_out=self.vhdr_path.parent,
                    overwrite=True,
                    events=None,
                    resolution=self.resolution,
                    unit="µV",
                    fmt="binary_float32",
                    meas_date=self.meas_date,
                )
            self._eeg = open(self.paths[2], "ab")  # closed by close() / __exit__
        else:
            scaled = (block / self.resolution).astype("<f4")
            # multiplexed: all channels of sample 0, then of sample 1, ...
            self._eeg.write(np.ascontiguousarray(scaled.T).tobytes())
        self.n_samples += block.shape[1]

    def close(self) -> None:
        """Append the markers to the ``.vmrk`` and close the data file."""
        if self._closed:
            return
        self._closed = True
        if self._eeg is None:
            raise ValueError(f"no data written to {self.vhdr_path}")
        self._eeg.close()
        first = 2 if self.meas_date is not None else 1
        lines = []
        for k, (onset, text) in enumerate(self.markers):
            sample = round(onset * self.sfreq)
            if not 0 <= sample < self.n_samples:
                raise ValueError(f"marker {text!r} at {onset} s is outside the recording")
            desc = text.replace(",", r"\1")  # BrainVision escapes commas as \1
            # positions are 1-based in .vmrk files
            lines.append(f"Mk{first + k}=Comment,{desc},{sample + 1},1,0\n")
        with open(self.paths[1], "a", encoding="utf-8") as fh:
            fh.writelines(lines)

    def __enter__(self) -> BrainVisionWriter:
        """Return the writer."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the files (markers are only written on success)."""
        if exc_type is None:
            self.close()
        elif self._eeg is not None:
            self._eeg.close()
            self._closed = True
