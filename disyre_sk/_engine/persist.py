"""Safe, versioned, checksummed model files: JSON metadata plus tensors, no unpickling.

A model file is a ``torch.save`` archive holding only strings and tensors, read back
with ``torch.load(weights_only=True)``, which refuses arbitrary Python objects. Pickle
and joblib files of a detector, by contrast, run code when loaded.

Format 2 adds a SHA-256 of every entry (each tensor of the network on its own), checked
on load before anything in the file is used; a flipped bit, a truncated copy or an
edited field is refused with an error that names the file. The architecture that the
metadata describes is compared with the stored weights' shapes on PyTorch's ``meta``
device, so a crafted description allocates nothing. Format 1 files (no checksums) still
load, with a warning.
"""

from __future__ import annotations

import inspect
import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import _data
from .._device import inference_precision, resolve_device
from .._files import digest, jsonable
from .._version import __version__
from ..corruption import DAGCorruption, FPICorruption, GaussianCorruption, IntensityBiasCorruption
from ..nn import UNet

FORMAT_NAME = "disyre_sk.model"
# A CombinedDetector's file: its members' payloads, each as a single model file holds it.
COMBINED_FORMAT_NAME = "disyre_sk.combined"
# Version 3 adds the healthy reference maps of map_standardization='location'; files
# without them are still written as version 2, so older readers open them.
FORMAT_VERSION = 3
_PLAIN_VERSION = 2
_REFERENCE_VERSION = 3
_REFERENCE = "reference_maps"

# Learned attributes stored as JSON, beside the network's weights.
_STATE_ATTRIBUTES = (
    "image_shape_",
    "n_features_in_",
    "intensity_range_",
    "offset_",
    "precision_",
    "history_",
    "residual_profile_",
    "symmetry_reference_",
)
# Learned attributes added after the first files were written, with their value then.
_STATE_DEFAULTS = {"residual_profile_": None, "symmetry_reference_": None}
_LAYOUT_KINDS = ("table", "slices", "volumes")
# Corruptions whose constructor arguments are plain values: stored and rebuilt on load.
_STORED_CORRUPTIONS = (DAGCorruption, FPICorruption, GaussianCorruption, IntensityBiasCorruption)
_ENTRIES = (
    "format",
    "format_version",
    "package_version",
    "torch_version",
    "params",
    "state",
    "network_config",
    "state_dict",
)


class ModelFileError(ValueError):
    """A model file that cannot be trusted or understood; the message says which and why."""


def _checksums(payload: dict) -> dict:
    sums = {k: digest(payload[k]) for k in _ENTRIES if k != "state_dict"}
    sums.update({f"state_dict/{k}": digest(v) for k, v in payload["state_dict"].items()})
    for k, v in payload.get(_REFERENCE, {}).items():
        sums[f"{_REFERENCE}/{k}"] = digest(v)
    return sums


def detector_payload(detector, *, layout_kind: str, offset_settings) -> dict:
    """What a model file holds for one fitted detector (strings and tensors), checksummed."""
    params = detector.get_params()
    params["callbacks"] = None  # fit-time observers, not part of the model
    corruption = params["corruption"]
    if not isinstance(corruption, str):
        params["corruption"] = {"class": type(corruption).__name__, "repr": repr(corruption)}
        if type(corruption) in _STORED_CORRUPTIONS:
            # The package's own corruptions are their constructor arguments: stored as
            # JSON and rebuilt on load, so a loaded model can be fitted again as it was.
            names = inspect.signature(type(corruption).__init__).parameters
            params["corruption"]["params"] = {
                n: jsonable(getattr(corruption, n)) for n in names if n != "self"
            }
    params = {k: jsonable(v) for k, v in params.items()}
    if not isinstance(params["random_state"], (int, type(None))):
        params["random_state"] = None
    state = {
        name: jsonable(getattr(detector, name, _STATE_DEFAULTS.get(name)))
        for name in _STATE_ATTRIBUTES
    }
    state["layout_kind"] = layout_kind
    state["device_"] = str(detector.device_)
    # The settings offset_ was computed with: a loaded model still warns when they change.
    state["offset_settings"] = jsonable(offset_settings)
    payload = {
        "format": FORMAT_NAME,
        "format_version": _PLAIN_VERSION,
        "package_version": __version__,
        "torch_version": str(torch.__version__),
        "params": json.dumps(params),
        "state": json.dumps(state),
        "network_config": json.dumps(detector.network_.config),
        "state_dict": {
            k: v.detach().cpu().contiguous() for k, v in detector.network_.state_dict().items()
        },
    }
    mean = getattr(detector, "location_mean_", None)
    if mean is not None:
        payload["format_version"] = _REFERENCE_VERSION
        payload[_REFERENCE] = {
            "mean": torch.from_numpy(np.ascontiguousarray(mean, dtype=np.float32)),
            "scale": torch.from_numpy(
                np.ascontiguousarray(detector.location_scale_, dtype=np.float32)
            ),
        }
    payload["checksums"] = json.dumps(_checksums(payload))
    return payload


def _fail(path, problem: str, advice: str) -> ModelFileError:
    return ModelFileError(f"{str(path)!r}: {problem}. {advice}")


_DAMAGED = (
    "The file is damaged (an incomplete copy or download, a disk error) or was edited "
    "after it was written: get a fresh copy, or save the model again"
)


def load_archive(path):
    """The object a model file holds, read without unpickling (not yet checked)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {str(path)!r}.")
    if path.stat().st_size == 0:
        raise _fail(path, "the model file is empty", _DAMAGED)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise _fail(
            path,
            "is not a disyre_sk model file readable without unpickling, or it is "
            f"truncated or damaged ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
            "Pickle or joblib files must be opened with joblib.load, and only if they come "
            "from a trusted source; a damaged model file must be copied or saved again",
        ) from exc


def checked_version(path, payload: dict, newest: int, kind: str) -> int:
    """The payload's format version: a positive int no newer than ``newest``."""
    version = payload.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _fail(path, f"has an invalid format version {version!r}", _DAMAGED)
    if version > newest:
        raise _fail(
            path,
            f"has {kind} format version {version}, written by disyre_sk "
            f"{payload.get('package_version')}; this disyre_sk {__version__} reads versions "
            f"up to {newest}",
            "Upgrade disyre_sk to load it",
        )
    return version


def read_model_file(path) -> dict:
    """Read a model file without unpickling and verify its checksums; return its payload."""
    return check_payload(path, load_archive(path))


def check_payload(path, payload) -> dict:
    """Verify one detector's payload (``path`` names it in errors); return it."""
    if isinstance(payload, dict) and payload.get("format") == COMBINED_FORMAT_NAME:
        raise _fail(
            path,
            "holds a CombinedDetector (several networks), not a single DISYREDetector",
            "Load it with disyre_sk.CombinedDetector.load",
        )
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise _fail(path, "is not a disyre_sk model file", "Save one with DISYREDetector.save")
    version = checked_version(path, payload, FORMAT_VERSION, "model")
    expected = set(_ENTRIES) | ({"checksums"} if version >= 2 else set())
    if version >= _REFERENCE_VERSION and _REFERENCE in payload:
        expected.add(_REFERENCE)
    if set(payload) != expected:
        extra, missing = sorted(set(payload) - expected), sorted(expected - set(payload))
        raise _fail(path, f"has unexpected entries {extra} and lacks {missing}", _DAMAGED)
    if not isinstance(payload["state_dict"], dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload["state_dict"].items()
    ):
        raise _fail(path, "holds network weights that are not named tensors", _DAMAGED)
    maps = payload.get(_REFERENCE)
    if maps is not None and not (
        isinstance(maps, dict)
        and set(maps) == {"mean", "scale"}
        and all(isinstance(v, torch.Tensor) for v in maps.values())
    ):
        raise _fail(path, "holds reference maps that are not two named tensors", _DAMAGED)
    if version >= 2:
        _verify(path, payload)
    else:
        warnings.warn(
            f"{str(path)!r} is a format 1 model file: it carries no checksum, so damage "
            "to it cannot be detected. Load it, check its maps, and save it again to add "
            "one.",
            UserWarning,
            stacklevel=3,
        )
    if payload.get("package_version") != __version__:
        warnings.warn(
            f"{str(path)!r} was written by disyre_sk {payload.get('package_version')} "
            f"(torch {payload.get('torch_version')}); this is disyre_sk {__version__} "
            f"(torch {torch.__version__}). The format is compatible; results may differ "
            "slightly if inference code changed.",
            UserWarning,
            stacklevel=3,
        )
    return payload


def _verify(path, payload: dict) -> None:
    try:
        stored = json.loads(payload["checksums"])
    except (TypeError, ValueError):
        stored = None
    if not isinstance(stored, dict):
        raise _fail(path, "has a malformed checksum table", _DAMAGED)
    actual = _checksums(payload)
    if set(stored) != set(actual):
        raise _fail(path, "lists other entries in its checksum table than it holds", _DAMAGED)
    bad = sorted(k for k in actual if stored[k] != actual[k])
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise _fail(path, f"fails its SHA-256 check in {shown}", _DAMAGED)


def _json_entry(path, payload: dict, key: str) -> dict:
    try:
        value = json.loads(payload[key])
    except (TypeError, ValueError) as exc:
        raise _fail(path, f"has malformed {key} ({exc})", _DAMAGED) from exc
    if not isinstance(value, dict):
        raise _fail(path, f"has malformed {key} (not a JSON object)", _DAMAGED)
    return value


def _tuple_if_list(value):
    return tuple(value) if isinstance(value, list) else value


def _detector_from_params(cls, path, params: dict, device, check_params):
    known = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise _fail(
            path,
            f"sets parameters this disyre_sk {__version__} does not have: {unknown}",
            "It was written by a newer version: upgrade disyre_sk to load it",
        )
    stored = params.get("corruption")
    if isinstance(stored, dict) and isinstance(stored.get("params"), dict):
        params["corruption"] = _corruption(path, stored)
    elif isinstance(stored, dict):
        warnings.warn(
            f"the model was trained with a custom corruption ({params['corruption'].get('repr')}); "
            "it is not stored in the file, so the loaded detector's corruption parameter "
            "is 'dag'. This only matters if you fit it again.",
            UserWarning,
            stacklevel=4,
        )
        params["corruption"] = "dag"
    params = {k: _tuple_if_list(v) for k, v in params.items()}
    params["device"] = device
    detector = cls(**params)
    try:
        check_params(detector)
    except (TypeError, ValueError) as exc:
        raise _fail(path, f"holds invalid parameters: {exc}", _DAMAGED) from exc
    return detector


def _corruption(path, stored: dict):
    """A package corruption rebuilt from its stored class name and arguments."""
    classes = {c.__name__: c for c in _STORED_CORRUPTIONS}
    cls = classes.get(stored.get("class"))
    if cls is None:
        raise _fail(
            path,
            f"names a corruption class {stored.get('class')!r} this disyre_sk {__version__} "
            "cannot rebuild",
            "It was written by a newer version: upgrade disyre_sk to load it",
        )
    try:
        return cls(**{k: _tuple_if_list(v) for k, v in stored["params"].items()})
    except (TypeError, ValueError) as exc:
        raise _fail(path, f"holds an invalid corruption ({exc})", _DAMAGED) from exc


def _network(path, config: dict, weights: dict):
    """The UNet the file describes, checked against the weights before allocation."""
    known = set(inspect.signature(UNet.__init__).parameters) - {"self"}
    if not isinstance(config, dict):
        raise _fail(path, "describes no network settings", _DAMAGED)
    if set(config) - known:
        raise _fail(
            path,
            f"describes a network with settings this disyre_sk {__version__} does not have "
            f"({sorted(set(config) - known)})",
            "It was written by a newer version: upgrade disyre_sk to load it",
        )
    # Files written before the severity conditioning became a setting hold the additive
    # blocks of the published network.
    config = {"conditioning": "add", **config}
    # A crafted description could ask for millions of layers: a real one has fewer
    # levels and blocks than the file has weight tensors.
    sizes = [config.get("widths", ()), [0] * int(config.get("n_res_blocks", 0) or 0)]
    if any(not isinstance(s, (list, tuple)) or len(s) > len(weights) for s in sizes):
        raise _fail(path, "describes a network larger than its weights", _DAMAGED)
    try:
        with torch.device("meta"):
            skeleton = UNet(**config)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise _fail(path, f"describes an invalid network ({exc})", _DAMAGED) from exc
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in weights.items()}
    if expected != got:
        diff = sorted(set(expected) ^ set(got)) or [k for k in expected if expected[k] != got[k]]
        raise _fail(
            path,
            f"holds weights that do not fit the network it describes (first differences: "
            f"{diff[:3]})",
            _DAMAGED,
        )
    network = UNet(**config)
    network.load_state_dict(weights)
    return network


def _state(path, payload: dict) -> dict:
    state = _json_entry(path, payload, "state")
    required = [n for n in _STATE_ATTRIBUTES if n not in _STATE_DEFAULTS] + ["layout_kind"]
    missing = [n for n in required if n not in state]
    if missing:
        raise _fail(path, f"lacks the learned state {missing}", _DAMAGED)
    shape = state["image_shape_"]
    ok = (
        isinstance(shape, list)
        and len(shape) in (2, 3)
        and all(isinstance(s, int) and s > 0 for s in shape)
        and state["layout_kind"] in _LAYOUT_KINDS
        and isinstance(state["offset_"], (int, float))
        and math.isfinite(state["offset_"])
        and state["precision_"] in ("fp32", "bf16")
    )
    if not ok:
        raise _fail(path, "holds invalid learned state", _DAMAGED)
    return state


def load_detector(cls, path, device="auto", *, check_params=lambda detector: None, payload=None):
    """Rebuild a fitted detector from a model file; see ``DISYREDetector.load``.

    ``check_params(detector)`` validates the stored parameters (raising ``TypeError``
    or ``ValueError``). Returns the detector with its public fitted attributes set, and
    its private state (``layout``, ``offset_settings``) as a dict for the estimator to
    take back. ``payload``: an already verified payload (a combined file's member),
    which ``path`` then only names in errors.
    """
    if payload is None:
        payload = read_model_file(path)
    params = _json_entry(path, payload, "params")
    detector = _detector_from_params(cls, path, params, device, check_params)
    state = _state(path, payload)
    network = _network(path, _json_entry(path, payload, "network_config"), payload["state_dict"])
    dev = resolve_device(device)
    detector.device_ = dev
    detector.network_ = network.to(dev).eval()
    private = {
        "layout": _data.Layout(state["layout_kind"], tuple(state["image_shape_"])),
        "offset_settings": state.get("offset_settings"),
    }
    for name in _STATE_ATTRIBUTES:
        value = state.get(name, _STATE_DEFAULTS[name]) if name in _STATE_DEFAULTS else state[name]
        setattr(detector, name, _tuple_if_list(value))
    detector.location_mean_, detector.location_scale_ = _reference(path, payload, state)
    detector.precision_ = inference_precision(dev, detector.precision_)
    return detector, private


def _reference(path, payload: dict, state: dict):
    """The healthy reference maps, checked against the image shape; ``(None, None)``."""
    maps = payload.get(_REFERENCE)
    if maps is None:
        return None, None
    mean, scale = (maps[k].to(torch.float32).numpy() for k in ("mean", "scale"))
    shape = tuple(state["image_shape_"])
    ok = (
        mean.shape == shape
        and scale.shape == shape
        and np.isfinite(mean).all()
        and np.isfinite(scale).all()
        and (scale > 0).all()
    )
    if not ok:
        raise _fail(path, "holds invalid reference maps", _DAMAGED)
    return mean, scale
