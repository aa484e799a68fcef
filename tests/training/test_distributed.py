"""Distributed training: the P x K sampler split over ranks, 2 gloo processes on 127.0.0.1, torchrun.

Every process started here runs on the loopback interface with one thread and a timeout.
"""
import itertools
import re
import socket
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from course_utils.training import distributed
from course_utils.training import cli
from course_utils.data import PKBatchSampler, make_synthetic_faces
from course_utils.core.distances import pairwise_distances
from course_utils.core.losses import MININGS, TripletLoss
from course_utils.training.models import EmbeddingNet
from course_utils.training.step import training_step
from course_utils.training.trainer import Trainer

WORLD_SIZE = 2
LEARNING_RATE = 0.5
# The global batch of the equivalence test: 16 rows, rank 0 gets the first 8, rank 1 the last 8.
# Identities 2 and 3 sit on both ranks, so global mining finds positives across ranks.
GLOBAL_LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3, 4, 4, 5, 5])


# ---------------------------------------------------------------- the sampler split over ranks


def rank_plans(labels, p, k, seed, epoch, world_size=WORLD_SIZE):
    samplers = [PKBatchSampler(labels, p=p, k=k, seed=seed, rank=r, world_size=world_size) for r in range(world_size)]
    return [sampler.batches_for_epoch(epoch) for sampler in samplers]


def test_ranks_share_the_single_process_plan_and_cover_each_identity_once():
    labels = torch.arange(16).repeat_interleave(4)  # 16 groups of K=4: 4 batches of P=4, 2 per rank
    single = PKBatchSampler(labels, p=4, k=4, seed=3).batches_for_epoch(5)
    plans = rank_plans(labels, p=4, k=4, seed=3, epoch=5)
    assert [len(plan) for plan in plans] == [2, 2]
    interleaved = torch.stack([plans[0], plans[1]], dim=1).reshape(-1, 16)
    assert torch.equal(interleaved, single)  # rank r takes rows r, r + 2, ...
    identities = torch.cat([labels[plan].reshape(-1, 4)[:, 0] for plan in plans])
    assert sorted(identities.tolist()) == list(range(16))  # each identity once across the ranks
    pictures = torch.cat([plan.flatten() for plan in plans])
    assert len(pictures.unique()) == len(pictures) == 64


@pytest.mark.parametrize("seed, world_size", [(0, 2), (1, 3), (2, 4)])
def test_ranks_get_equal_disjoint_shares_of_uneven_data(seed, world_size):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 30, (300,), generator=generator)
    plans = rank_plans(labels, p=5, k=3, seed=seed, epoch=1, world_size=world_size)
    assert len({len(plan) for plan in plans}) == 1 and len(plans[0]) >= 1
    rows = [tuple(row) for plan in plans for row in plan.tolist()]
    assert len(set(rows)) == len(rows)  # no batch twice
    for plan in plans:  # P distinct identities, K pictures each, in every batch
        groups = labels[plan].reshape(len(plan), 5, 3)
        assert (groups == groups[:, :, :1]).all()
        assert all(len(set(batch[:, 0].tolist())) == 5 for batch in groups)
    # Each (identity, group) of the epoch is used at most once across ranks: an identity
    # appears in at most ceil(n / K) batches.
    sizes = torch.bincount(labels, minlength=30)
    uses = torch.bincount(torch.cat([labels[plan].reshape(-1, 3)[:, 0] for plan in plans]), minlength=30)
    assert (uses <= (sizes + 2) // 3).all()


def test_rank_plans_are_a_pure_function_of_seed_and_epoch():
    labels = torch.arange(12).repeat_interleave(5)
    first, again = rank_plans(labels, 3, 4, seed=9, epoch=2), rank_plans(labels, 3, 4, seed=9, epoch=2)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], rank_plans(labels, 3, 4, seed=9, epoch=3)[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rank": 2, "world_size": 2}, "rank must be below world_size"),
        ({"world_size": 0}, "world_size must be a whole number >= 1"),
        ({"world_size": 9}, "0 batches for the 9 processes"),
    ],
)
def test_sampler_refuses_impossible_rank_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PKBatchSampler(torch.arange(8).repeat_interleave(4), p=2, k=4, **kwargs)


def every_rank_iterates(labels, **kwargs):
    """Build the sampler of each rank and check that each yields len(sampler) >= 1 full batches."""
    world_size = kwargs.get("world_size", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        samplers = [PKBatchSampler(labels, rank=r, **kwargs) for r in range(world_size)]
    for sampler in samplers:
        batches = list(sampler)
        assert len(batches) == len(sampler) >= 1
        assert all(len(batch) == sampler.p * sampler.k for batch in batches)


def test_sampler_refuses_a_world_size_that_would_leave_ranks_without_batches():
    # 51 groups of K=2 fill 25 batches, but one identity holds 50 of them and a batch takes at
    # most one: cutting it down to the batches of 2 ranks (24, 12, 6, 2, 0) leaves none.
    labels = torch.cat([torch.zeros(100), torch.ones(2)]).long()
    with pytest.raises(ValueError) as error:
        PKBatchSampler(labels, p=2, k=2, rank=0, world_size=2)
    message = str(error.value)
    assert "p=2, k=2 leave 0 batches for the 2 processes (world_size)" in message
    assert message.endswith("Lower p, k or world_size, or add identities.")
    every_rank_iterates(labels, p=2, k=2, world_size=1)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    big=st.integers(10, 120),
    small=st.lists(st.integers(2, 8), min_size=1, max_size=6),
    p=st.integers(2, 4),
    k=st.integers(2, 4),
    world_size=st.integers(2, 4),
)
def test_every_rank_of_an_accepted_sampler_iterates_and_a_refused_one_works_on_one_process(
    big, small, p, k, world_size
):
    """One identity with many pictures among small ones: often too few batches for the ranks."""
    sizes = [big, *small]
    labels = torch.arange(len(sizes)).repeat_interleave(torch.tensor(sizes))
    settings_ = {"p": p, "k": k, "world_size": world_size}
    try:
        every_rank_iterates(labels, **settings_)
    except ValueError as error:
        if "processes (world_size)" not in str(error):
            return  # too few identities for p: refused for another reason, tested elsewhere
        every_rank_iterates(labels, **{**settings_, "world_size": 1})


# ---------------------------------------------------------------- set-up errors and small helpers


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"RANK": "0"}, "MASTER_PORT, but only RANK are set. Start the processes with torchrun"),
        ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}, "only RANK, WORLD_SIZE, MASTER_ADDR are set"),
    ],
)
def test_half_set_environment_is_refused_with_the_launch_command(monkeypatch, environ, message):
    for name in distributed.LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        distributed.init_from_environment("cpu")
    assert not distributed.is_distributed()


def test_no_environment_means_a_single_process(monkeypatch):
    for name in distributed.LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert distributed.init_from_environment("cpu") == torch.device("cpu")
    assert (distributed.rank(), distributed.world_size()) == (0, 1)


def test_cli_reports_a_half_set_environment_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    status = cli.main(["--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "WORLD_SIZE" in err and "torchrun" in err and not (tmp_path / "run").exists()


def test_only_rank_0_warns_and_notes(monkeypatch, capsys, tmp_path):
    """The ranks run the same code: the others stay quiet (torchrun runs are tested below)."""
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    monkeypatch.setattr(cli, "_train_and_evaluate", lambda args: warnings.warn("seen by every rank") or 0)
    args = cli.build_parser().parse_args(["--dataset", "digits", "--out", str(tmp_path)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.run(args) == 0
        cli._load_data(args)  # P = 8 < 32, said on rank 0 only
    assert caught == [] and capsys.readouterr().out == ""


def test_gather_without_a_process_group_returns_its_inputs():
    embeddings, labels = torch.randn(4, 3), torch.tensor([0, 0, 1, 1])
    gathered, gathered_labels = distributed.gather_with_grad(embeddings, labels)
    assert gathered is embeddings and gathered_labels is labels


def test_global_mining_loss_checks_values_unless_told_not_to():
    nan = torch.full((4, 2), float("nan"))
    labels = torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        distributed.GlobalMiningTripletLoss(mining="hard")(nan, labels)
    assert torch.isnan(distributed.GlobalMiningTripletLoss(mining="hard", check_values=False)(nan, labels))


def test_gather_bytes_per_step_follows_the_formula():
    assert distributed.gather_bytes_per_step(8, 128, 128) == 8 * 128 * 128 * 4


def test_torchrun_command_and_its_guard_against_a_bare_p():
    command = distributed.torchrun_command(2, ["--epochs", "1"], python="python")
    assert command[:5] == ["python", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert command[5:] == ["-m", "course_utils.training.cli", "--epochs", "1"]
    with pytest.raises(ValueError, match="--identities-per-batch"):
        distributed.torchrun_command(2, ["--p", "4"])


def slow_mining_numbers(embeddings, labels, alpha):
    """Loops over every anchor, positive and negative: (mean hardest d(A,N), active hard, semi-hard available)."""
    dist = pairwise_distances(embeddings.double())
    hardest, active, available, pairs = [], 0, 0, 0
    for a in range(len(labels)):
        positives = [j for j in range(len(labels)) if j != a and labels[j] == labels[a]]
        negatives = [j for j in range(len(labels)) if labels[j] != labels[a]]
        if not positives or not negatives:
            continue
        hardest.append(min(float(dist[a, n]) for n in negatives))
        active += max(float(dist[a, p]) for p in positives) - hardest[-1] + alpha > 0
        for p in positives:
            pairs += 1
            available += any(dist[a, p] < dist[a, n] < dist[a, p] + alpha for n in negatives)
    return sum(hardest) / len(hardest), active / len(hardest), available / pairs


def test_compare_local_and_global_mining_matches_loops_over_the_chunks():
    embeddings = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
    result = distributed.compare_local_and_global_mining(embeddings, GLOBAL_LABELS, world_size=2, alpha=0.5)
    whole = slow_mining_numbers(embeddings, GLOBAL_LABELS, 0.5)
    chunks = [slow_mining_numbers(embeddings[i : i + 8], GLOBAL_LABELS[i : i + 8], 0.5) for i in (0, 8)]
    # Both chunks have 8 anchors and 8 pairs, so the local numbers are plain means of the two.
    local = [sum(values) / 2 for values in zip(*chunks)]
    assert result.hardest_negative_global == pytest.approx(whole[0])
    assert result.active_hard_global == pytest.approx(whole[1])
    assert result.semihard_available_global == pytest.approx(whole[2])
    assert [result.hardest_negative_local, result.active_hard_local, result.semihard_available_local] == (
        pytest.approx(local)
    )
    assert result.hardest_negative_global <= result.hardest_negative_local


def test_compare_with_one_rank_is_the_same_on_both_sides_and_refuses_uneven_chunks():
    embeddings = torch.randn(16, 3, generator=torch.Generator().manual_seed(1))
    one = distributed.compare_local_and_global_mining(embeddings, GLOBAL_LABELS, world_size=1)
    assert one.hardest_negative_local == one.hardest_negative_global
    assert one.semihard_available_local == one.semihard_available_global
    with pytest.raises(ValueError, match="cannot be split into 3 equal"):
        distributed.compare_local_and_global_mining(embeddings, GLOBAL_LABELS, world_size=3)


# ---------------------------------------------------------------- two gloo processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiny_network() -> nn.Module:
    """No BatchNorm: its statistics would differ between a rank's batch and the global batch."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4))


def global_batch() -> torch.Tensor:
    return torch.randn(16, 6, generator=torch.Generator().manual_seed(1))


def one_step(network, loss_fn, inputs, labels):
    """One SGD step through training_step; returns (loss, parameters after the step)."""
    optimizer = torch.optim.SGD(network.parameters(), lr=LEARNING_RATE)
    loss, _ = training_step(network, optimizer, loss_fn, inputs, labels)
    return float(loss), [parameter.detach().clone() for parameter in network.parameters()]


def worker(rank, port, folder):
    """What each of the 2 processes runs; it saves its results for the test to compare."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE)
    try:
        inputs, labels = global_batch().chunk(WORLD_SIZE)[rank], GLOBAL_LABELS.chunk(WORLD_SIZE)[rank]
        results = {}
        for mining, loss_class in itertools.product(MININGS, (distributed.GlobalMiningTripletLoss, TripletLoss)):
            network = tiny_network()
            step = one_step(DistributedDataParallel(network), loss_class(alpha=0.2, mining=mining), inputs, labels)
            results[mining, loss_class.__name__] = step
        images, face_labels = make_synthetic_faces(n_identities=8, images_per_identity=4, image_size=16, seed=0)
        torch.manual_seed(0)
        model = EmbeddingNet(in_channels=3, embedding_dim=8, width=4)
        trainer = Trainer(
            model, images, face_labels, TripletLoss(mining="semihard"), p=2, k=4, lr=0.01, device="cpu",
            checkpoint_path=folder / f"rank{rank}" / "checkpoint.pt", progress=False, verbose=False,
        )  # fmt: skip
        history = trainer.fit(1)
        results["trainer"] = ([p.detach().clone() for p in model.parameters()], history, len(trainer.sampler))
        torch.save(results, folder / f"results{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ranks")
    port = free_port()
    context = mp.start_processes(worker, args=(port, folder), nprocs=WORLD_SIZE, join=False, start_method="spawn")
    for process in context.processes:
        process.join(timeout=60)
    for process in context.processes:
        if process.is_alive():
            process.kill()
    assert all(process.exitcode == 0 for process in context.processes), "a rank failed or timed out"
    return folder, [torch.load(folder / f"results{r}.pt", weights_only=False) for r in range(WORLD_SIZE)]


@pytest.mark.parametrize("mining", MININGS)
def test_global_mining_equals_one_process_on_the_concatenated_batch(two_process_results, mining):
    _, ranks = two_process_results
    expected_loss, expected_weights = one_step(tiny_network(), TripletLoss(alpha=0.2, mining=mining),
                                               global_batch(), GLOBAL_LABELS)  # fmt: skip
    for results in ranks:
        loss, weights = results[mining, "GlobalMiningTripletLoss"]
        assert loss == pytest.approx(expected_loss, abs=1e-6)
        assert not torch.allclose(weights[0], results[mining, "TripletLoss"][1][0])  # local mining differs
        for got, expected in zip(weights, expected_weights):
            torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("mining", MININGS)
def test_local_mining_averages_the_gradients_of_the_ranks(two_process_results, mining):
    _, ranks = two_process_results
    network, loss_fn = tiny_network(), TripletLoss(alpha=0.2, mining=mining)
    optimizer = torch.optim.SGD(network.parameters(), lr=LEARNING_RATE)
    chunks = zip(global_batch().chunk(WORLD_SIZE), GLOBAL_LABELS.chunk(WORLD_SIZE))
    rank_losses = [loss_fn(network(inputs), labels) for inputs, labels in chunks]
    (sum(rank_losses) / WORLD_SIZE).backward()  # DDP: the mean of the ranks' gradients
    optimizer.step()
    for results in ranks:
        _, weights = results[mining, "TripletLoss"]
        for got, expected in zip(weights, network.parameters()):
            torch.testing.assert_close(got, expected.detach(), atol=1e-6, rtol=1e-5)


def test_trainer_ranks_end_identical_and_only_rank_0_writes(two_process_results):
    folder, ranks = two_process_results
    (weights0, history0, batches0), (weights1, history1, batches1) = ranks[0]["trainer"], ranks[1]["trainer"]
    for a, b in zip(weights0, weights1):
        assert torch.equal(a, b)
    assert history0[0]["loss"] == history1[0]["loss"]  # averaged over both ranks on each
    assert batches0 == batches1 == 2  # 8 groups of K=4, P=2: 4 batches, 2 per rank
    assert (folder / "rank0" / "checkpoint.pt").is_file()
    assert not (folder / "rank1").exists()


# ---------------------------------------------------------------- torchrun and the command-line trainer

TINY = [
    "--identities", "20", "--pictures-per-identity", "4", "--image-size", "16", "--identities-per-batch", "4",
    "--k", "4", "--width", "4", "--embedding-dim", "8", "--lr", "0.01", "--no-progress", "--global-mining",
]  # fmt: skip


def test_torchrun_run_writes_once_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    first = distributed.launch_training(2, [*TINY, "--epochs", "1"], out, timeout=90)
    assert [row["epoch"] for row in first.history] == [1]
    assert first.output.count("Wrote") == 1 and first.output.count("Training on") == 1
    written = sorted(path.name for path in out.iterdir())
    assert written == ["checkpoint.pt", "config.json", "history.json", "metrics.json"]
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["config"]["world_size"] == 2 and "GlobalMiningTripletLoss" in checkpoint["config"]["loss"]

    # One process cannot continue it exactly (other batches): refused in one line.
    status = cli.main([*TINY, "--epochs", "2", "--out", str(out), "--resume"])
    assert status == 2 and "world_size: checkpoint 2, now 1" in capsys.readouterr().err

    second = distributed.launch_training(2, [*TINY, "--epochs", "2", "--resume"], out, timeout=90)
    assert second.output.count("Resumed") == 1
    assert [row["epoch"] for row in second.history] == [1, 2]
    assert second.history[0] == first.history[0] and second.metrics["epochs"] == 2
