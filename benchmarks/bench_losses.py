"""Speed and peak memory of the course's batch triplet losses, side by side.

For each batch loss (batch-all, batch-hard, semi-hard) and batch size B, one run times
forward + backward of four things on the same random batch:

* course - the fused loss from ``course_utils.core.losses``;
* PML    - pytorch-metric-learning's TripletMarginLoss with the matching miner
           (none / BatchHardMiner / TripletMarginMiner("semihard")), on squared
           Euclidean distances and the same margin, so it does the same job;
* floor  - ``course_utils.core.distances.pairwise_distances`` alone: every batch loss needs
           the (B, B) distance matrix, so no loss can be cheaper than this;
* naive  - the Python loops of ``course_utils.core.reference``, at one small B only.

It prints Markdown tables of median times, ratios and peak memory, checks that
batch-all gives PML's all-triplet value, that its peak memory grows like B^2, and ends
with the targets of issues 3 and 18, each marked met or missed. benchmarks/README.md explains
the method and records a run.

    python benchmarks/bench_losses.py             # the recorded run (CPU, a few minutes)
    python benchmarks/bench_losses.py --quick     # smoke run, seconds
    python benchmarks/bench_losses.py --device cuda --sizes 256 512 1024 2048 4096
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import sys
import time
from functools import partial
from typing import Callable

import pytorch_metric_learning
import torch
import torch.nn.functional as F
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from torch.profiler import ProfilerActivity, profile

from course_utils.core import reference
from course_utils.core.distances import pairwise_distances
from course_utils.core.losses import batch_all_triplet_loss, batch_hard_triplet_loss, batch_semihard_triplet_loss

# A loss under test: (embeddings (B, D), labels (B,)) -> scalar tensor to call backward() on.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

ALPHA = 0.2
LOSS_NAMES = ("batch-all", "batch-hard", "semi-hard")
MIB = 2**20
# The targets of issues 3 and 18 (a ratio is course time / other time).
HARD_VS_PML = 0.8
SEMIHARD_VS_PML, SEMIHARD_AT = 0.05, (512, 1024)
ALL_VS_PML, ALL_AT = 0.2, (512,)
VS_FLOOR, FLOOR_LOSSES, FLOOR_AT = 4.0, ("semi-hard", "batch-all"), 1024
NAIVE_SPEED_UP = 100.0
# Memory growing like B^k has growth exponent log(m2 / m1) / log(B2 / B1) = k: 2 for
# the distance matrix, 3 for a B x B x B tensor. Below 2.5 we call it quadratic.
QUADRATIC_EXPONENT_LIMIT = 2.5
# "Exact": the two sums of the same triplet losses may differ only by round-off.
EXACT_TOLERANCE = {"float32": 1e-5, "float64": 1e-9}


# ----------------------------------------------------------------------------- inputs
def make_batch(
    batch_size: int, dim: int, num_classes: int, seed: int, device: torch.device, spread: float = 1.5
):
    """A balanced, shuffled batch of unit-length embeddings clustered by class.

    Each class has a random unit centre; a picture is its centre plus Gaussian noise of
    norm about `spread`, projected back onto the unit sphere. With the default spread the
    classes overlap like a partly trained network's: at B = 512 about 4% of all triplets
    and most semi-hard pairs violate the margin 0.2, and every batch-hard triplet does.

    Args:
        batch_size: B, a multiple of num_classes keeps the classes exactly balanced.
        dim: D, the embedding size.
        num_classes: number of identities in the batch.
        seed: makes the batch repeatable.
        device: where the tensors live.
        spread: noise norm relative to the distance of a centre from the origin.
    Returns:
        embeddings (B, D) float32 leaf tensor with requires_grad, labels (B,) long.
    """
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.arange(batch_size) % num_classes)[torch.randperm(batch_size, generator=generator)]
    centres = F.normalize(torch.randn(num_classes, dim, generator=generator), dim=1)
    noise = spread * torch.randn(batch_size, dim, generator=generator) / dim**0.5
    embeddings = F.normalize(centres[labels] + noise, dim=1)
    return embeddings.to(device).requires_grad_(True), labels.to(device)


# ----------------------------------------------------------------------------- contenders
def course_losses(alpha: float) -> dict[str, LossFn]:
    """The course's fused batch losses, by loss name."""
    return {
        "batch-all": partial(batch_all_triplet_loss, alpha=alpha),
        "batch-hard": partial(batch_hard_triplet_loss, alpha=alpha),
        "semi-hard": partial(batch_semihard_triplet_loss, alpha=alpha),
    }


def _mined(loss: torch.nn.Module, miner: torch.nn.Module) -> LossFn:
    """A PML loss that first asks a PML miner for its triplets (the miner runs without grad)."""

    def mined_loss(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return loss(embeddings, labels, miner(embeddings, labels))

    return mined_loss


def pml_equivalents(alpha: float) -> dict[str, LossFn]:
    """pytorch-metric-learning's nearest equivalent of each course loss, by loss name.

    LpDistance(power=2, normalize_embeddings=False) is the squared Euclidean distance on
    the embeddings as given, the course's d. With no miner TripletMarginLoss averages
    every valid triplet with positive loss: exactly batch-all. The two miners choose
    triplets differently from the course losses (see the README), but do the same job.
    """
    squared_euclidean = pml_distances.LpDistance(p=2, power=2, normalize_embeddings=False)
    loss = pml_losses.TripletMarginLoss(margin=alpha, distance=squared_euclidean)
    hard_miner = pml_miners.BatchHardMiner(distance=squared_euclidean)
    semihard_miner = pml_miners.TripletMarginMiner(
        margin=alpha, type_of_triplets="semihard", distance=squared_euclidean
    )
    return {
        "batch-all": loss,
        "batch-hard": _mined(loss, hard_miner),
        "semi-hard": _mined(loss, semihard_miner),
    }


def naive_losses(alpha: float) -> dict[str, LossFn]:
    """The slow loop versions from course_utils.core.reference, by loss name."""

    def naive_batch_all(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss, _num_valid, _num_active = reference.batch_all_triplet_loss(embeddings, labels, alpha)
        return loss

    return {
        "batch-all": naive_batch_all,
        "batch-hard": partial(reference.batch_hard_triplet_loss, alpha=alpha),
        "semi-hard": partial(reference.batch_semihard_triplet_loss, alpha=alpha),
    }


def distance_floor(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of the (B, B) squared Euclidean distance matrix: the work every batch loss does.

    labels is unused; it is there so the floor is called like a loss.
    """
    return pairwise_distances(embeddings).sum()


# ----------------------------------------------------------------------------- measuring
def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(loss_fn: LossFn, embeddings: torch.Tensor, labels: torch.Tensor) -> float:
    """Seconds for one forward + backward, waiting for the GPU when there is one."""
    embeddings.grad = None
    _synchronize(embeddings.device)
    start = time.perf_counter()
    loss_fn(embeddings, labels).backward()
    _synchronize(embeddings.device)
    return time.perf_counter() - start


def median_times(
    contenders: dict[str, LossFn], embeddings: torch.Tensor, labels: torch.Tensor, repeats: int, warmup: int
) -> dict[str, float | None]:
    """Median seconds of forward + backward for each contender on the same batch.

    The contenders take turns within each repeat, so a burst of load from another process
    slows all of them alike and the ratios stay fair. A contender that runs out of
    memory gets None.
    """
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    failed: set[str] = set()
    for repeat in range(warmup + repeats):
        for name, loss_fn in contenders.items():
            if name in failed:
                continue
            try:
                seconds = time_once(loss_fn, embeddings, labels)
            except torch.OutOfMemoryError:
                failed.add(name)
                continue
            if repeat >= warmup:
                samples[name].append(seconds)
    return {name: None if name in failed else statistics.median(samples[name]) for name in contenders}


def _peak_from_profiler(loss_fn: LossFn, embeddings: torch.Tensor, labels: torch.Tensor) -> int:
    """Peak bytes of CPU tensors alive at once during one forward + backward.

    With profile_memory=True the profiler records every allocation and release made by
    PyTorch's CPU allocator (forward results, tensors saved for backward, gradients,
    temporaries inside operators) with its size and time. Replaying them in time order
    gives the bytes alive at each moment; the largest value is the peak above what was
    alive before the call.
    """
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        loss_fn(embeddings, labels).backward()
    # kineto_results is the profiler's raw record; its "[memory]" events carry a signed
    # size (allocation > 0, release < 0). The public event list folds them into operators.
    events = [event for event in prof.profiler.kineto_results.events() if event.name() == "[memory]"]
    events.sort(key=lambda event: event.start_ns())  # stable: ties keep the recorded order
    alive = peak = 0
    for event in events:
        alive += event.nbytes()
        peak = max(peak, alive)
    return peak


def peak_memory(loss_fn: LossFn, embeddings: torch.Tensor, labels: torch.Tensor) -> int | None:
    """Peak extra bytes of tensor memory during one forward + backward (None: out of memory).

    On the GPU this is torch.cuda.max_memory_allocated above what was allocated before;
    on the CPU the same quantity rebuilt from the profiler's allocation record.
    """
    embeddings.grad = None
    try:
        if embeddings.device.type != "cuda":
            return _peak_from_profiler(loss_fn, embeddings, labels)
        _synchronize(embeddings.device)
        torch.cuda.reset_peak_memory_stats(embeddings.device)
        before = torch.cuda.memory_allocated(embeddings.device)
        loss_fn(embeddings, labels).backward()
        _synchronize(embeddings.device)
        return torch.cuda.max_memory_allocated(embeddings.device) - before
    except torch.OutOfMemoryError:
        return None


# ----------------------------------------------------------------------------- formatting
def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "OOM"
    milliseconds = seconds * 1e3
    return f"{milliseconds:.0f}" if milliseconds >= 100 else f"{milliseconds:.3g}"


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or denominator is None else numerator / denominator


def _fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    return f"{ratio:.0f}" if ratio >= 100 else f"{ratio:.3g}"


def _mib(nbytes: int | None) -> str:
    return "OOM" if nbytes is None else f"{nbytes / MIB:.1f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the run
def benchmark_sizes(args, device: torch.device) -> dict[tuple[str, int], dict]:
    """Times and peak memory of course, PML and floor for every loss and size."""
    course, pml = course_losses(ALPHA), pml_equivalents(ALPHA)
    results = {}
    for batch_size in args.sizes:
        embeddings, labels = make_batch(batch_size, args.dim, args.classes, args.seed + batch_size, device)
        floor_memory = peak_memory(distance_floor, embeddings, labels)
        for name in LOSS_NAMES:
            contenders = {"course": course[name], "pml": pml[name], "floor": distance_floor}
            times = median_times(contenders, embeddings, labels, args.repeats, args.warmup)
            memory = {"course": peak_memory(course[name], embeddings, labels), "floor": floor_memory}
            memory["pml"] = peak_memory(pml[name], embeddings, labels)
            results[name, batch_size] = {"time": times, "memory": memory}
            print(f"  measured {name} at B = {batch_size}", file=sys.stderr, flush=True)
    return results


def benchmark_naive(args, device: torch.device) -> dict[tuple[str, int], dict[str, float | None]]:
    """Median times of the naive loops and of the course losses at the small sizes.

    Course and naive take turns, as in the main table, so the course runs are spread
    over the seconds the naive loop takes and a short burst of load cannot hit all of them.
    """
    course, naive = course_losses(ALPHA), naive_losses(ALPHA)
    results = {}
    for batch_size in args.naive_sizes:
        num_classes = max(2, batch_size // 8)  # 8 pictures per class, like the B = 256 batch
        embeddings, labels = make_batch(batch_size, args.dim, num_classes, args.seed, device)
        for name in LOSS_NAMES:
            contenders = {"course": course[name], "naive": naive[name]}
            results[name, batch_size] = median_times(contenders, embeddings, labels, args.naive_repeats, 1)
    return results


def check_batch_all_exact(args, device: torch.device) -> list[dict]:
    """Course batch-all against PML's all-triplet TripletMarginLoss: values and gradients."""
    checks = []
    pml_batch_all = pml_equivalents(ALPHA)["batch-all"]
    for dtype in (torch.float32, torch.float64):
        embeddings, labels = make_batch(args.exact_size, args.dim, args.classes, args.seed, device)
        embeddings = embeddings.detach().to(dtype)
        values, gradients = [], []
        for loss_fn in (course_losses(ALPHA)["batch-all"], pml_batch_all):
            leaf = embeddings.clone().requires_grad_(True)
            loss = loss_fn(leaf, labels)
            loss.backward()
            values.append(loss.item())
            gradients.append(leaf.grad)
        _, stats = batch_all_triplet_loss(embeddings, labels, ALPHA, return_stats=True)
        checks.append(
            {
                "batch_size": args.exact_size,
                "dtype": str(dtype).replace("torch.", ""),
                "course": values[0],
                "pml": values[1],
                "relative_difference": abs(values[0] - values[1]) / abs(values[1]),
                "gradient_difference": float(
                    (gradients[0] - gradients[1]).abs().max() / gradients[1].abs().max()
                ),
                "stats": stats,
            }
        )
    return checks


def memory_growth(args, device: torch.device) -> list[tuple[int, int | None, int | None]]:
    """Peak memory of course batch-all and of the floor at the memory sizes."""
    rows = []
    for batch_size in args.memory_sizes:
        embeddings, labels = make_batch(batch_size, args.dim, args.classes, args.seed + batch_size, device)
        rows.append(
            (
                batch_size,
                peak_memory(course_losses(ALPHA)["batch-all"], embeddings, labels),
                peak_memory(distance_floor, embeddings, labels),
            )
        )
    return rows


# ----------------------------------------------------------------------------- report
def _cpu_name() -> str:
    """The processor's model name where Linux tells it, else the architecture."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def machine_description(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        where = f"GPU {torch.cuda.get_device_name(device)}"
    else:
        where = f"CPU {_cpu_name()}, {os.cpu_count()} logical cores, {threads} torch threads"
    return (
        f"{where}; torch {torch.__version__}, pytorch-metric-learning {pytorch_metric_learning.__version__}, "
        f"Python {platform.python_version()}; {datetime.date.today().isoformat()}"
    )


def print_size_tables(results: dict, sizes: list[int]) -> None:
    rows = []
    for name in LOSS_NAMES:
        for batch_size in sizes:
            times, memory = results[name, batch_size]["time"], results[name, batch_size]["memory"]
            rows.append(
                [
                    name,
                    str(batch_size),
                    _ms(times["course"]),
                    _ms(times["pml"]),
                    _ms(times["floor"]),
                    _fmt_ratio(_ratio(times["course"], times["pml"])),
                    _fmt_ratio(_ratio(times["course"], times["floor"])),
                    _mib(memory["course"]),
                    _mib(memory["pml"]),
                    _mib(memory["floor"]),
                ]
            )
    header = ["loss", "B", "course ms", "PML ms", "floor ms", "course / PML", "course / floor",
              "course MiB", "PML MiB", "floor MiB"]
    print(_table(header, rows))


def print_naive_table(naive: dict) -> None:
    rows = [
        [
            name,
            str(batch_size),
            _ms(times["naive"]),
            _ms(times["course"]),
            _fmt_ratio(_ratio(times["naive"], times["course"])),
        ]
        for (name, batch_size), times in naive.items()
    ]
    print(_table(["loss", "B", "naive ms", "course ms", "naive / course"], rows))


def print_exactness(checks: list[dict]) -> None:
    rows = [
        [
            check["dtype"],
            str(check["batch_size"]),
            f"{check['course']:.9g}",
            f"{check['pml']:.9g}",
            f"{check['relative_difference']:.1e}",
            f"{check['gradient_difference']:.1e}",
            f"{int(check['stats'].num_active)} / {int(check['stats'].num_terms)}",
        ]
        for check in checks
    ]
    header = ["dtype", "B", "course batch-all", "PML all triplets", "relative difference",
              "max gradient difference (relative)", "active / valid triplets"]
    print(_table(header, rows))


def growth_exponents(points: list[tuple[int, int | None]]) -> list[float | None]:
    """k in memory ~ B^k between consecutive (B, bytes) points: 2 is quadratic, 3 cubic."""
    exponents = []
    for (small, small_bytes), (big, big_bytes) in zip(points, points[1:]):
        measured = small_bytes is not None and big_bytes is not None
        exponents.append(math.log(big_bytes / small_bytes) / math.log(big / small) if measured else None)
    return exponents


def print_memory_growth(rows: list[tuple[int, int | None, int | None]]) -> None:
    exponents = [None] + growth_exponents([(batch_size, course) for batch_size, course, _floor in rows])
    lines = [
        [str(batch_size), _mib(course), _mib(floor), _fmt_ratio(exponent)]
        for (batch_size, course, floor), exponent in zip(rows, exponents)
    ]
    print(_table(["B", "course batch-all MiB", "floor MiB", "growth exponent k (memory ~ B^k)"], lines))


def target_lines(results: dict, naive: dict, checks: list[dict], growth: list, sizes: list[int]) -> list[str]:
    """One line per target of issues 3 and 18: what it asks, the measured figure, MET or MISSED."""

    def verdict(ok: bool) -> str:
        return "MET" if ok else "MISSED"

    def course_over_pml(name: str, batch_size: int) -> float | None:
        times = results[name, batch_size]["time"]
        return _ratio(times["course"], times["pml"])

    hard = {batch_size: course_over_pml("batch-hard", batch_size) for batch_size in sizes}
    measured = ", ".join(f"{_fmt_ratio(ratio)} at B = {batch_size}" for batch_size, ratio in hard.items())
    ok = all(ratio is not None and ratio <= HARD_VS_PML for ratio in hard.values())
    lines = [f"batch-hard <= {HARD_VS_PML}x PML's time at every B: {measured}: {verdict(ok)}"]
    for name, limit, sizes_asked in (("semi-hard", SEMIHARD_VS_PML, SEMIHARD_AT), ("batch-all", ALL_VS_PML, ALL_AT)):
        for at in sizes_asked:
            if at not in sizes:
                lines.append(f"{name} <= {limit}x PML's time at B = {at}: not measured (B = {at} not in --sizes)")
                continue
            ratio = course_over_pml(name, at)
            ok = ratio is not None and ratio <= limit
            lines.append(f"{name} <= {limit}x PML's time at B = {at}: {_fmt_ratio(ratio)}: {verdict(ok)}")
    for name in FLOOR_LOSSES:
        if FLOOR_AT not in sizes:
            lines.append(f"{name} <= {VS_FLOOR}x the distance floor at B = {FLOOR_AT}: not measured")
            continue
        times = results[name, FLOOR_AT]["time"]
        ratio = _ratio(times["course"], times["floor"])
        ok = ratio is not None and ratio <= VS_FLOOR
        lines.append(f"{name} <= {VS_FLOOR}x the distance floor at B = {FLOOR_AT}: {_fmt_ratio(ratio)}: {verdict(ok)}")
    for name in LOSS_NAMES:
        speed_ups = {
            size: _ratio(times["naive"], times["course"]) for (loss, size), times in naive.items() if loss == name
        }
        measured = ", ".join(f"{_fmt_ratio(speed_up)}x at B = {size}" for size, speed_up in speed_ups.items())
        ok = all(speed_up is not None and speed_up >= NAIVE_SPEED_UP for speed_up in speed_ups.values())
        lines.append(f"{name} >= {NAIVE_SPEED_UP:.0f}x faster than the naive loop: {measured}: {verdict(ok)}")
    for check in checks:
        tolerance = EXACT_TOLERANCE[check["dtype"]]
        ok = check["relative_difference"] <= tolerance and check["gradient_difference"] <= tolerance
        lines.append(
            f"batch-all equals PML's all-triplet loss at B = {check['batch_size']} in {check['dtype']} "
            f"(tolerance {tolerance:.0e}): value {check['relative_difference']:.1e}, "
            f"gradient {check['gradient_difference']:.1e}: {verdict(ok)}"
        )
    exponents = growth_exponents([(batch_size, course) for batch_size, course, _floor in growth])
    ok = bool(exponents) and all(k is not None and k < QUADRATIC_EXPONENT_LIMIT for k in exponents)
    measured = ", ".join(_fmt_ratio(exponent) for exponent in exponents) or "needs two --memory-sizes"
    lines.append(
        f"batch-all peak memory O(B^2) (growth exponent < {QUADRATIC_EXPONENT_LIMIT}; 2 = B^2, 3 = B^3): "
        f"{measured}: {verdict(ok)}"
    )
    return lines


def run(args: argparse.Namespace, command: str) -> None:
    """Measure everything, then print the report (progress goes to stderr).

    Args:
        args: the parsed command-line options.
        command: the options as typed, repeated in the report so the run can be redone.
    """
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    # Kineto, the profiler's back end, logs every start and stop on stderr; keep it quiet.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    load_before = os.getloadavg()[0]
    results = benchmark_sizes(args, device)
    naive = benchmark_naive(args, device)
    checks = check_batch_all_exact(args, device)
    growth = memory_growth(args, device)
    load_after = os.getloadavg()[0]

    print(f"# Triplet loss benchmark\n\n{machine_description(device, args.threads)}")
    # Load average: processes wanting a core. Above 0 other work shared the CPU with this run.
    print(f"Load average (1 min) {load_before:.2f} at the start and {load_after:.2f} at the end.")
    print(f"\nCommand: python benchmarks/bench_losses.py {command}".rstrip())
    print(f"D = {args.dim}, {args.classes} classes (balanced), alpha = {ALPHA}, median of {args.repeats} "
          f"runs after {args.warmup} warm-up runs; times are forward + backward.\n")
    print("## Course vs pytorch-metric-learning (PML) vs the distance floor\n")
    print_size_tables(results, args.sizes)
    print(f"\n## Naive loop (course_utils.core.reference), median of {args.naive_repeats} runs, "
          "8 pictures per class\n")
    print_naive_table(naive)
    print("\n## batch-all against PML's TripletMarginLoss without a miner\n")
    print_exactness(checks)
    print("\n## Peak memory growth of batch-all\n")
    print_memory_growth(growth)
    print("\n## Targets\n")
    for line in target_lines(results, naive, checks, growth, args.sizes):
        print(f"- {line}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024], help="batch sizes B")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per contender (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per contender first")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--dim", type=int, default=128, help="embedding size D")
    parser.add_argument("--classes", type=int, default=32, help="identities per batch, balanced")
    parser.add_argument("--naive-sizes", type=int, nargs="+", default=[32, 48],
                        help="small B values for the naive loop (8 pictures per class)")
    parser.add_argument("--naive-repeats", type=int, default=5, help="timed runs in the naive comparison")
    parser.add_argument("--exact-size", type=int, default=1024, help="B for the batch-all check against PML")
    parser.add_argument("--memory-sizes", type=int, nargs="+", default=[1024, 2048],
                        help="B values for the batch-all memory growth check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repeats: a smoke run in seconds")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda needs a GPU that torch can see; this machine has none. Leave --device out.")
    if args.quick:
        args.sizes, args.repeats, args.warmup, args.naive_sizes, args.naive_repeats = [64, 128], 2, 1, [16], 1
        args.exact_size, args.memory_sizes, args.classes = 128, [128, 256], 8
    run(args, " ".join(argv))


if __name__ == "__main__":
    main()
