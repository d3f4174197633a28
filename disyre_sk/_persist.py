"""Safe, versioned model files: JSON metadata plus tensors, loaded without unpickling.

A model file is a ``torch.save`` archive holding only strings and tensors, read back
with ``torch.load(weights_only=True)``, which refuses arbitrary Python objects. Pickle
and joblib files of a detector, by contrast, run code when loaded.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ._version import __version__

FORMAT_NAME = "disyre_sk.model"
FORMAT_VERSION = 1

# Learned attributes stored as JSON, beside the network's weights.
_STATE_ATTRIBUTES = (
    "image_shape_",
    "n_features_in_",
    "intensity_range_",
    "offset_",
    "precision_",
    "history_",
    "residual_profile_",
)
# Learned attributes added after the first files were written, with their value then.
_STATE_DEFAULTS = {"residual_profile_": None}


def _jsonable(value):
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, os.PathLike):  # checkpoint_dir=Path(...): stored as its string
        return os.fspath(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _tuple_if_list(value):
    return tuple(value) if isinstance(value, list) else value


def save_detector(detector, path) -> Path:
    """Write a fitted detector to ``path`` atomically; see ``DISYREDetector.save``."""
    params = detector.get_params()
    corruption = params["corruption"]
    if not isinstance(corruption, str):
        params["corruption"] = {"class": type(corruption).__name__, "repr": repr(corruption)}
    params = {k: _jsonable(v) for k, v in params.items()}
    if not isinstance(params["random_state"], (int, type(None))):
        params["random_state"] = None
    state = {
        name: _jsonable(getattr(detector, name, _STATE_DEFAULTS.get(name)))
        for name in _STATE_ATTRIBUTES
    }
    state["layout_kind"] = detector._layout.kind
    state["device_"] = str(detector.device_)
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "torch_version": str(torch.__version__),
        "params": json.dumps(params),
        "state": json.dumps(state),
        "network_config": json.dumps(detector.network_.config),
        "state_dict": {
            k: v.detach().cpu().contiguous() for k, v in detector.network_.state_dict().items()
        },
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target, then rename: a crash never leaves a half-written model.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_model_file(path) -> dict:
    """Read and check a model file without unpickling anything."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {str(path)!r}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"{str(path)!r} is not a disyre_sk model file readable without unpickling "
            f"({type(exc).__name__}: {exc}). Pickle or joblib files must be opened with "
            "joblib.load, and only if they come from a trusted source."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise ValueError(f"{str(path)!r} is not a disyre_sk model file.")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has model format version {version}, written by disyre_sk "
            f"{payload.get('package_version')}; this disyre_sk {__version__} reads versions "
            f"up to {FORMAT_VERSION}. Upgrade disyre_sk to load it."
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


def load_detector(cls, path, device="auto"):
    """Rebuild a fitted detector from a model file; see ``DISYREDetector.load``."""
    from . import _data
    from ._detector import resolve_device
    from .nn import UNet

    payload = read_model_file(path)
    params = json.loads(payload["params"])
    if isinstance(params.get("corruption"), dict):
        warnings.warn(
            f"the model was trained with a custom corruption ({params['corruption']['repr']}); "
            "it is not stored in the file, so the loaded detector's corruption parameter "
            "is 'dag'. This only matters if you fit it again.",
            UserWarning,
            stacklevel=3,
        )
        params["corruption"] = "dag"
    params = {k: _tuple_if_list(v) for k, v in params.items()}
    params["device"] = device
    detector = cls(**params)
    state = json.loads(payload["state"])
    network = UNet(**json.loads(payload["network_config"]))
    network.load_state_dict(payload["state_dict"])
    dev = resolve_device(device)
    detector.device_ = dev
    detector.network_ = network.to(dev).eval()
    detector._layout = _data.Layout(state["layout_kind"], tuple(state["image_shape_"]))
    for name in _STATE_ATTRIBUTES:
        value = state.get(name, _STATE_DEFAULTS[name]) if name in _STATE_DEFAULTS else state[name]
        setattr(detector, name, _tuple_if_list(value))
    if dev.type != "cuda" and detector.precision_ == "bf16":
        detector.precision_ = "fp32"
    return detector
