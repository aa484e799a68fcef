"""The set-up call at the top of every course notebook, and the line its checked cells compare."""
from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch

MODES = ("auto", "quick", "full")
FIGURE_DPI = 72


@dataclass(frozen=True)
class Settings:
    """What a notebook runs with; quick is True for the short CPU run."""

    device: torch.device
    quick: bool
    seed: int

    def __str__(self) -> str:
        return f"device={self.device.type}, mode={'quick' if self.quick else 'full'}, seed={self.seed}"


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


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _png_figures() -> None:
    import matplotlib

    matplotlib.rcParams.update({"figure.dpi": FIGURE_DPI, "savefig.dpi": FIGURE_DPI, "figure.figsize": (6.0, 3.6)})
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    if get_ipython() is not None:
        # PNG, not SVG: SVG outputs carry random ids and would break the stored-output tests.
        set_matplotlib_formats("png")


def setup(seed: int = 0, mode: str = "auto", device: str = "auto") -> Settings:
    """Seed everything, choose device and mode, make figures small PNGs; print one line saying so.

    mode: "quick" (short CPU run), "full" (longer run) or "auto": full on a CUDA GPU, quick otherwise;
    the environment variable COURSE_MODE overrides "auto". device: "auto" or as `pick_device` takes it.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(map(repr, MODES))}.")
    chosen = pick_device(device)
    if mode == "auto":
        mode = os.environ.get("COURSE_MODE", "full" if chosen.type == "cuda" else "quick")
        if mode not in ("quick", "full"):
            raise ValueError(f"COURSE_MODE must be 'quick' or 'full', got {mode!r}.")
    seed_everything(seed)
    _png_figures()
    settings = Settings(device=chosen, quick=mode == "quick", seed=seed)
    print(f"Course set-up: {settings}")
    return settings


def check_claim(statement: str, holds, measured: str = "") -> None:
    """Print whether a claim holds on this run: the stable line a checked cell compares, where the
    trained numbers themselves differ in their last digits between machines.

    holds: a bool or a one-element tensor; measured: the numbers behind it, printed only when it does not hold.
    """
    if bool(holds):
        print(f"holds: {statement}")
    else:
        print(f"DOES NOT HOLD on this run: {statement}" + (f" (measured: {measured})" if measured else ""))
