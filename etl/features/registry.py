"""The feature sets: name, version, parameters, output tables and how a block becomes rows.

A feature set turns one block of clips (all channels of a recording, ``clips_per_block``
clips of ``clip_s`` seconds, read with margins) into Arrow record batches, one per output
table. Versions follow the Hopsworks rule: a change to what a set computes or to its schema
bumps ``version`` (a new path; the old version stays queryable until removed); a change of
parameters keeps the version but changes the fingerprint, so partitions are recomputed.

One meaning at every store rate (spectrum, bandpower, wpt and adjacency version 2)
    The ETL stores each recording at its own rate (1 kHz, or 2 kHz for sources of 2 kHz
    and more: docs/etl.md, "The store's rate"). Version 1 of these sets computed on the
    store's samples as they were, so a column's meaning followed the rate: the 32
    wavelet-packet leaves split ``0 .. sfreq / 2`` into bands of ``sfreq / 64`` (15.6 Hz at
    1 kHz, 31.25 Hz at 2 kHz: leaf 10 was 156-172 Hz at one rate and 312-344 Hz at the
    other); line length is a mean step per sample (a 2-kHz store halves it for slow
    activity and doubles the noise floor's share: +20 % on 1/f background with 1 uV of
    white noise); variance, skewness, kurtosis and the correlation also took in the
    500-1000 Hz that only a 2-kHz store holds; and the spectrum's rFFT amplitudes scale
    with the samples per segment (x 2 at 2 kHz). Version 2 computes whatever depends on the
    samples at a fixed analysis rate, ``analysis_sfreq = 1000`` Hz (a parameter):
    :meth:`Block.analysis_clips` resamples each block, margins included
    (:data:`ANALYSIS_MARGIN_S`), with the ETL's anti-alias filter
    (:func:`kernels.resample_core`), so the 32 leaves are always 0-500 Hz in 15.6-Hz
    steps, and a 2-kHz store's values agree with those of the same signal stored at 1 kHz
    (``tests/test_features.py``). Band powers are integrals over Hz and stay at the store
    rate (the 2-kHz store's fast-ripple band keeps the 450-500 Hz that the ETL's resampler
    attenuates at 1 kHz); the spectrum scales its amplitudes to ``reference_sfreq = 1000``
    Hz. At a 1-kHz store nothing is resampled or scaled: every value equals version 1's.
    The spike and HFO sets were rate-independent already (seconds and Hz throughout; the
    spike detector works at 200 Hz; the HFO bands use the bandwidth a rate holds, by
    design) and keep their versions.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from sozstore.etl.features import kernels

_str = pa.string()
_f32 = pa.float32()
_f64 = pa.float64()
KEY_FIELDS = [("site", _str), ("subject", _str), ("recording_id", _str), ("channel", _str),
              ("clip_start_s", _f64)]
FLAG_FIELDS = [("valid", pa.bool_()), ("flag", _str)]
#: Rate (Hz) at which the sets whose values depend on the sample spacing work, whatever
#: the store's rate (module notes: wpt, line length and moments, correlation).
ANALYSIS_SFREQ = 1000.0
#: Seconds of margin those sets read on each side of a block: covers the resampler's
#: filter (10 ms at 1 kHz) and the alignment of the core on whole samples of both rates.
ANALYSIS_MARGIN_S = 0.25


@dataclass
class Block:
    """One block handed to the feature sets.

    Attributes
    ----------
    data : array of shape (n_channels, n_samples)
        Samples of the block *with* margins (microvolts, store rate).
    core : tuple of int
        ``(start, stop)`` of the block's clips inside ``data`` (samples).
    offset_s : float
        Time of ``data[:, 0]`` from the recording start (seconds).
    clip_samples : int
        Samples per clip; the core holds a whole number of clips.
    """

    site: str
    subject: str
    recording_id: str
    channels: list[str]
    sfreq: float
    bandwidth_hz: float
    data: NDArray[np.float32]
    core: tuple[int, int]
    offset_s: float
    clip_samples: int

    # Everything below is derived from the block once and shared by every set that needs
    # it (cached on first use): the clips view, the NaN/flat flags, and the Arrow key
    # and flag columns.
    @cached_property
    def clips(self) -> NDArray[np.float32]:
        """Core clips, (n_channels, n_clips, clip_samples)."""
        a, b = self.core
        return kernels.to_clips(self.data[:, a:b], self.clip_samples)

    @cached_property
    def validity(self) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """``(has_nan, flat)`` of every clip, each (n_channels, n_clips)."""
        return kernels.clip_validity(self.clips)

    @cached_property
    def invalid(self) -> NDArray[np.bool_]:
        """Clips with NaN or flat samples, (n_channels, n_clips)."""
        has_nan, flat = self.validity
        return has_nan | flat

    @cached_property
    def valid_rows(self) -> NDArray[np.bool_]:
        """``~invalid`` in row order (clip, channel)."""
        return ~self.invalid.T.ravel()

    @property
    def clip_starts(self) -> NDArray[np.float64]:
        n = (self.core[1] - self.core[0]) // self.clip_samples
        start = self.offset_s + self.core[0] / self.sfreq
        return start + np.arange(n) * self.clip_samples / self.sfreq

    def analysis_clips(self, rate: float) -> NDArray[np.float32]:
        """Core clips at ``rate`` Hz, (n_channels, n_clips, clip_samples * rate / sfreq).

        The block's samples, margins included, resampled by :func:`kernels.resample_core`
        and cut into the same clips (:attr:`clips` itself when ``rate`` is the block's
        rate). Computed once per block and rate, shared by the sets that see this block;
        validity flags stay those of :attr:`clips`.
        """
        cache = self.__dict__.setdefault("_analysis", {})
        if rate not in cache:
            if kernels.rate_ratio(self.sfreq, rate) == (1, 1):
                cache[rate] = self.clips
            else:
                n_ch, n_clips, _ = self.clips.shape
                a, b = self.core
                core = kernels.resample_core(self.data, self.sfreq, rate, (a, b))
                cache[rate] = core.reshape(n_ch, n_clips, core.shape[1] // max(n_clips, 1))
        return cache[rate]

    def key_columns(self) -> dict[str, Any]:
        """Key columns in (clip, channel) order, the order rows are written in."""
        return dict(self._key_columns)

    @cached_property
    def _key_columns(self) -> dict[str, Any]:
        starts = self.clip_starts
        n_ch = len(self.channels)
        n = n_ch * len(starts)
        return {
            "site": pa.repeat(pa.scalar(self.site, _str), n),
            "subject": pa.repeat(pa.scalar(self.subject, _str), n),
            "recording_id": pa.repeat(pa.scalar(self.recording_id, _str), n),
            "channel": pa.array(self.channels * len(starts), _str),
            "clip_start_s": pa.array(np.repeat(starts, n_ch), _f64),
        }

    def flag_columns(self) -> dict[str, Any]:
        return dict(self._flag_columns)

    @cached_property
    def _flag_columns(self) -> dict[str, Any]:
        has_nan, flat = self.validity
        none = np.full(flat.shape, None, dtype=object)
        flag = np.where(has_nan, "nan", np.where(flat, "flat", none)).T.ravel()
        return {"valid": pa.array(self.valid_rows),
                "flag": pa.array(flag, _str)}

    def masked_counts(self, counts: NDArray[np.integer], *, detector: bool = False
                      ) -> pa.Array:
        """Per-row counts as int32, null where the clip is invalid (missing, not zero).

        With ``detector``, also null on every clip of a channel whose block (margins
        included) holds a NaN: the detectors silence such a channel for the whole block.
        """
        valid = self.detector_valid_rows if detector else self.valid_rows
        return pa.array(np.asarray(counts, dtype=np.int32), pa.int32(), mask=~valid)

    @cached_property
    def detector_valid_rows(self) -> NDArray[np.bool_]:
        """``valid_rows`` minus the rows of channels with a NaN anywhere in ``data``."""
        silenced = np.isnan(self.data).any(axis=1)  # (n_channels,)
        return self.valid_rows & ~np.tile(silenced, len(self.clip_starts))

    def detector_flag_columns(self) -> dict[str, Any]:
        """``valid``/``flag`` of the detector tables: ``nan_in_block`` marks clean clips of
        a channel the detector could not look at (a NaN elsewhere in its block)."""
        flags = self.flag_columns()
        extra = self.valid_rows & ~self.detector_valid_rows
        if not extra.any():
            return flags
        flag = np.asarray(flags["flag"].to_numpy(zero_copy_only=False), dtype=object)
        flag[extra] = "nan_in_block"
        return {"valid": pa.array(self.detector_valid_rows), "flag": pa.array(flag, _str)}

    def with_margin(self, margin: int) -> Block:
        """The same block with at most ``margin`` samples of signal around its core.

        Each set sees exactly its own margin, so its rows do not depend on which other sets
        run beside it. Core-only caches (clips, flags, key columns) are shared.
        """
        a, b = self.core
        lo, hi = max(0, a - margin), min(self.data.shape[1], b + margin)
        if lo == 0 and hi == self.data.shape[1]:
            return self
        view = Block(site=self.site, subject=self.subject, recording_id=self.recording_id,
                     channels=self.channels, sfreq=self.sfreq, bandwidth_hz=self.bandwidth_hz,
                     data=self.data[:, lo:hi], core=(a - lo, b - lo),
                     offset_s=self.offset_s + lo / self.sfreq, clip_samples=self.clip_samples)
        for name in ("clips", "validity", "invalid", "valid_rows", "_key_columns",
                     "_flag_columns"):
            if name in self.__dict__:
                view.__dict__[name] = self.__dict__[name]
        return view


def _by_clip(values: NDArray) -> NDArray:
    """(n_channels, n_clips, ...) -> rows in (clip, channel) order."""
    moved = np.moveaxis(values, 1, 0)
    return moved.reshape(moved.shape[0] * moved.shape[1], *values.shape[2:])


def _fixed_list(values: NDArray[np.float32]) -> pa.FixedSizeListArray:
    flat = pa.array(values.reshape(-1).astype(np.float32), _f32)
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[-1])


@dataclass(frozen=True)
class FeatureSet:
    """A named, versioned feature set.

    Attributes
    ----------
    name, version
        Identity; tables live under ``features/<table>/v<version>/``.
    params
        Parameters (JSON-serialisable), part of the fingerprint.
    tables
        Output table names and their Arrow schemas.
    compute
        ``(block, params) -> {table: RecordBatch}``.
    margin_s
        Seconds of signal needed on each side of a block (detectors' background windows).
    """

    name: str
    version: int
    params: dict[str, Any]
    tables: dict[str, pa.Schema]
    compute: Callable[[Block, dict[str, Any]], dict[str, pa.RecordBatch]]
    margin_s: float = 0.0
    modules: tuple[Any, ...] = field(default=(), repr=False)

    def code_hash(self) -> str:
        """Hash of the code of the functions that compute this set.

        The code is hashed as Python's parser sees it, without docstrings, comments, type
        annotations or layout (:func:`code_text`): editing the documentation or the types of
        a detector does not recompute every stored partition; changing what it computes does.
        """
        digest = hashlib.sha256()
        for obj in (self.compute, *self.modules):
            digest.update(code_text(inspect.getsource(obj)).encode())
        return digest.hexdigest()[:16]

    def with_params(self, **overrides: Any) -> FeatureSet:
        unknown = set(overrides) - set(self.params)
        if unknown:
            raise ValueError(f"feature set {self.name!r} has no parameter(s) {sorted(unknown)}")
        return FeatureSet(self.name, self.version, {**self.params, **overrides}, self.tables,
                          self.compute, self.margin_s, self.modules)

    def fingerprint(self, inputs: list[tuple[str, str]]) -> str:
        """Fingerprint of code, parameters and the inputs ``[(recording_id, fp), ...]``."""
        blob = json.dumps([self.name, self.version, self.params, self.code_hash(),
                           sorted(inputs)], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


class _CodeOnly(ast.NodeTransformer):
    """Drops what does not change what code computes: docstrings and type annotations."""

    def _body(self, node: ast.AST) -> ast.AST:
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            body[:] = body[1:] or [ast.Pass()]
        return self.generic_visit(node)

    def visit_Module(self, node: ast.Module) -> ast.AST:
        return self._body(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        return self._body(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.returns = None
        return self._body(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        node.returns = None
        return self._body(node)

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.annotation = None
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST | None:
        if node.value is None:
            return None  # a bare declaration computes nothing
        return ast.copy_location(ast.Assign(targets=[node.target], value=node.value), node)


def code_text(source: str) -> str:
    """``source`` reduced to what it computes: parsed, without docstrings, comments and type
    annotations, printed back in one canonical layout."""
    tree = _CodeOnly().visit(ast.parse(textwrap.dedent(source)))
    return ast.unparse(ast.fix_missing_locations(tree))


def _schema(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema(list(fields))


# --------------------------------------------------------------------------- spectrum
def _spectrum_bins(params: dict[str, Any], sfreq: float) -> int:
    return int(np.floor(min(params["fmax"], sfreq / 2) / params["resolution_hz"]))


def _compute_spectrum(block: Block, params: dict[str, Any]) -> dict[str, pa.RecordBatch]:
    spec = kernels.log_amplitude_spectrum(block.clips, block.sfreq,
                                          resolution_hz=params["resolution_hz"],
                                          fmax=min(params["fmax"], block.sfreq / 2),
                                          invalid=block.invalid,
                                          reference_sfreq=params["reference_sfreq"])
    cols = {**block.key_columns(), **block.flag_columns(),
            "spectrum": _fixed_list(_by_clip(spec))}
    return {"spectrum": pa.RecordBatch.from_pydict(cols)}


# --------------------------------------------------------------------------- bandpower
BANDPOWER_COLUMNS = (*kernels.BANDS, "line_length", "variance", "skewness", "kurtosis")


def _compute_bandpower(block: Block, params: dict[str, Any]) -> dict[str, pa.RecordBatch]:
    # band powers from the store's samples (Hz); line length and moments at the analysis
    # rate (version 2, module notes)
    values = kernels.band_powers(block.clips, block.sfreq, max_freq=block.bandwidth_hz,
                                 invalid=block.invalid,
                                 time_clips=block.analysis_clips(params["analysis_sfreq"]))
    cols = {**block.key_columns(), **block.flag_columns()}
    for name in BANDPOWER_COLUMNS:
        cols[name] = pa.array(_by_clip(values[name]).astype(np.float32), _f32)
    return {"bandpower": pa.RecordBatch.from_pydict(cols)}


# --------------------------------------------------------------------------- wpt
def _compute_wpt(block: Block, params: dict[str, Any]) -> dict[str, pa.RecordBatch]:
    # at the analysis rate: leaf k is always k..k+1 x analysis_sfreq / 2**(level + 1) Hz
    # (version 2, module notes)
    log_e, rel_e = kernels.wavelet_packet_energies(
        block.analysis_clips(params["analysis_sfreq"]), wavelet=params["wavelet"],
        level=params["level"], invalid=block.invalid)
    cols = {**block.key_columns(), **block.flag_columns(),
            "log_energy": _fixed_list(_by_clip(log_e)),
            "relative_energy": _fixed_list(_by_clip(rel_e))}
    return {"wpt": pa.RecordBatch.from_pydict(cols)}


# --------------------------------------------------------------------------- adjacency
def _compute_adjacency(block: Block, params: dict[str, Any]) -> dict[str, pa.RecordBatch]:
    i, j, r = kernels.correlation_upper(block.analysis_clips(params["analysis_sfreq"]),
                                        invalid=block.invalid)
    starts = block.clip_starts
    n_rows = i.size * len(starts)
    names = pa.array(block.channels, _str)
    cols = {
        "site": pa.repeat(pa.scalar(block.site, _str), n_rows),
        "subject": pa.repeat(pa.scalar(block.subject, _str), n_rows),
        "recording_id": pa.repeat(pa.scalar(block.recording_id, _str), n_rows),
        "clip_start_s": pa.array(np.repeat(starts, i.size), _f64),
        "channel_i": names.take(np.tile(i, len(starts))),
        "channel_j": names.take(np.tile(j, len(starts))),
        "r": pa.array(r.reshape(-1), _f32),
    }
    return {"adjacency": pa.RecordBatch.from_pydict(cols)}


# --------------------------------------------------------------------------- events
def _events_in_core(block: Block, times: NDArray[np.float64]) -> NDArray[np.bool_]:
    a, b = block.core
    t0 = block.offset_s + a / block.sfreq
    t1 = block.offset_s + b / block.sfreq
    return (times >= t0) & (times < t1)


def _per_clip_counts(block: Block, channel: NDArray[np.int64], times: NDArray[np.float64],
                     mask: NDArray[np.bool_] | None = None) -> NDArray[np.int64]:
    """Counts of events per (clip, channel), rows in (clip, channel) order."""
    n_ch = len(block.channels)
    starts = block.clip_starts
    counts = np.zeros((len(starts), n_ch), dtype=np.int64)
    if times.size:
        clip = np.floor((times - starts[0]) * block.sfreq / block.clip_samples).astype(np.int64)
        sel = (clip >= 0) & (clip < len(starts))
        if mask is not None:
            sel &= mask
        np.add.at(counts, (clip[sel], channel[sel]), 1)
    return counts.reshape(-1)


def _compute_spikes(block: Block, params: dict[str, Any]) -> dict[str, pa.RecordBatch]:
    from sozstore.etl.features.spikes import detect_spikes

    # mains_hz=0: the store's signals were notched at the mains and its harmonics by the
    # ETL (etl/dsp.py), so the detector's own notches would only filter the block again
    ev = detect_spikes(block.data, block.sfreq, mains_hz=0.0,
                       k1=params["k1"], band=tuple(params["band"]))
    times = ev.time_s + block.offset_s
    keep = _events_in_core(block, times)
    ch, t, amp, clear = ev.channel[keep], times[keep], ev.amplitude[keep], ev.clear[keep]
    counts = _per_clip_counts(block, ch, t)
    n_clear = _per_clip_counts(block, ch, t, clear)
    cols = {**block.key_columns(), **block.detector_flag_columns()}
    # A clip with NaN or flat samples has no count (null), not zero spikes.
    cols["spike_count"] = block.masked_counts(counts, detector=True)
    cols["clear_count"] = block.masked_counts(n_clear, detector=True)
    events = {
        "site": pa.repeat(pa.scalar(block.site, _str), len(t)),
        "subject": pa.repeat(pa.scalar(block.subject, _str), len(t)),
        "recording_id": pa.repeat(pa.scalar(block.recording_id, _str), len(t)),
        "channel": pa.array(block.channels, _str).take(ch),
        "time_s": pa.array(t, _f64),
        "amplitude": pa.array(amp.astype(np.float32), _f32),
        "clear": pa.array(clear, pa.bool_()),
    }
    return {"spikes": pa.RecordBatch.from_pydict(cols),
            "spike_events": pa.RecordBatch.from_pydict(events)}


def _hfo_bands(bandwidth_hz: float, sfreq: float) -> dict[str, tuple[float, float]]:
    """HFO bands the recording can hold: up to 0.9 x its bandwidth (the source's Nyquist)."""
    top = min(0.9 * bandwidth_hz, 0.45 * sfreq)
    bands = {}
    if top >= 80.0 + 50.0:
        bands["ripple"] = (80.0, min(250.0, top))
    if top >= 250.0 + 50.0:
        bands["fast_ripple"] = (250.0, min(500.0, top))
    return bands


def _compute_hfo(block: Block, params: dict[str, Any]) -> dict[str, pa.RecordBatch]:
    from sozstore.etl.features.hfo import detect_hfos

    bands = _hfo_bands(block.bandwidth_hz, block.sfreq)
    valid = block.detector_valid_rows
    cols = {**block.key_columns(), **block.detector_flag_columns()}
    names = pa.array(block.channels, _str)
    ev_cols: dict[str, list[Any]] = {k: [] for k in ("channel", "start_s", "end_s", "peak_s",
                                                     "amplitude", "kind")}
    clip_s = block.clip_samples / block.sfreq
    # Both bands in one call: detect_hfos treats each band independently (same offset
    # removal, same per-band statistics), so this equals one call per band without the
    # second copy and median; events are split back by kind below.
    ev = (detect_hfos(block.data, block.sfreq, bands=bands,
                      rms_threshold_sd=params["rms_threshold_sd"],
                      relative_peak=params["relative_peak"]) if bands else None)
    for kind in ("ripple", "fast_ripple"):
        if kind not in bands:
            cols[f"{kind}_count"] = pa.nulls(len(valid), pa.int32())
            cols[f"{kind}_rate_per_min"] = pa.nulls(len(valid), _f32)
            continue
        assert ev is not None
        peaks = ev.peak_s + block.offset_s
        keep = _events_in_core(block, peaks) & (ev.kind == kind)
        counts = _per_clip_counts(block, ev.channel[keep], peaks[keep])
        cols[f"{kind}_count"] = block.masked_counts(counts, detector=True)
        rate = (counts.astype(np.float64) * 60.0 / clip_s).astype(np.float32)
        cols[f"{kind}_rate_per_min"] = pa.array(rate, _f32, mask=~valid)
        ev_cols["channel"].append(ev.channel[keep])
        ev_cols["start_s"].append(ev.start_s[keep] + block.offset_s)
        ev_cols["end_s"].append(ev.end_s[keep] + block.offset_s)
        ev_cols["peak_s"].append(peaks[keep])
        ev_cols["amplitude"].append(ev.amplitude[keep])
        ev_cols["kind"].append(np.full(int(keep.sum()), kind, dtype=object))

    def cat(key: str, dtype: Any) -> NDArray:
        parts = ev_cols[key]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    channel = cat("channel", np.int64)
    n = channel.size
    events = {"site": pa.repeat(pa.scalar(block.site, _str), n),
              "subject": pa.repeat(pa.scalar(block.subject, _str), n),
              "recording_id": pa.repeat(pa.scalar(block.recording_id, _str), n),
              "channel": names.take(channel),
              "start_s": pa.array(cat("start_s", np.float64), _f64),
              "end_s": pa.array(cat("end_s", np.float64), _f64),
              "peak_s": pa.array(cat("peak_s", np.float64), _f64),
              "amplitude": pa.array(cat("amplitude", np.float64).astype(np.float32), _f32),
              "kind": pa.array(cat("kind", object), _str)}
    return {"hfo": pa.RecordBatch.from_pydict(cols),
            "hfo_events": pa.RecordBatch.from_pydict(events)}


_KEYS = _schema(*KEY_FIELDS, *FLAG_FIELDS)


def _with(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema(list(_KEYS) + [pa.field(n, t) for n, t in fields])


_EVENT_KEYS = [("site", _str), ("subject", _str), ("recording_id", _str), ("channel", _str)]


def _registry() -> dict[str, FeatureSet]:
    from sozstore.etl.features import hfo, spikes

    # the resampling to the analysis rate is part of what these sets compute
    analysis = (Block.analysis_clips, kernels.rate_ratio, kernels.resample_core)
    sets = [
        # spectrum, bandpower, wpt, adjacency version 2: one meaning at every store rate
        # (module notes; version 1 computed on the store's samples at their own rate)
        FeatureSet("spectrum", 2, {"resolution_hz": 0.2, "fmax": 500.0,
                                   "reference_sfreq": ANALYSIS_SFREQ},
                   {"spectrum": _with(("spectrum", pa.list_(_f32)))}, _compute_spectrum,
                   modules=(kernels.log_amplitude_spectrum,)),
        FeatureSet("bandpower", 2, {"bands": {k: list(v) for k, v in kernels.BANDS.items()},
                                    "analysis_sfreq": ANALYSIS_SFREQ},
                   {"bandpower": _with(*[(c, _f32) for c in BANDPOWER_COLUMNS])},
                   _compute_bandpower, margin_s=ANALYSIS_MARGIN_S,
                   modules=(kernels.band_powers, *analysis)),
        FeatureSet("spikes", 2, {"k1": 3.65, "band": [10.0, 60.0]},
                   {"spikes": _with(("spike_count", pa.int32()), ("clear_count", pa.int32())),
                    "spike_events": _schema(*_EVENT_KEYS, ("time_s", _f64),
                                            ("amplitude", _f32), ("clear", pa.bool_()))},
                   _compute_spikes, margin_s=5.0, modules=(spikes,)),
        # version 3: relative peak criterion and threshold 3 (etl/features/hfo.py notes)
        FeatureSet("hfo", 3, {"rms_threshold_sd": 3.0, "relative_peak": 0.5},
                   {"hfo": _with(("ripple_count", pa.int32()), ("ripple_rate_per_min", _f32),
                                 ("fast_ripple_count", pa.int32()),
                                 ("fast_ripple_rate_per_min", _f32)),
                    "hfo_events": _schema(*_EVENT_KEYS, ("start_s", _f64), ("end_s", _f64),
                                          ("peak_s", _f64), ("amplitude", _f32),
                                          ("kind", _str))},
                   _compute_hfo, margin_s=1.0, modules=(hfo,)),
        FeatureSet("wpt", 2, {"wavelet": "db4", "level": 5, "analysis_sfreq": ANALYSIS_SFREQ},
                   {"wpt": _with(("log_energy", pa.list_(_f32)),
                                 ("relative_energy", pa.list_(_f32)))},
                   _compute_wpt, margin_s=ANALYSIS_MARGIN_S,
                   modules=(kernels.wavelet_packet_energies, *analysis)),
        FeatureSet("adjacency", 2, {"method": "pearson", "analysis_sfreq": ANALYSIS_SFREQ},
                   {"adjacency": _schema(("site", _str), ("subject", _str),
                                         ("recording_id", _str), ("clip_start_s", _f64),
                                         ("channel_i", _str), ("channel_j", _str),
                                         ("r", _f32))},
                   _compute_adjacency, margin_s=ANALYSIS_MARGIN_S,
                   modules=(kernels.correlation_upper, *analysis)),
    ]
    return {s.name: s for s in sets}


FEATURE_SETS: dict[str, FeatureSet] = _registry()
#: Computed by ``sozstore etl`` at its end and by ``sozstore features`` without ``--set``.
#: The spectrum (10 KB per channel and clip at 0.2 Hz) is computed on request.
DEFAULT_SETS = ("bandpower", "spikes", "hfo", "wpt", "adjacency")
TABLE_TO_SET = {table: s.name for s in FEATURE_SETS.values() for table in s.tables}


def feature_tables() -> dict[str, tuple[int, pa.Schema]]:
    """Every set's output tables with the set's current version and the table's schema.

    What the feature engine declares to the store
    (:meth:`sozstore.store.Store.declare_feature_tables`), read from :data:`FEATURE_SETS`
    when called.

    Returns
    -------
    dict of str to (int, pyarrow.Schema)
        Table name -> (version, schema).
    """
    return {table: (fs.version, schema) for fs in FEATURE_SETS.values()
            for table, schema in fs.tables.items()}
