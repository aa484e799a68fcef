"""Which device a run uses and how it computes there (kept light: notebook set-up imports it)."""
from __future__ import annotations

import torch


def pick_device(requested: str = "auto") -> torch.device:
    """"auto" gives cuda if available, then mps, then cpu; anything else is taken as asked."""
    if requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but no CUDA GPU is visible; use device='auto' or 'cpu'.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    return torch.device("mps" if mps is not None and mps.is_available() else "cpu")


def mixed_precision_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bfloat16 on CUDA GPUs that have it, else float16 (with a gradient scaler); None off CUDA."""
    return (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if device.type == "cuda" else None


def describe_device(device: torch.device, amp_dtype: torch.dtype | None = None) -> str:
    """One line naming the device and how it computes, for the start of a run."""
    if device.type == "cuda":
        precision = {torch.bfloat16: "bfloat16", torch.float16: "float16 + gradient scaler"}.get(amp_dtype, "float32")
        return f"cuda ({torch.cuda.get_device_name(device)}), {precision} mixed precision, channels_last"
    n = torch.get_num_threads()
    threads = f" ({n} thread{'s' if n > 1 else ''})" if device.type == "cpu" else ""
    return f"{device.type}{threads}, float32"
