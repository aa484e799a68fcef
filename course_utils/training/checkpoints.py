"""Training checkpoints: written without ever leaving a half file, read only after every entry is checked.

``config`` holds the run's settings and a fingerprint of its pictures: only the same run resumes from it."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

CHECKPOINT_FORMAT = "course_utils.training.trainer.checkpoint/1"
_KEYS = ("format", "epoch", "config", "model", "optimizer", "scaler", "rng", "history")
FINGERPRINT_PICTURES = 256


class CheckpointError(ValueError):
    """A checkpoint file cannot be used: unreadable, truncated, malformed, or from a different run."""


def fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    """SHA-256 of the shape and dtype of (N, C, H, W) images and of up to 256 evenly spaced pictures and labels
    (only they are copied to the CPU; raw bytes hash the same on every device)."""
    n = min(len(images), FINGERPRINT_PICTURES)
    index = torch.arange(n) * len(images) // n  # (n,) whole-number arithmetic: the same pictures everywhere
    sample = images.detach()[index.to(images.device)].cpu().contiguous()  # (n, C, H, W)
    sample_labels = labels.detach()[index.to(labels.device)].cpu().to(torch.int64)  # (n,)
    digest = hashlib.sha256(f"{tuple(images.shape)} {images.dtype}".encode())
    digest.update(sample.view(torch.uint8).numpy().tobytes())
    digest.update(sample_labels.numpy().tobytes())
    return f"sha256 {digest.hexdigest()[:16]} of {n} evenly spaced pictures, their labels, shape and dtype"


def save_atomically(state: dict, path: str | Path) -> Path:
    """torch.save under a temporary name, then rename: the last good checkpoint is never half overwritten."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")  # one name per process
    try:
        torch.save(state, partial)
        os.replace(partial, path)
    except BaseException:  # a full disk, Ctrl-C: no half file left behind
        partial.unlink(missing_ok=True)
        raise
    return path


def read_checked(path: Path, config: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """A checkpoint's state, once every entry is known to restore into this run; raises CheckpointError if not."""
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train first or check the path.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # no code runs from the file
    except Exception as error:  # torch raises several types for damaged archives and pickles
        raise CheckpointError(f"{path} cannot be read as a checkpoint ({type(error).__name__}); it is truncated "
                              "or corrupt: delete it and train again, or point to another checkpoint.") from error
    if not isinstance(state, dict) or any(key not in state for key in _KEYS) or state["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a course_utils training checkpoint (a bare state_dict goes to "
                              "model.load_state_dict; a Trainer resumes only from its own checkpoints).")
    if isinstance(state["config"], dict):
        saved = state["config"]
        differences = [f"{key}: checkpoint {saved.get(key)!r}, now {now!r}" if len(repr(now)) < 100 else key
                       for key, now in config.items() if saved.get(key) != now]  # a network's repr: its name
        if differences:
            raise CheckpointError(f"{path} was written by a different run ({'; '.join(differences)}). Use the same "
                                  "settings to resume, or another checkpoint path to start a new run.")
    wrong = next((key for key in _KEYS[1:] if not _fits(key, state[key], model, optimizer)), None)
    if wrong is not None:
        raise CheckpointError(f"{path} holds a malformed checkpoint: its {wrong!r} entry cannot be restored into "
                              "this run. Nothing was loaded. Delete it, or point to another checkpoint.")
    return state


def _shaped(value, *shapes) -> bool:
    return isinstance(value, torch.Tensor) and value.shape in shapes


def _fits(key: str, value, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> bool:
    """Whether a checkpoint entry has the type, keys and shapes this run restores."""
    try:
        if key == "model":
            expected = model.state_dict()
            return value.keys() == expected.keys() and all(_shaped(value[k], v.shape) for k, v in expected.items())
        if key == "optimizer":
            return _optimizer_fits(value, optimizer)
        if key == "rng":
            states = [value["torch"], *value["cuda"]]
            return value["torch"].shape == torch.get_rng_state().shape and all(
                isinstance(s, torch.Tensor) and s.dtype == torch.uint8 for s in states)
        if key == "scaler":
            return not value or "scale" in value and all(isinstance(x, (int, float)) for x in value.values())
        kind = {"epoch": int, "config": dict, "history": list}[key]
        return isinstance(value, kind) and not isinstance(value, bool) and (key != "epoch" or value >= 0)
    except (AttributeError, KeyError, TypeError):
        return False


def _optimizer_fits(saved: dict, optimizer: torch.optim.Optimizer) -> bool:
    """The same parameter groups and types of settings, each moment a number or shaped like its parameter."""
    pairs = list(zip(saved["param_groups"], optimizer.param_groups))
    shapes = {i: p.shape for old, new in pairs for i, p in zip(old["params"], new["params"])}
    same_groups = len(saved["param_groups"]) == len(optimizer.param_groups) and all(
        len(old["params"]) == len(new["params"]) and all(type(old.get(k, v)) is type(v) for k, v in new.items())
        for old, new in pairs)
    return same_groups and saved["state"].keys() <= shapes.keys() and all(
        isinstance(x, (int, float)) or _shaped(x, torch.Size(), shapes[i]) for i, m in saved["state"].items()
        for x in m.values())
