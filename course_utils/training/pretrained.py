"""Pretrained weights: save, ship and load an embedding network safely.

Weights are stored as safetensors (plain numbers, no pickle: opening a file never runs code). A JSON
sidecar beside each file records its sha256 and size (checked on every load: a tampered or truncated
file is refused), the network's constructor arguments, the command that trained it and its measured
held-out metrics. ``load_pretrained()`` loads the network the course ships (course_utils/weights).
"""
from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from course_utils.training.models import EmbeddingNet

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "faces_embedding.safetensors"
SIDECAR_FORMAT = "course_utils.pretrained/1"
_ARGUMENTS = ("in_channels", "embedding_dim", "normalize", "backbone", "width")


class PretrainedError(ValueError):
    """A weights file or its sidecar is missing, damaged, tampered with or does not fit the network."""


class Pretrained(NamedTuple):
    """model: the network in evaluation mode; info: the sidecar (command, metrics, sha256...)."""

    model: EmbeddingNet
    info: dict


def sidecar_path(weights_path: str | Path) -> Path:
    """The JSON sidecar of a weights file: the same name with the suffix .json."""
    return Path(weights_path).with_suffix(".json")


def save_weights(model: EmbeddingNet, path: str | Path, metadata: dict) -> Path:
    """Write the model's weights to ``path`` (.safetensors) and a JSON sidecar with checksum and metadata.

    Args:
        metadata: JSON facts to record, e.g. {"command": ..., "metrics": {...}}; the sidecar's "metadata".
    Returns:
        the sidecar's path.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"path must end in .safetensors, got {path}.")
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict of JSON values, got {type(metadata).__name__}.")
    if not isinstance(model, EmbeddingNet):
        raise TypeError(f"model must be a course_utils.training.models.EmbeddingNet, got {type(model).__name__}.")
    arguments = {name: getattr(model, "backbone_name" if name == "backbone" else name) for name in _ARGUMENTS}
    # safetensors refuses tensors that share memory or are not contiguous; copies are neither.
    content = save_safetensors_bytes({name: value.detach().cpu().contiguous().clone()
                                      for name, value in model.state_dict().items()})
    sidecar = {"format": SIDECAR_FORMAT, "weights_file": path.name, "sha256": hashlib.sha256(content).hexdigest(),
               "bytes": len(content), "model": arguments, "metadata": metadata}
    text = json.dumps(sidecar, indent=2) + "\n"  # fails before anything is written if metadata is not JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    sidecar_path(path).write_text(text)
    return sidecar_path(path)


def export_checkpoint(checkpoint_path: str | Path, out_path: str | Path, arguments: dict, command: str,
                      metrics: dict) -> Path:
    """Turn a training checkpoint of ``course_utils.training.cli`` into shippable safetensors; returns the sidecar.

    Args:
        arguments: EmbeddingNet constructor arguments matching the run's flags, e.g. {"embedding_dim": 64}.
        command: the exact command line that trained the network.
        metrics: held-out metrics measured for these weights (the run's metrics.json).
    """
    state = load_torch_checkpoint(checkpoint_path)
    if not isinstance(state, dict) or "model" not in state:
        raise PretrainedError(f"{checkpoint_path} is not a course_utils training checkpoint (no 'model' entry).")
    model = EmbeddingNet(**arguments)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise PretrainedError(f"{checkpoint_path} does not fit EmbeddingNet(**{arguments}): {error}") from error
    return save_weights(model, out_path, {"command": command, "metrics": metrics, "epochs": state.get("epoch")})


def _read_sidecar(path: Path) -> dict:
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise PretrainedError(
            f"{sidecar} is missing: the sidecar records the checksum and architecture of {path.name}, "
            "and weights without it are not loaded. Restore it next to the weights file."
        )
    try:
        info = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PretrainedError(f"{sidecar} is not valid JSON ({error}); restore the original sidecar.") from error
    missing = [key for key in ("format", "sha256", "bytes", "model") if key not in info]
    if missing or info["format"] != SIDECAR_FORMAT:
        raise PretrainedError(
            f"{sidecar} is not a course_utils weights sidecar (format {info.get('format')!r}"
            f"{', missing ' + ', '.join(missing) if missing else ''})."
        )
    return info


def load_pretrained(path: str | Path = DEFAULT_WEIGHTS, device: torch.device | str = "cpu") -> Pretrained:
    """Load safetensors weights (by default the course's network) after checking them against their sidecar.

    Returns:
        Pretrained(model, info): the EmbeddingNet in evaluation mode and the sidecar dict
        (info["metadata"] holds the training command and the measured metrics).
    Raises:
        FileNotFoundError: there is no weights file at path.
        PretrainedError: the sidecar is missing or invalid, the file's size or sha256 differs from the
            sidecar (truncated or tampered), or the weights do not fit the recorded architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}; check the path (the shipped file is {DEFAULT_WEIGHTS}).")
    info = _read_sidecar(path)
    content = path.read_bytes()  # checked and loaded from these same bytes: nothing can change in between
    restore = "Restore the original file (for example git checkout -- the file)."
    if len(content) != info["bytes"]:
        raise PretrainedError(f"{path} is {len(content)} bytes but its sidecar records {info['bytes']}: the file "
                              f"is truncated or was replaced. {restore}")
    digest = hashlib.sha256(content).hexdigest()
    if digest != info["sha256"]:
        raise PretrainedError(f"{path} has sha256 {digest} but its sidecar records {info['sha256']}: the file was "
                              f"modified or corrupted, so it is refused. {restore}")
    try:
        tensors = load_safetensors_bytes(content)
    except SafetensorError as error:
        raise PretrainedError(f"{path} cannot be read as safetensors ({error}).") from error
    try:
        model = EmbeddingNet(**info["model"])
        model.load_state_dict(tensors)
    except (TypeError, ValueError, RuntimeError) as error:
        raise PretrainedError(f"{path} does not match the architecture recorded in {sidecar_path(path).name} "
                              f"({info['model']}): {error}") from error
    return Pretrained(model.to(device).eval(), info)


def load_torch_checkpoint(path: str | Path) -> object:
    """What a ``.pt`` file holds (typically a state_dict), on the CPU, read with ``torch.load(weights_only=True)``.

    A full pickle can run any code while it is opened, so a file holding Python objects other
    than tensors, numbers, strings, lists and dicts is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}; check the path.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "unsupported object"
        raise PretrainedError(
            f"{path} holds pickled Python objects that weights_only loading refuses ({reason}). Opening it "
            "with weights_only=False could run arbitrary code: do so only for a file you fully trust, or ask "
            "for the weights as a state_dict or safetensors."
        ) from error
    except (RuntimeError, EOFError, OSError) as error:
        raise PretrainedError(f"{path} cannot be read as a torch file ({error}); it is probably truncated "
                              "or corrupt.") from error
