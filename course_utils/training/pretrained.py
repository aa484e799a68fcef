"""Pretrained weights as safetensors (plain numbers: opening a file never runs code) and a JSON sidecar (same name,
suffix .json) with their sha256, checked on every load, the network's arguments, the training command and metrics."""
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


def save_weights(model: EmbeddingNet, path: str | Path, metadata: dict) -> Path:
    """Write the model's weights to ``path`` (.safetensors) and its sidecar, with JSON ``metadata``."""
    path = Path(path)
    arguments = {"in_channels": model.in_channels, "embedding_dim": model.embedding_dim,
                 "normalize": model.normalize, "backbone": model.backbone_name, "width": model.width}
    # safetensors refuses tensors that share memory or are not contiguous; copies are neither.
    content = save_safetensors_bytes({name: value.detach().cpu().contiguous().clone()
                                      for name, value in model.state_dict().items()})
    sidecar = {"format": SIDECAR_FORMAT, "weights_file": path.name, "sha256": hashlib.sha256(content).hexdigest(),
               "bytes": len(content), "model": arguments, "metadata": metadata}
    text = json.dumps(sidecar, indent=2) + "\n"  # fails before anything is written if metadata is not JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    sidecar_path = path.with_suffix(".json")
    sidecar_path.write_text(text)
    return sidecar_path


def load_pretrained(path: str | Path = DEFAULT_WEIGHTS, device: torch.device | str = "cpu") -> Pretrained:
    """(EmbeddingNet in evaluation mode, sidecar dict) from safetensors weights checked against their sidecar;
    by default the course's network. PretrainedError for anything wrong but a missing file."""
    path, sidecar = Path(path), Path(path).with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}; check the path (the shipped file is {DEFAULT_WEIGHTS}).")
    try:
        info = json.loads(sidecar.read_text())
        valid = info["format"] == SIDECAR_FORMAT and {"sha256", "model"} <= info.keys()
    except (OSError, ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise PretrainedError(f"{sidecar.name} is missing or is not a course_utils weights sidecar; it records the "
                              f"checksum and architecture of {path.name}: restore it next to that file.")
    content = path.read_bytes()  # checked and loaded from these same bytes: nothing can change in between
    digest = hashlib.sha256(content).hexdigest()
    if digest != info["sha256"]:
        raise PretrainedError(f"{path} has sha256 {digest} but its sidecar records {info['sha256']}: the file was "
                              "modified, truncated or corrupted, so it is refused. Restore the original file.")
    try:
        model = EmbeddingNet(**info["model"])
        model.load_state_dict(load_safetensors_bytes(content))
    except (TypeError, ValueError, RuntimeError, SafetensorError) as error:
        raise PretrainedError(f"{path} does not match the architecture recorded in {sidecar.name} "
                              f"({info['model']}): {error}") from error
    return Pretrained(model.to(device).eval(), info)


def load_torch_checkpoint(path: str | Path) -> object:
    """What a ``.pt`` file holds (typically a state_dict), on the CPU, read with ``weights_only=True``:
    a file holding Python objects other than tensors, numbers, strings, lists and dicts is refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise PretrainedError(f"{path} holds pickled Python objects that weights_only loading refuses; with "
                              "weights_only=False they could run any code: only for a file you fully trust.") from error
    except (RuntimeError, EOFError, OSError) as error:
        raise PretrainedError(f"{path} cannot be read as a torch file ({error}); check the path.") from error
