"""Streaming inference over many NIfTI scans: reading, mapping and writing overlap.

``disyre detect`` on a folder of thousands of scans runs a three-stage pipeline::

    reader threads --(bounded queue)--> one worker per device --(bounded queue)--> writer threads

Readers decompress, reorient and normalise the next scans while the workers map the
current ones (each worker holds its own copy of the model on its own device, and takes
the next scan as soon as it is free, so faster devices take more), and writers compress
and write finished maps. The queues are bounded, so memory stays at a few scans per
device however many scans there are. torch, zlib and numpy release the GIL in their
heavy loops, so threads overlap for real.

**Resuming.** A scan whose map exists is skipped. A map is written under a temporary
name, its score is appended to ``scores.jsonl`` (one JSON line per scan), and only then
is the map renamed into place: a run killed at any moment leaves either no map, which the
next run makes, or a complete map with its score, never a half-written map that would be
skipped. Temporary files of a killed run are removed by the next one. ``scores.json``,
rewritten at the end, lists every scan of the run whose map exists, in input order.

**Errors.** A scan that cannot be read, mapped or written is reported with its name and
the reason; the others go on. The summary says how many scans were mapped, skipped and
failed.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ._files import atomic_write

MAP_SUFFIX = "_disyre_map.nii.gz"
JOURNAL_NAME = "scores.jsonl"
SCORES_NAME = "scores.json"
_PARTIAL = ".partial.nii.gz"
_DONE = object()  # end-of-stream marker in the queues
_POLL_S = 0.1  # how often blocked threads look at the stop flag


def scan_stem(path: str | os.PathLike) -> str:
    """File name without ``.nii.gz`` / ``.nii``.

    Examples
    --------
    >>> from disyre_sk._stream import scan_stem
    >>> scan_stem("data/sub-01_T2w.nii.gz")
    'sub-01_T2w'
    """
    # nibabel's own rule: the extension and a compression suffix, in any case.
    from nibabel.filename_parser import splitext_addext

    return splitext_addext(Path(path).name)[0]


def map_path(output: str | os.PathLike, scan: str | os.PathLike) -> Path:
    """Where the map of ``scan`` goes in ``output``.

    Examples
    --------
    >>> from disyre_sk._stream import map_path
    >>> map_path("maps", "scans/sub-01.nii.gz").as_posix()
    'maps/sub-01_disyre_map.nii.gz'
    """
    return Path(output) / f"{scan_stem(scan)}{MAP_SUFFIX}"


def parse_devices(devices: Iterable[str] | None) -> list[str]:
    """Expand and check ``--device`` values: comma lists, ``'all'`` (every visible GPU).

    Parameters
    ----------
    devices : iterable of str or None
        ``None`` or empty means ``['auto']``.

    Returns
    -------
    devices : list of str
        Distinct torch device strings.

    Raises
    ------
    ValueError
        For a device that is not one, a CUDA device that torch does not see, or the same
        device twice.

    Examples
    --------
    >>> from disyre_sk._stream import parse_devices
    >>> parse_devices(["cpu"])
    ['cpu']
    """
    from ._device import resolve_device

    items = [part.strip() for d in (devices or ()) for part in str(d).split(",") if part.strip()]
    if not items:
        items = ["auto"]
    expanded: list[str] = []
    for item in items:
        if item == "all":
            n = torch.cuda.device_count()
            expanded += [f"cuda:{i}" for i in range(n)] if n else ["cpu"]
            continue
        dev = resolve_device(item)
        if dev.type == "cuda":
            index = torch.cuda.current_device() if dev.index is None else dev.index
            if index >= torch.cuda.device_count():
                raise ValueError(
                    f"device {item!r}: torch sees {torch.cuda.device_count()} CUDA device(s) "
                    f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})."
                )
            dev = torch.device("cuda", index)
        expanded.append(str(dev))
    repeated = sorted({d for d in expanded if expanded.count(d) > 1})
    if repeated:
        raise ValueError(
            f"device(s) {', '.join(repeated)} given more than once; each device gets one "
            "copy of the model, so list each once."
        )
    return expanded


@dataclass
class StreamSummary:
    """What a streaming run did.

    Attributes
    ----------
    written : list of dict
        One row per map written in this run: ``scan``, ``map``, ``anomaly_score``,
        ``outlier``.
    skipped : list of str
        Scans whose map already existed.
    failed : list of (str, str)
        Scans that failed, with the reason.
    seconds : float
        Wall-clock time of the run.
    devices : list of str
        Devices that mapped scans.

    Examples
    --------
    >>> from disyre_sk._stream import StreamSummary
    >>> print(StreamSummary(seconds=1.0, devices=["cpu"]).report())
    0 scan(s): 0 mapped, 0 skipped (map already there), 0 failed; 1.0 s on cpu.
    """

    written: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    devices: list[str] = field(default_factory=list)

    def report(self) -> str:
        """A short text summary, then one line per failed scan."""
        n = len(self.written) + len(self.skipped) + len(self.failed)
        rate = f" ({len(self.written) / self.seconds:.2f} scans/s)" if self.written else ""
        lines = [
            f"{n} scan(s): {len(self.written)} mapped, {len(self.skipped)} skipped (map "
            f"already there), {len(self.failed)} failed; {self.seconds:.1f} s on "
            f"{', '.join(self.devices)}{rate}."
        ]
        lines += [f"failed: {scan}: {reason}" for scan, reason in self.failed]
        return "\n".join(lines)


class _Journal:
    """Append-only ``scores.jsonl``: one row per map, written before the map is in place."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.rows: dict[str, dict] = {}
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                try:
                    row = json.loads(line)
                    self.rows[Path(row["map"]).name] = row
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a killed run
        self.handle = open(path, "a")

    def append(self, row: dict) -> None:
        with self.lock:
            self.handle.write(json.dumps(row) + "\n")
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.rows[Path(row["map"]).name] = row

    def close(self) -> None:
        self.handle.close()


def _remove_leftovers(output: Path, names: set[str]) -> None:
    """Delete temporary files that a killed run left for these maps."""
    for entry in os.scandir(output):
        if not entry.name.startswith("."):
            continue
        bare = entry.name.lstrip(".")
        cut = bare.find(MAP_SUFFIX)
        if cut < 0 or bare[: cut + len(MAP_SUFFIX)] not in names:
            continue
        rest = bare[cut + len(MAP_SUFFIX) :]
        if rest.endswith(".tmp.nii.gz") or rest == _PARTIAL:
            Path(entry.path).unlink(missing_ok=True)


def _replica(model, device: str | None):
    """A fitted detector on ``device``: loaded from a model file, or a copy of ``model``."""
    import pickle

    from sklearn.utils.validation import check_is_fitted

    from ._combined import load_model, members_of
    from ._device import inference_precision, resolve_device

    if isinstance(model, (str, os.PathLike)):
        det = load_model(model, device=device or "auto")
    else:
        check_is_fitted(model)
        if device is None or resolve_device(device) == model.device_:
            return model
        det = pickle.loads(pickle.dumps(model))  # CPU weights in between
        dev = resolve_device(device)
        for _, single in members_of(det):
            single.network_ = single.network_.to(dev).eval()
            single.device_ = dev
            single.precision_ = inference_precision(dev, single.precision_)
    # The stream has its own progress bar: no bar per scan.
    for _, single in members_of(det):
        single.verbose = False
    return det


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event):
    while not stop.is_set():
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            continue
    return _DONE


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if isinstance(exc, (ValueError, OSError)) else f"{type(exc).__name__}: {text}"


def _distinct_names(scans: list[Path], targets: list[Path]) -> set[str]:
    """Map file names of ``targets``; raises if two scans would write the same map."""
    seen: dict[str, Path] = {}
    for scan, target in zip(scans, targets):
        if target.name in seen:
            raise ValueError(
                f"{seen[target.name]} and {scan} would both write {target.name}; give scans "
                "distinct file names (or map them into different output folders)."
            )
        seen[target.name] = scan
    return set(seen)


def _replicas(model, devices: Sequence[str] | None) -> list:
    """One fitted detector per device (``None``: the model's own device)."""
    if devices is None and isinstance(model, (str, os.PathLike)):
        devices = ["auto"]
    device_list = parse_devices(devices) if devices is not None else [None]
    return [_replica(model, d) for d in device_list]


def _volume_shape(detector) -> tuple[int, ...]:
    """The ``(Z, Y, X)`` shape ``detector`` maps; raises unless it was trained on volumes."""
    from ._combined import layout_of

    shape = tuple(detector.image_shape_)
    kind = layout_of(detector).kind
    if len(shape) != 3 or kind != "volumes":
        raise ValueError(
            f"the model was trained on {kind} of shape {shape}; mapping "
            "NIfTI scans needs a model trained on 3-D volumes (n, Z, Y, X)."
        )
    return shape


def _write_scores(out: Path, targets: list[Path], rows: dict[str, dict]) -> None:
    """``scores.json``: the journal row of every target whose map exists, in input order."""
    kept = [rows[t.name] for t in targets if t.name in rows and t.exists()]
    text = json.dumps(kept, indent=2).encode()
    atomic_write(out / SCORES_NAME, lambda handle: handle.write(text))


class _Pipeline:
    """The three stages of one streaming run and the state they share.

    Parameters
    ----------
    scans : list of Path
        Every scan of the run, in input order.
    targets : list of Path
        Map path of each scan.
    todo : list of int
        Indices of the scans to map.
    out : Path
        Output folder (it exists).
    shape : tuple of int
        ``(Z, Y, X)`` shape the model maps.
    crop : bool
        Centre-crop/pad scans of another shape instead of failing them.
    overlay : callable or None
        ``overlay(volume, map, png_path)``, called under a lock.
    offset : float
        The detector's ``offset_``: a score above ``-offset`` is an outlier.
    prefetch : int
        Scans waiting per worker in each queue.
    n_workers : int
        Number of workers (devices).
    verbose : bool
        Show a progress bar.

    Attributes
    ----------
    written : dict of int to dict
        Journal row of each scan mapped, by scan index.
    failed : dict of int to str
        Reason of each scan that failed, by scan index.
    journal : _Journal
        ``scores.jsonl``, closed when :meth:`run` returns.
    """

    def __init__(
        self,
        scans: list[Path],
        targets: list[Path],
        todo: list[int],
        out: Path,
        *,
        shape: tuple[int, ...],
        crop: bool,
        overlay: Callable | None,
        offset: float,
        prefetch: int,
        n_workers: int,
        verbose: bool,
    ):
        from tqdm.auto import tqdm

        self.scans = scans
        self.targets = targets
        self.out = out
        self.shape = shape
        self.crop = crop
        self.overlay = overlay
        self.offset = offset
        self.journal = _Journal(out / JOURNAL_NAME)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.written: dict[int, dict] = {}
        self.failed: dict[int, str] = {}
        self.fatal: list[BaseException] = []
        self.bar = tqdm(total=len(todo), desc="disyre detect", unit="scan", disable=not verbose)
        self.tasks: queue.Queue = queue.Queue()
        for i in todo:
            self.tasks.put(i)
        self.to_map: queue.Queue = queue.Queue(maxsize=prefetch * n_workers)
        self.to_write: queue.Queue = queue.Queue(maxsize=prefetch * n_workers)
        self.overlay_lock = threading.Lock()  # matplotlib's pyplot is not thread-safe

    def fail(self, i: int, exc: BaseException) -> None:
        """Record that scan ``i`` failed, with the reason."""
        with self.lock:
            self.failed[i] = _reason(exc)
            self.bar.update(1)

    def read(self) -> None:
        """Reader stage: read, normalise and crop/pad scans until none is left."""
        from .io import center_crop_or_pad, load_nifti, normalize_intensity

        while not self.stop.is_set():
            try:
                i = self.tasks.get_nowait()
            except queue.Empty:
                return
            try:
                volume = normalize_intensity(load_nifti(self.scans[i]))
                record = None
                if volume.shape != self.shape:
                    if not self.crop:
                        raise ValueError(
                            f"shape {volume.shape} (Z, Y, X) differs from the model's "
                            f"{self.shape}; register the scan to the training grid, or pass "
                            "--crop to centre-crop/pad it"
                        )
                    volume, record = center_crop_or_pad(volume, self.shape)
            except Exception as exc:  # one bad scan must not stop the others
                self.fail(i, exc)
                continue
            if not _put(self.to_map, (i, volume, record), self.stop):
                return

    def map(self, det) -> None:
        """Worker stage, one per device: map and score scans until the end marker."""
        from ._detector import map_and_score

        if det.device_.type == "cuda":
            torch.cuda.set_device(det.device_)
        while True:
            item = _get(self.to_map, self.stop)
            if item is _DONE:
                return
            i, volume, record = item
            try:
                maps, scores = map_and_score(det, volume[None])
            except Exception as exc:
                self.fail(i, exc)
                continue
            keep = volume if self.overlay is not None else None
            if not _put(self.to_write, (i, keep, record, maps[0], float(-scores[0])), self.stop):
                return

    def write(self) -> None:
        """Writer stage: save each map atomically (overlay, journal row, then rename)."""
        from .io import save_map

        while True:
            item = _get(self.to_write, self.stop)
            if item is _DONE:
                return
            i, volume, record, anomaly_map, score = item
            scan, target = self.scans[i], self.targets[i]
            partial = target.with_name(f".{target.name}{_PARTIAL}")
            try:
                save_map(anomaly_map, scan, partial, crop_record=record)
                if self.overlay is not None:
                    with self.overlay_lock:
                        png = self.out / f"{scan_stem(scan)}_overlay.png"
                        self.overlay(volume, anomaly_map, png)
                row = {
                    "scan": str(scan),
                    "map": str(target),
                    "anomaly_score": score,
                    "outlier": bool(score > -self.offset),
                }
                self.journal.append(row)
                os.replace(partial, target)
            except Exception as exc:
                partial.unlink(missing_ok=True)
                self.fail(i, exc)
                continue
            with self.lock:
                self.written[i] = row
                self.bar.update(1)

    def _guarded(self, fn: Callable, *args) -> None:
        # Per-scan errors are caught inside; anything else stops every stage (a stage
        # that died silently would leave the others blocked on its queue).
        try:
            fn(*args)
        except BaseException as exc:
            self.fatal.append(exc)
            self.stop.set()

    def _start(self, fn: Callable, *args) -> threading.Thread:
        thread = threading.Thread(target=self._guarded, args=(fn, *args), daemon=True)
        thread.start()
        return thread

    @staticmethod
    def _wait(threads: list[threading.Thread]) -> None:
        for thread in threads:
            while thread.is_alive():
                thread.join(_POLL_S)

    def run(self, detectors: list, readers: int, writers: int) -> None:
        """Run the stages to the end, then close the progress bar and the journal.

        Parameters
        ----------
        detectors : list of DISYREDetector
            One per worker, each on its own device.
        readers, writers : int
            Reader and writer threads.

        Raises
        ------
        BaseException
            The first error that stopped a stage (not a per-scan one), or Ctrl-C; every
            thread has stopped by then.
        """
        stages = [
            [self._start(self.read) for _ in range(readers)],
            [self._start(self.map, det) for det in detectors],
            [self._start(self.write) for _ in range(writers)],
        ]
        try:
            # Close the stages in order: when every reader is done, each worker gets an end
            # marker; when every worker is done, each writer does.
            self._wait(stages[0])
            for _ in stages[1]:
                _put(self.to_map, _DONE, self.stop)
            self._wait(stages[1])
            for _ in stages[2]:
                _put(self.to_write, _DONE, self.stop)
            self._wait(stages[2])
            if self.fatal:
                raise self.fatal[0]
        except BaseException:
            # Ctrl-C: each thread finishes the scan in hand (maps are atomic), then stops.
            self.stop.set()
            self._wait([t for stage in stages for t in stage])
            raise
        finally:
            self.bar.close()
            self.journal.close()


def stream_detect(
    model,
    scans: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    devices: Sequence[str] | None = None,
    crop: bool = False,
    overwrite: bool = False,
    overlay: Callable | None = None,
    prefetch: int = 2,
    readers: int = 1,
    writers: int = 1,
    verbose: bool = False,
) -> StreamSummary:
    """Map many NIfTI scans with reading, mapping and writing overlapped.

    Each map is written as ``<stem>_disyre_map.nii.gz`` on its scan's grid (see
    :func:`disyre_sk.io.save_map`); scores go to ``scores.jsonl`` as they come and to
    ``scores.json`` at the end. Scans are read with :func:`disyre_sk.io.load_nifti` and
    normalised with :func:`disyre_sk.io.normalize_intensity`, as ``disyre detect`` does.

    Parameters
    ----------
    model : str, path-like, DISYREDetector or CombinedDetector
        A model file written by either estimator's ``save`` (loaded once per device), or
        a fitted detector (copied to each device it is not on).
    scans : sequence of path-like
        NIfTI files; their names (without ``.nii.gz``) must be distinct.
    output : path-like
        Output folder, created if needed.
    devices : sequence of str, optional
        One model copy and one worker per device (``'cuda:0'``, ``'cuda:1'``, ``'cpu'``,
        ``'all'`` for every visible GPU); scans are dealt to whichever worker is free.
        ``None``: the detector's own device, or ``'auto'`` for a model file.
    crop : bool, default=False
        Centre-crop/pad scans whose shape differs from the model's; otherwise such a scan
        fails with an explanation.
    overwrite : bool, default=False
        Remake maps that exist; otherwise they are skipped.
    overlay : callable, optional
        ``overlay(volume, map, png_path)`` writes a picture of each map (before the map
        is renamed into place, so a map never lacks its picture).
    prefetch : int, default=2
        Scans waiting per device in each queue.
    readers, writers : int, default=1
        Reader and writer threads (more help with many devices and fast disks).
    verbose : bool, default=False
        Show a progress bar.

    Returns
    -------
    summary : StreamSummary
        Maps written, scans skipped, failures with their reasons.

    Raises
    ------
    ValueError
        Before any scan is processed: two scans with the same name, a bad device, an
        unreadable model file, or a model not trained on 3-D volumes.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, nibabel as nib
    >>> from disyre_sk import DISYREDetector
    >>> from disyre_sk._stream import stream_detect
    >>> rng = np.random.default_rng(0)
    >>> vols = rng.uniform(0.2, 1.0, size=(3, 4, 16, 16)).astype(np.float32)
    >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
    ...                      device="cpu", random_state=0).fit(vols)
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> paths = []
    >>> for i, v in enumerate(vols):
    ...     paths.append(folder / f"s{i}.nii.gz")
    ...     nib.save(nib.Nifti1Image(v.transpose(2, 1, 0), np.eye(4)), paths[-1])
    >>> summary = stream_detect(det, paths, folder / "maps")
    >>> len(summary.written), len(stream_detect(det, paths, folder / "maps").skipped)
    (3, 3)
    """
    start_time = time.perf_counter()
    scans = [Path(s) for s in scans]
    out = Path(output)
    targets = [map_path(out, s) for s in scans]
    names = _distinct_names(scans, targets)
    if int(prefetch) < 1 or int(readers) < 1 or int(writers) < 1:
        raise ValueError(
            f"prefetch, readers and writers must be at least 1, got {prefetch}, {readers}, "
            f"{writers}."
        )
    detectors = _replicas(model, devices)
    shape = _volume_shape(detectors[0])
    offset = float(detectors[0].offset_)
    out.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out, names)

    summary = StreamSummary(devices=[str(d.device_) for d in detectors])
    todo = []
    for i, target in enumerate(targets):
        if target.exists() and not overwrite:
            summary.skipped.append(str(scans[i]))
        else:
            todo.append(i)

    pipeline = _Pipeline(
        scans,
        targets,
        todo,
        out,
        shape=shape,
        crop=crop,
        overlay=overlay,
        offset=offset,
        prefetch=prefetch,
        n_workers=len(detectors),
        verbose=verbose,
    )
    pipeline.run(detectors, readers, writers)

    summary.written = [pipeline.written[i] for i in sorted(pipeline.written)]
    summary.failed = [(str(scans[i]), pipeline.failed[i]) for i in sorted(pipeline.failed)]
    _write_scores(out, targets, pipeline.journal.rows)
    summary.seconds = time.perf_counter() - start_time
    return summary
