"""Pretrained weights: save, ship and load an embedding network safely.

Weights are stored as safetensors: plain numbers, no pickle, so opening a file can never
run code. Beside each weights file is a JSON sidecar recording

* the file's sha256 and size, checked on every load (a tampered or truncated file is refused);
* the network's constructor arguments, so the right architecture is built;
* the exact command that produced the weights and their measured held-out metrics.

The course ships one small network trained on the generated faces (see
``course_utils/weights/README.md``); ``load_pretrained()`` loads it.
Other ``.pt`` files go through ``load_torch_checkpoint``, which uses
``torch.load(weights_only=True)`` and refuses files that would run pickled code.
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


class PretrainedError(ValueError):
    """A weights file or its sidecar is missing, damaged, tampered with or does not fit the network."""


class Pretrained(NamedTuple):
    """model: the network in evaluation mode; info: the sidecar (command, metrics, sha256...)."""

    model: EmbeddingNet
    info: dict


def sidecar_path(weights_path: str | Path) -> Path:
    """The JSON sidecar of a weights file: the same name with the suffix .json."""
    return Path(weights_path).with_suffix(".json")


def model_arguments(model: EmbeddingNet) -> dict:
    """{"in_channels", "embedding_dim", "normalize", "backbone", "width"}: what rebuilds an EmbeddingNet."""
    if not isinstance(model, EmbeddingNet):
        raise TypeError(f"model must be a course_utils.training.models.EmbeddingNet, got {type(model).__name__}.")
    # The width is not kept as an attribute; it is the channel count of the first convolution.
    # resnet18 ignores width; its default is recorded so the arguments stay complete.
    width = model.backbone[0][0].out_channels if model.backbone_name == "small" else 32
    return {
        "in_channels": model.in_channels,
        "embedding_dim": model.embedding_dim,
        "normalize": model.normalize,
        "backbone": model.backbone_name,
        "width": width,
    }


def save_weights(model: EmbeddingNet, path: str | Path, metadata: dict) -> Path:
    """Write the model's weights as safetensors and a JSON sidecar with checksum and metadata.

    Args:
        model: an EmbeddingNet.
        path: the weights file, ending in .safetensors (parent folders are created).
        metadata: JSON-serialisable facts to record, for example {"command": ...,
            "metrics": {...}}; stored under "metadata" in the sidecar.
    Returns:
        the sidecar's path.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"path must end in .safetensors, got {path}.")
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict of JSON values, got {type(metadata).__name__}.")
    arguments = model_arguments(model)
    # safetensors refuses tensors that share memory or are not contiguous; copies are neither.
    tensors = {name: value.detach().cpu().contiguous().clone() for name, value in model.state_dict().items()}
    content = save_safetensors_bytes(tensors)
    sidecar = {
        "format": SIDECAR_FORMAT,
        "weights_file": path.name,
        "sha256": hashlib.sha256(content).hexdigest(),
        "bytes": len(content),
        "model": arguments,
        "metadata": metadata,
    }
    text = json.dumps(sidecar, indent=2) + "\n"  # fails before anything is written if metadata is not JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    sidecar_path(path).write_text(text)
    return sidecar_path(path)


def export_checkpoint(
    checkpoint_path: str | Path, out_path: str | Path, arguments: dict, command: str, metrics: dict
) -> Path:
    """Turn a training checkpoint of ``python -m course_utils.training.cli`` into shippable safetensors.

    Args:
        checkpoint_path: the run's checkpoint.pt (read with weights_only=True).
        out_path: the .safetensors file to write.
        arguments: EmbeddingNet constructor arguments matching the run's flags, for example
            {"in_channels": 3, "embedding_dim": 64, "width": 16}.
        command: the exact command line that trained the network.
        metrics: held-out metrics measured for these weights (the run's metrics.json).
    Returns:
        the sidecar's path.
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


def read_sidecar(path: str | Path) -> dict:
    """The sidecar (a dict) of the .safetensors file at path, checked for the entries loading needs."""
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise PretrainedError(
            f"{sidecar} is missing: the sidecar records the checksum and architecture of {Path(path).name}, "
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
    """Load safetensors weights after checking them against their sidecar.

    Args:
        path: the .safetensors file; by default the network shipped with the course.
        device: where to put the network.
    Returns:
        Pretrained(model, info): the EmbeddingNet in evaluation mode and the sidecar dict
        (info["metadata"] holds the training command and the measured metrics).
    Raises:
        FileNotFoundError: there is no weights file at path.
        PretrainedError: the sidecar is missing or invalid, the file's size or sha256
            differs from the sidecar (truncated or tampered), or the weights do not fit
            the recorded architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}; check the path (the shipped file is {DEFAULT_WEIGHTS}).")
    info = read_sidecar(path)
    # Read the bytes once and check and load those same bytes: nothing can change in between.
    content = path.read_bytes()
    if len(content) != info["bytes"]:
        raise PretrainedError(
            f"{path} is {len(content)} bytes but its sidecar records {info['bytes']}: the file is truncated "
            "or was replaced. Restore the original file (for example git checkout -- the file)."
        )
    digest = hashlib.sha256(content).hexdigest()
    if digest != info["sha256"]:
        raise PretrainedError(
            f"{path} has sha256 {digest} but its sidecar records {info['sha256']}: the file was modified "
            "or corrupted, so it is refused. Restore the original file (for example git checkout -- the file)."
        )
    try:
        tensors = load_safetensors_bytes(content)
    except SafetensorError as error:
        raise PretrainedError(f"{path} cannot be read as safetensors ({error}).") from error
    try:
        model = EmbeddingNet(**info["model"])
        model.load_state_dict(tensors)
    except (TypeError, ValueError, RuntimeError) as error:
        raise PretrainedError(
            f"{path} does not match the architecture recorded in {sidecar_path(path).name} "
            f"({info['model']}): {error}"
        ) from error
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
        raise PretrainedError(f"{path} cannot be read as a torch file ({error}); it is probably truncated or corrupt.") from error
