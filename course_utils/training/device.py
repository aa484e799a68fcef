"""Where and in what precision training runs: CPU threads, mixed precision on CUDA, one line to say so."""
from __future__ import annotations

import os

import torch


def cpu_threads() -> int:
    """Threads for training on the CPU (>= 1): OMP_NUM_THREADS if set, else the CPUs this process may use."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    # Containers often allow fewer CPUs than the machine has; torch's default (physical cores) caps the count.
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(allowed, torch.get_num_threads()))


def mixed_precision_dtype(device: torch.device, requested="auto") -> torch.dtype | None:
    """The autocast dtype for a device: None (float32) off CUDA or when requested is False.

    Args:
        requested: "auto" (on for CUDA, off elsewhere), True or False.
    Returns:
        torch.bfloat16 on GPUs that support it (float32's range, no gradient scaler), else torch.float16
        (needs a gradient scaler), or None.
    """
    if requested not in ("auto", True, False):
        raise ValueError(f"mixed_precision must be 'auto', True or False, got {requested!r}.")
    if device.type != "cuda" and requested is True:
        raise ValueError(
            f"mixed precision is only used on a CUDA GPU; on {device.type} training runs in "
            "float32 (CPU half precision is slower, not faster). Use mixed_precision='auto'."
        )
    if device.type != "cuda" or requested is False:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def describe_device(device: torch.device, amp_dtype: torch.dtype | None = None) -> str:
    """One line naming the device and how it computes, for the start of a run."""
    if device.type == "cuda":
        precision = {torch.bfloat16: "bfloat16", torch.float16: "float16 + gradient scaler"}.get(amp_dtype, "float32")
        return f"cuda ({torch.cuda.get_device_name(device)}), {precision} mixed precision, channels_last"
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'' if threads == 1 else 's'}), float32"
    return f"{device.type}, float32"
