"""The set-up call at the top of every course notebook, and the line its checked cells compare."""
from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from course_utils.training.device import pick_device

MODES = ("auto", "quick", "full")


@dataclass(frozen=True)
class Settings:
    """What a notebook runs with; quick is True for the short CPU run."""

    device: torch.device
    quick: bool
    seed: int

    def __str__(self) -> str:
        return f"device={self.device.type}, mode={'quick' if self.quick else 'full'}, seed={self.seed}"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(seed: int = 0, mode: str = "auto", device: str = "auto") -> Settings:
    """Seed everything, choose device and mode, make figures small PNGs; print one line saying so.

    mode: "quick" (short CPU run), "full" or "auto": full on a CUDA GPU, else quick, unless COURSE_MODE says.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(map(repr, MODES))}.")
    chosen = pick_device(device)
    if mode == "auto":
        mode = os.environ.get("COURSE_MODE", "full" if chosen.type == "cuda" else "quick")
        if mode not in ("quick", "full"):
            raise ValueError(f"COURSE_MODE must be 'quick' or 'full', got {mode!r}.")
    seed_everything(seed)
    import matplotlib

    matplotlib.rcParams.update({"figure.dpi": 72, "savefig.dpi": 72, "figure.figsize": (6.0, 3.6)})
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        if get_ipython() is not None:
            set_matplotlib_formats("png")  # not SVG: its random ids would break the stored-output tests
    except ImportError:
        pass
    settings = Settings(device=chosen, quick=mode == "quick", seed=seed)
    print(f"Course set-up: {settings}")
    return settings


def check_claim(statement: str, holds, measured: str = "") -> None:
    """Print whether a claim holds on this run: the stable line a checked cell compares, where trained
    numbers differ in their last digits between machines; measured is printed only when it does not hold."""
    if bool(holds):
        print(f"holds: {statement}")
    else:
        print(f"DOES NOT HOLD on this run: {statement}" + (f" (measured: {measured})" if measured else ""))
