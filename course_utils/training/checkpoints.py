"""Training checkpoints: written without ever leaving a half file, read only after every value is checked.

A checkpoint holds the model, optimiser, gradient scaler, sampler and random-generator states, the
epoch, the history and the run's settings (``config``, with a fingerprint of the training pictures):
a run resumes exactly, and only the run that wrote it can resume from it.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

CHECKPOINT_FORMAT = "course_utils.training.trainer.checkpoint/1"
_KEYS = ("format", "epoch", "config", "model", "optimizer", "scaler", "sampler", "rng", "history")
_TYPES = {"epoch": int, "config": dict, "model": dict, "optimizer": dict, "scaler": dict, "rng": dict, "history": list}
_SCALER_KEYS = {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"}
FINGERPRINT_PICTURES = 256


class CheckpointError(ValueError):
    """A checkpoint file cannot be used: unreadable, truncated, or from a different run."""


def fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    """A short summary that changes when the training pictures (N, C, H, W) or labels (N,) change.

    SHA-256 of the shape, dtype and raw bytes of up to FINGERPRINT_PICTURES evenly spaced pictures and
    their labels: only that subsample is copied to the CPU, and raw bytes hash the same on every device.
    """
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
    # A name per process: two runs sharing a checkpoint never rename each other's half file into place.
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        torch.save(state, partial)
        os.replace(partial, path)
    except BaseException:  # a full disk, Ctrl-C: no half file left behind
        partial.unlink(missing_ok=True)
        raise
    return path


def read_checked(path: Path, config: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """A checkpoint's state, once every value is known to restore into this run (config, model, optimizer).

    Raises:
        FileNotFoundError: there is no such file.
        CheckpointError: the file is corrupt, is not a training checkpoint, holds a value that cannot
            be restored, or was written by a run with other settings (another world_size included).
    """
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train first or check the path.")
    state = _read(path)
    problem = _malformed_value(state)
    if problem is None:
        # A run on one process stores no world_size: another process count gives other batches.
        saved, current = {"world_size": 1, **state["config"]}, {**config, "world_size": config.get("world_size", 1)}
        differences = [_difference(key, saved.get(key), now) for key, now in current.items() if saved.get(key) != now]
        if differences:
            raise CheckpointError(
                f"{path} was written by a different run ({'; '.join(differences)}). Use the same "
                "settings to resume, or another checkpoint path to start a new run."
            )
        problem = _model_problem(state["model"], model.state_dict())
        problem = problem or _optimizer_problem(state["optimizer"], optimizer)
    if problem is not None:
        raise CheckpointError(
            f"{path} holds a malformed checkpoint: {problem}. Nothing was loaded. Delete it and train "
            "from scratch (on the command line: without --resume), or point to another checkpoint."
        )
    return state


def restore(state: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler):
    """Load a state from read_checked into a run: every value was checked, so nothing fails half-way."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if state["scaler"]:  # empty when saved without float16 (CPU, or bfloat16): keep the fresh scale
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"]["torch"])
    if torch.cuda.is_available() and len(state["rng"]["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])


def _read(path: Path) -> dict:
    """torch.load with weights_only=True (no code runs from the file); the entries must all be there."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged zip archives and pickles
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{path} cannot be read as a checkpoint ({type(error).__name__}: {reason}). It is "
            "probably truncated or corrupt (for example a copy that did not finish); delete it and "
            "train again, or point to another checkpoint."
        ) from error
    state = state if isinstance(state, dict) else {}
    missing = [key for key in _KEYS if key not in state]
    if missing or state["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a course_utils training checkpoint (format {state.get('format')!r}"
            f"{', missing ' + ', '.join(missing) if missing else ''}); it may be a bare model state_dict, "
            "which model.load_state_dict can read, but a Trainer cannot resume from."
        )
    return state


def _difference(key: str, saved, current) -> str:
    """'key: checkpoint X, now Y'; for multi-line values (a network's repr) only the first differing line."""
    if isinstance(saved, str) and isinstance(current, str) and "\n" in saved + current:
        pairs = zip(saved.splitlines() + [""], current.splitlines() + [""])
        saved, current = next((a.strip(), b.strip()) for a, b in pairs if a != b)
    return f"{key}: checkpoint {saved!r}, now {current!r}"


def _malformed_value(state: dict) -> str | None:
    """The first entry apart from model and optimiser with a wrong type or value, in words; None if all fit."""
    for key, kind in _TYPES.items():
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            return f"'{key}' is of type {type(state[key]).__name__}, not {kind.__name__}"
    if not all(isinstance(value, (str, int, float, list)) for value in state["config"].values()):
        return "'config' holds something other than the run's settings (text, numbers and lists)"
    if state["epoch"] < 0:
        return f"'epoch' is {state['epoch']}, below 0"
    if not all(isinstance(record, dict) for record in state["history"]):
        return "'history' holds something other than one dict per epoch"
    cpu_state, cuda_states = state["rng"].get("torch"), state["rng"].get("cuda")
    if not (_is_rng_state(cpu_state) and cpu_state.shape == torch.get_rng_state().shape
            and isinstance(cuda_states, list) and all(_is_rng_state(s) for s in cuda_states)):  # fmt: skip
        return "'rng' does not hold torch's random number generator states"
    scaler = state["scaler"]
    if scaler and (scaler.keys() != _SCALER_KEYS or not all(_is_number(value) for value in scaler.values())):
        return "'scaler' is not the state of a gradient scaler"
    return None


def _is_rng_state(value) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_group(group) -> bool:
    return isinstance(group, dict) and isinstance(group.get("params"), list) and all(
        isinstance(key, int) for key in group["params"]
    )


def _model_problem(saved: dict, expected: dict) -> str | None:
    """How saved weights differ from a network's state_dict (names, tensors, shapes), or None."""
    missing, unexpected = [n for n in expected if n not in saved], [n for n in saved if n not in expected]
    if missing or unexpected:
        return (f"its weights are not this network's (missing {missing[:3] or 'none'}, "
                f"unexpected {unexpected[:3] or 'none'})")
    for name, value in saved.items():
        if not isinstance(value, torch.Tensor) or value.shape != expected[name].shape:
            shown = list(value.shape) if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"
            return f"weight {name!r} is {shown}, where this network has shape {list(expected[name].shape)}"
    return None


def _optimizer_problem(saved: dict, optimizer: torch.optim.Optimizer) -> str | None:
    """How a saved optimiser state_dict does not fit an optimiser (groups, settings, shapes), or None."""
    groups = saved.get("param_groups")
    if not (isinstance(saved.get("state"), dict) and isinstance(groups, list) and all(map(_is_group, groups))):
        return "'optimizer' is not an optimiser's state_dict (a dict of 'state' and 'param_groups')"
    sizes, expected_sizes = [len(g["params"]) for g in groups], [len(g["params"]) for g in optimizer.param_groups]
    if sizes != expected_sizes:
        return f"the optimiser's parameter groups hold {sizes} parameters, this optimiser's {expected_sizes}"
    shapes = {}
    for group, current in zip(groups, optimizer.param_groups):
        for name, value in current.items():
            # A setting as torch.load gives it back: both numbers, or of the same type.
            saved_value = group.get(name, value)
            alike = _is_number(saved_value) and _is_number(value) or type(saved_value) is type(value)
            if name != "params" and not alike:
                return f"the optimiser setting {name!r} is {saved_value!r}, not like this optimiser's {value!r}"
        shapes.update((key, parameter.shape) for key, parameter in zip(group["params"], current["params"]))
    for key, values in saved["state"].items():
        if key not in shapes:
            return f"the optimiser's state {key!r} belongs to none of its parameters"
        if not isinstance(values, dict):
            return f"the optimiser's state of parameter {key} is of type {type(values).__name__}, not dict"
        for name, value in values.items():
            if not (_is_number(value) or torch.is_tensor(value) and value.shape in (torch.Size([]), shapes[key])):
                return f"the optimiser's {name!r} of parameter {key} is neither a number nor shaped like the parameter"
    return None
