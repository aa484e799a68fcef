"""Throughput of the command-line trainer on the CPU: 1 process against 2 processes under torchrun.

    OMP_NUM_THREADS=1 python benchmarks/bench_distributed.py

Each configuration trains the same small network on generated faces for a few epochs and
reports pictures per second of the last epoch (all processes together, as the trainer's
history records it), so that process start-up is not counted. Every process uses one
thread; on a machine with C cores, 2 processes x 1 thread use 2 of them.
"""
from __future__ import annotations

import tempfile

from course_utils.training.distributed import launch_training

FLAGS = [
    "--identities", "200", "--pictures-per-identity", "8", "--image-size", "32", "--identities-per-batch", "16",
    "--k", "4", "--width", "16", "--embedding-dim", "64", "--epochs", "3", "--device", "cpu", "--no-progress",
]  # fmt: skip


def main() -> None:
    print(f"{'processes':>9} {'mining':>7} {'pictures/s':>11} {'loss (epoch 3)':>15}")
    for processes, mining_flags in ((1, []), (2, []), (2, ["--global-mining"])):
        with tempfile.TemporaryDirectory() as folder:
            result = launch_training(processes, [*FLAGS, *mining_flags], f"{folder}/run", timeout=600)
        last = result.history[-1]
        mining = "global" if mining_flags else "local"
        print(f"{processes:>9} {mining:>7} {last['pictures_per_second']:>11.0f} {last['loss']:>15.4f}")


if __name__ == "__main__":
    main()
