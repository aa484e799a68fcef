"""The one set-up call at the top of every course notebook.

``settings = setup(seed=0)`` seeds every random generator, picks the device, decides
between the quick mode (CPU, what the stored notebooks and the tests run) and the
full mode (chosen by itself on a GPU), and makes figures small PNGs.

``check_claim`` prints the one line a notebook's checked cell compares: whether a claim
made from a trained or measured number holds on this run.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MODES = ("auto", "quick", "full")
FIGURE_DPI = 72


@dataclass(frozen=True)
class Settings:
    """What a notebook runs with.

    device: where tensors and models go.
    quick: True for the short CPU run, False for the longer run.
    seed: the seed every generator was given.
    data_dir: the course's data folder (downloads are cached here).
    """

    device: torch.device
    quick: bool
    seed: int
    data_dir: Path

    def __str__(self) -> str:
        mode = "quick" if self.quick else "full"
        return f"device={self.device.type}, mode={mode}, seed={self.seed}"


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
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


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
    """Seed everything, choose device and mode, configure figures; print one line saying so.

    Args:
        seed: seed for every random generator.
        mode: "quick" (short CPU run), "full" (longer run) or "auto": full on a CUDA GPU,
            quick otherwise. The environment variable COURSE_MODE overrides "auto".
        device: "auto", "cpu", "cuda", "mps", ...
    Returns:
        Settings.
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
    data_dir = Path(__file__).resolve().parents[2] / "data"
    settings = Settings(device=chosen, quick=mode == "quick", seed=seed, data_dir=data_dir)
    print(f"Course set-up: {settings}")
    return settings


def check_claim(statement: str, holds, measured: str = "") -> None:
    """Print whether a claim the lesson makes from measured numbers holds on this run.

    Trained numbers differ in their last digits between machines, thread counts and GPUs, so a
    notebook prints them in a cell that is not compared and checks its claim here, with a
    tolerance or ordering chosen from the spread over seeds and machines: the printed line is
    the same everywhere while the claim holds, and says plainly when it does not.

    Args:
        statement: the claim in words, e.g. "semi-hard beats random by at least 0.05".
        holds: whether the numbers of this run satisfy it (a bool or a one-element tensor).
        measured: the numbers behind the claim, printed only when it does not hold.

    It returns nothing, so that a claim on a cell's last line adds no "True" to the output.
    """
    if bool(holds):
        print(f"holds: {statement}")
    else:
        print(f"DOES NOT HOLD on this run: {statement}" + (f" (measured: {measured})" if measured else ""))
