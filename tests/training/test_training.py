"""The training loop: device choice, precision, diagnostics, checkpoints, resume, interrupts."""
import functools
import math
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from course_utils.data import PKBatchSampler, make_synthetic_faces
from course_utils.core.distances import pairwise_distances
from course_utils.core.losses import ContrastiveLoss, TripletLoss, batch_all_triplet_loss, batch_hard_triplet_loss
from course_utils.training.models import EmbeddingNet
from course_utils.training.device import describe_device, mixed_precision_dtype, pick_device
from course_utils.training.distributed import GlobalMiningTripletLoss
from course_utils.training.checkpoints import fingerprint as _fingerprint
from course_utils.training.step import batch_diagnostics
from course_utils.training.trainer import (
    CheckpointError,
    CollapseWarning,
    Trainer,
    looks_collapsed,
    training_step,
)
from host_reads import count_host_reads
from learner_steps import correct as own_step  # the answer notebook 06's exercise asks for


def tiny_data(identities=20, pictures=4, size=16, seed=0):
    """A few generated faces: hard enough that an untrained network ranks them poorly."""
    return make_synthetic_faces(n_identities=identities, images_per_identity=pictures, image_size=size, seed=seed)


def make_trainer(loss_fn=None, seed=0, **options):
    images, labels = tiny_data()
    train, test = labels < 15, labels >= 15
    torch.manual_seed(seed)
    model = EmbeddingNet(embedding_dim=8, width=4)
    options = {"p": 5, "k": 4, "lr": 1e-2, "progress": False, "verbose": False, **options}
    return Trainer(
        model, images[train], labels[train], loss_fn or TripletLoss(mining="semihard"),
        test_images=images[test], test_labels=labels[test], **options,
    )  # fmt: skip


def first_batch(trainer):
    batch = trainer.sampler.batches_for_epoch(0)[0]
    return trainer.train_images[batch], trainer.train_labels[batch]


def weights(model):
    return {name: value.clone() for name, value in model.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


# Device, precision and threads --------------------------------------------------------


def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto").type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto").type == "cpu"


def test_trainer_refuses_a_missing_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU is visible"):
        make_trainer(device="cuda")


def test_mixed_precision_is_off_on_cpu_and_chosen_by_gpu(monkeypatch):
    assert mixed_precision_dtype(torch.device("cpu")) is None
    assert mixed_precision_dtype(torch.device("mps")) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert mixed_precision_dtype(torch.device("cuda")) is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert mixed_precision_dtype(torch.device("cuda")) is torch.float16


def test_trainer_on_cpu_uses_float32_without_scaler():
    trainer = make_trainer(device="auto")
    assert trainer.device.type == "cpu"
    assert trainer.amp_dtype is None
    assert not trainer.scaler.is_enabled()
    assert not trainer.channels_last
    assert trainer.train_images.device == trainer.device


def test_describe_device_names_what_was_found(monkeypatch):
    assert describe_device(torch.device("cpu")).startswith("cpu (")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "Fake GPU")
    text = describe_device(torch.device("cuda"), torch.float16)
    assert "Fake GPU" in text and "float16 + gradient scaler" in text and "channels_last" in text


def test_trainer_prints_device_and_batches(capsys):
    make_trainer(verbose=True)
    line = capsys.readouterr().out
    assert "Training on cpu" in line and "P=5 x K=4" in line


def test_without_progress_bar_each_epoch_gets_one_log_line(capsys):
    make_trainer(verbose=True, progress=False).fit(2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[1].startswith("epoch 1/2: loss ") and "test_map_at_r" in lines[1] and "pictures_per_second" in lines[1]


# One step and the loop ----------------------------------------------------------------


def test_training_step_is_plain_gradient_descent():
    images, labels = tiny_data(identities=4, pictures=3)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 5))
    by_hand = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 5))
    by_hand.load_state_dict(model.state_dict())
    loss, embeddings = training_step(
        model, torch.optim.SGD(model.parameters(), lr=0.5), batch_all_triplet_loss, images, labels
    )
    expected = batch_all_triplet_loss(by_hand(images), labels)
    expected.backward()
    with torch.no_grad():
        for parameter in by_hand.parameters():
            parameter -= 0.5 * parameter.grad
    torch.testing.assert_close(loss, expected.detach())
    assert not loss.requires_grad and not embeddings.requires_grad
    assert_same_weights(weights(model), weights(by_hand))


def test_training_step_with_a_gradient_scaler_matches_plain_float32():
    # The float16 route (scaled loss, unscaled step) must give the same update; on the CPU
    # it runs in float32 so the comparison is exact up to the scale's rounding.
    images, labels = tiny_data(identities=4, pictures=3)
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 5))
    scaled = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 5))
    scaled.load_state_dict(plain.state_dict())
    training_step(plain, torch.optim.SGD(plain.parameters(), lr=0.5), batch_all_triplet_loss, images, labels)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    training_step(scaled, torch.optim.SGD(scaled.parameters(), lr=0.5), batch_all_triplet_loss, images, labels, scaler)
    for a, b in zip(plain.parameters(), scaled.parameters()):
        torch.testing.assert_close(a, b)


def test_a_step_of_ones_own_trains_exactly_like_the_course_step():
    course, own = make_trainer(), make_trainer(step=own_step)
    course_history, own_history = course.fit(2), own.fit(2)
    assert_same_weights(weights(course.model), weights(own.model))
    for a, b in zip(course_history, own_history):
        for key in ("loss", "active_fraction", "mean_d_ap", "mean_d_an", "test_map_at_r"):
            assert a[key] == b[key], key


def test_a_step_of_ones_own_runs_in_float32(monkeypatch):
    monkeypatch.setattr("course_utils.training.trainer.mixed_precision_dtype", lambda device: torch.bfloat16)
    assert make_trainer().amp_dtype is torch.bfloat16
    assert make_trainer(step=own_step).amp_dtype is None


def returns_only_the_loss(model, optimizer, loss_fn, images, labels):
    return own_step(model, optimizer, loss_fn, images, labels)[0]


def test_a_step_must_return_loss_and_embeddings():
    with pytest.raises(TypeError, match=r"returned a Tensor\. End it with `return loss, embeddings`"):
        make_trainer(step=returns_only_the_loss).fit(1)
    with pytest.raises(TypeError, match="without parentheses"):
        make_trainer(step=3)


# Every way a tensor's value reaches Python; on a GPU each one waits for the device to finish.
def _adams_step_counter(optimizer):
    """torch.optim.Adam keeps each parameter's step count in a CPU tensor even when training on a
    GPU and reads it every step; that read never waits for the device, so it is not counted."""
    return lambda tensor: any(tensor is state.get("step") for state in optimizer.state.values())


@pytest.mark.parametrize("loss_fn", [TripletLoss(mining="semihard"), TripletLoss(mining="hard", soft=True),
                                     ContrastiveLoss(margin=1.0), batch_all_triplet_loss,
                                     GlobalMiningTripletLoss(mining="hard")])
def test_a_trainer_step_reads_at_most_one_value_back_from_the_device(loss_fn):
    trainer = make_trainer(loss_fn)
    images, labels = first_batch(trainer)
    trainer._step(images, labels)  # the first step creates Adam's state
    with count_host_reads(ignore=_adams_step_counter(trainer.optimizer)) as reads:
        row, _ = trainer._step(images, labels)
    assert len(reads) <= 1, reads
    assert row.shape == (7,) and torch.isfinite(row).all()


def test_a_nan_loss_stops_the_run_at_the_read_with_a_clear_error():
    trainer = make_trainer()
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(math.nan)
    with pytest.raises(FloatingPointError, match="epoch 1: the training loss or the distances became NaN"):
        trainer.fit(1)


def test_history_records_every_diagnostic_in_range():
    history = make_trainer().fit(2)
    assert [row["epoch"] for row in history] == [1, 2]
    for row in history:
        assert 0 <= row["active_fraction"] <= 1
        assert 0 <= row["mean_d_ap"] <= 4 and 0 <= row["mean_d_an"] <= 4  # unit vectors: d in [0, 4]
        assert row["embedding_norm"] == pytest.approx(1.0, abs=1e-5)
        assert row["loss"] >= 0 and row["pictures_per_second"] > 0
        for name in ("test_precision_at_1", "test_r_precision", "test_map_at_r"):
            assert 0 <= row[name] <= 1


def test_training_separates_identities():
    trainer = make_trainer(lr=1e-2)
    before = trainer.evaluate()["test_map_at_r"]
    history = trainer.fit(6)
    assert history[-1]["mean_d_an"] > history[-1]["mean_d_ap"]
    assert history[-1]["test_map_at_r"] > before


def test_batch_diagnostics_match_a_loop():
    trainer = make_trainer()
    g = torch.Generator().manual_seed(1)
    embeddings = torch.nn.functional.normalize(torch.randn(12, 8, generator=g), dim=1)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    loss, mean_ap, mean_an, norm, positives, negatives = batch_diagnostics(
        torch.tensor(0.5), embeddings, labels, trainer.loss.metric
    ).tolist()
    dist = pairwise_distances(embeddings.double())
    same = [float(dist[i, j]) for i in range(12) for j in range(12) if i != j and labels[i] == labels[j]]
    different = [float(dist[i, j]) for i in range(12) for j in range(12) if labels[i] != labels[j]]
    assert loss == 0.5
    assert mean_ap == pytest.approx(sum(same) / len(same), rel=1e-5)
    assert mean_an == pytest.approx(sum(different) / len(different), rel=1e-5)
    assert norm == pytest.approx(1.0, rel=1e-6)
    assert (positives, negatives) == (len(same), len(different))


@pytest.mark.parametrize(
    "loss_fn, collapsed_loss, has_fraction",
    [
        (batch_hard_triplet_loss, 0.2, True),
        (functools.partial(batch_hard_triplet_loss, alpha=0.3), 0.3, True),
        (lambda embeddings, labels: batch_all_triplet_loss(embeddings, labels), 0.2, False),
    ],
)
def test_any_course_loss_can_drive_the_loop(loss_fn, collapsed_loss, has_fraction):
    trainer = make_trainer(loss_fn)
    images, labels = first_batch(trainer)
    assert float(trainer.loss.at_collapse(trainer.model(images), labels)) == pytest.approx(collapsed_loss)
    history = trainer.fit(1)
    assert (history[0]["active_fraction"] is not None) == has_fraction


class Collapsed(nn.Module):
    """Every picture gets the same unit vector: the trivial solution the margin forbids."""

    def __init__(self):
        super().__init__()
        self.direction = nn.Parameter(torch.ones(8))

    def forward(self, images):
        return nn.functional.normalize(self.direction.expand(len(images), 8), dim=1)


def test_looks_collapsed_compares_with_the_loss_at_collapse():
    assert looks_collapsed(mean_d_an=0.0, loss=0.2, collapsed_loss=0.2)
    assert not looks_collapsed(mean_d_an=0.5, loss=0.2, collapsed_loss=0.2)
    assert not looks_collapsed(mean_d_an=0.0, loss=0.05, collapsed_loss=0.2)
    assert not looks_collapsed(mean_d_an=0.0, loss=0.2, collapsed_loss=None)
    assert looks_collapsed(mean_d_an=0.01, loss=0.69, collapsed_loss=math.log(2))


# Each loss collapses to its own value: the hinge to alpha, the soft margin to
# log(1 + e^0) = ln 2, the contrastive loss to margin^2 / 2 (different-person pairs at distance 0).
COLLAPSING_LOSSES = {
    "hinge": (TripletLoss(mining="all"), 0.2),
    "soft margin": (TripletLoss(mining="hard", soft=True), math.log(2)),
    "contrastive": (ContrastiveLoss(margin=1.0), 0.5),
}


@pytest.mark.parametrize("name", COLLAPSING_LOSSES)
def test_a_collapsed_run_is_reported_for_every_loss(name):
    loss_fn, collapsed_loss = COLLAPSING_LOSSES[name]
    images, labels = tiny_data()
    trainer = Trainer(Collapsed(), images, labels, loss_fn, p=5, k=4, progress=False, verbose=False)
    with pytest.warns(CollapseWarning, match=f"looks collapsed.*sits at {collapsed_loss:.4f}, what it gives"):
        history = trainer.fit(1)
    assert history[0]["loss"] == pytest.approx(collapsed_loss, rel=1e-5)


@pytest.mark.parametrize("name", COLLAPSING_LOSSES)
def test_a_healthy_run_is_not_reported_for_any_loss(name):
    # At lr 1e-3 the soft margin's loss stays near ln 2 for a while, yet the identities are apart.
    trainer = make_trainer(COLLAPSING_LOSSES[name][0], lr=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)
        history = trainer.fit(2)
    assert history[-1]["mean_d_an"] > 0.1


# Checkpoints, resume and interrupts ---------------------------------------------------


def test_resume_continues_exactly(tmp_path):
    straight = make_trainer()
    straight.fit(2)

    first = make_trainer(checkpoint_path=tmp_path / "run.pt")
    first.fit(1)
    # A new process would start from a different RNG state: resuming must not depend on it.
    torch.manual_seed(12345)
    resumed = make_trainer(seed=99, checkpoint_path=tmp_path / "run.pt")
    resumed.load_checkpoint(tmp_path / "run.pt")
    assert resumed.epoch == 1 and len(resumed.history) == 1
    resumed.fit(2)

    assert_same_weights(weights(straight.model), weights(resumed.model))
    timings = ("train_seconds", "pictures_per_second")
    for a, b in zip(straight.history, resumed.history):
        assert {k: v for k, v in a.items() if k not in timings} == {k: v for k, v in b.items() if k not in timings}
    states = [trainer.optimizer.state_dict()["state"].values() for trainer in (straight, resumed)]
    for a, b in zip(*states):
        assert all(torch.equal(a[key], b[key]) for key in a)


def test_fit_to_the_epochs_already_done_trains_nothing(tmp_path):
    trainer = make_trainer(checkpoint_path=tmp_path / "run.pt")
    trainer.fit(1)
    loaded = make_trainer()
    loaded.load_checkpoint(tmp_path / "run.pt")
    before = weights(loaded.model)
    assert loaded.fit(1) == trainer.history
    assert_same_weights(before, weights(loaded.model))


def test_checkpoint_is_written_atomically_and_loads_with_weights_only(tmp_path):
    path = make_trainer(checkpoint_path=tmp_path / "run.pt").save_checkpoint(tmp_path / "run.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]
    state = torch.load(path, weights_only=True)
    assert {"model", "optimizer", "scaler", "rng", "history", "epoch", "config"} <= state.keys()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_checkpoint_is_refused_naming_the_file(tmp_path, damage):
    path = tmp_path / "run.pt"
    make_trainer().save_checkpoint(path)
    content = path.read_bytes()
    damaged = {"truncated": content[: len(content) // 2], "garbage": b"not a checkpoint" * 10, "empty": b""}
    path.write_bytes(damaged[damage])
    with pytest.raises(CheckpointError, match="run.pt cannot be read as a checkpoint"):
        make_trainer().load_checkpoint(path)


def test_checkpoint_with_code_objects_is_refused(tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"model": functools.partial(print, "hello")}, path)
    with pytest.raises(CheckpointError, match="unsafe.pt cannot be read"):
        make_trainer().load_checkpoint(path)


def test_bare_state_dict_is_not_a_training_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    trainer = make_trainer()
    torch.save(trainer.model.state_dict(), path)
    with pytest.raises(CheckpointError, match="weights.pt is not a course_utils training checkpoint"):
        trainer.load_checkpoint(path)


def test_checkpoint_of_another_run_is_refused(tmp_path):
    path = tmp_path / "run.pt"
    make_trainer().save_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"run.pt was written by a different run \(p: checkpoint 5, now 3\)"):
        make_trainer(p=3).load_checkpoint(path)
    images, labels = tiny_data()
    other = Trainer(EmbeddingNet(embedding_dim=16, width=4), images, labels, TripletLoss(mining="semihard"),
                    p=5, k=4, lr=1e-2, progress=False, verbose=False)  # fmt: skip
    with pytest.raises(CheckpointError, match=r"different run \(model; train_data: checkpoint 'sha256"):
        other.load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        other.load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_trained_on_other_pictures_is_refused(tmp_path):
    path = tmp_path / "run.pt"
    make_trainer().save_checkpoint(path)
    images, labels = tiny_data(seed=1)
    torch.manual_seed(0)
    other = Trainer(EmbeddingNet(embedding_dim=8, width=4), images[labels < 15], labels[labels < 15],
                    TripletLoss(mining="semihard"), p=5, k=4, lr=1e-2, progress=False, verbose=False)  # fmt: skip
    with pytest.raises(CheckpointError, match=r"\(train_data: checkpoint 'sha256 [0-9a-f]{16} of 60 evenly spaced"):
        other.load_checkpoint(path)


def test_fingerprint_changes_with_sampled_pictures_labels_and_shape():
    images, labels = tiny_data(identities=200, pictures=2)  # 400 pictures: 256 of them are hashed
    print_of = _fingerprint(images, labels)
    assert _fingerprint(images.clone(), labels.clone()) == print_of
    assert "of 256 evenly spaced pictures" in print_of
    changed = images.clone()
    changed[0, 0, 0, 0] += 1e-3  # picture 0 is always in the sample
    assert _fingerprint(changed, labels) != print_of
    relabelled = labels.clone()
    relabelled[0] = 7
    assert _fingerprint(images, relabelled) != print_of
    assert _fingerprint(images.reshape(400, 3, 8, 32), labels) != print_of  # same bytes, other shape
    assert _fingerprint(images.double(), labels) != print_of


class LargestNewTensor(TorchDispatchMode):
    """Records the largest tensor any torch operation creates (views of the input excluded)."""

    def __init__(self, source: torch.Tensor):
        super().__init__()
        self.source = source.untyped_storage().data_ptr()
        self.nbytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(tensor, torch.Tensor) and tensor.untyped_storage().data_ptr() != self.source:
                self.nbytes = max(self.nbytes, tensor.untyped_storage().nbytes())
        return out


def test_fingerprint_copies_a_subsample_not_the_whole_set():
    # 2,000 pictures: a float64 copy would take 2 x their 6 MB; the 256 sampled pictures take 0.8 MB.
    images = torch.rand(2000, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(2000) // 4
    with LargestNewTensor(images) as mode:
        _fingerprint(images, labels)
    assert 0 < mode.nbytes <= 256 * images[0].nbytes


def test_failing_save_leaves_no_partial_file(tmp_path, monkeypatch):
    trainer = make_trainer()
    path = trainer.save_checkpoint(tmp_path / "run.pt")
    good = path.read_bytes()

    def disk_full(state, file):
        Path(file).write_bytes(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        trainer.save_checkpoint(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]
    assert path.read_bytes() == good


def drop_a_weight(state):
    state["model"].popitem()


def wrong_exp_avg_shape(state):
    moments = state["optimizer"]["state"][0]
    moments["exp_avg"] = moments["exp_avg"].flatten()[:3]


MALFORMED = {  # damage -> the entry named in the error
    "missing rng key": (lambda state: state["rng"].pop("torch"), "rng"),
    "missing weight": (drop_a_weight, "model"),
    "weights of another network": (lambda state: state.update(model=EmbeddingNet(width=4).state_dict()), "model"),
    "epoch of wrong type": (lambda state: state.update(epoch="one"), "epoch"),
    "history of wrong type": (lambda state: state.update(history=None), "history"),
    "config of wrong type": (lambda state: state.update(config=["p", 5]), "config"),
    "optimizer garbage": (lambda state: state.update(optimizer="garbage"), "optimizer"),
    "optimizer state garbage": (lambda state: state["optimizer"].update(state={0: "garbage"}), "optimizer"),
    "optimizer state of no parameter": (lambda state: state["optimizer"]["state"].update({99: {}}), "optimizer"),
    "optimizer moment of wrong shape": (wrong_exp_avg_shape, "optimizer"),
    "optimizer setting garbage": (lambda state: state["optimizer"]["param_groups"][0].update(lr="fast"), "optimizer"),
    "scaler garbage": (lambda state: state.update(scaler={"scale": "big"}), "scaler"),
}


@pytest.mark.parametrize("damage", MALFORMED)
def test_malformed_checkpoint_is_refused_and_changes_nothing(tmp_path, damage):
    path = tmp_path / "run.pt"
    trained = make_trainer()
    trained.fit(1)
    state = torch.load(trained.save_checkpoint(path), weights_only=True)
    change, message = MALFORMED[damage]
    change(state)
    torch.save(state, path)
    fresh = make_trainer()
    model_before, optimizer_before = weights(fresh.model), fresh.optimizer.state_dict()
    with pytest.raises(CheckpointError, match=f"run.pt holds a malformed checkpoint: its '{message}' entry cannot"):
        fresh.load_checkpoint(path)
    assert_same_weights(model_before, weights(fresh.model))
    assert fresh.optimizer.state_dict() == optimizer_before
    assert fresh.epoch == 0 and fresh.history == []


class InterruptAfter:
    """A loss that presses Ctrl-C on its n-th call, like the stop button in Jupyter."""

    def __init__(self, calls):
        self.calls = calls
        self.loss = TripletLoss(mining="semihard")

    def __call__(self, embeddings, labels):
        self.calls -= 1
        if self.calls < 0:
            raise KeyboardInterrupt
        return self.loss(embeddings, labels)


def test_interrupt_keeps_last_epoch_checkpoint_and_history(tmp_path, capsys):
    path = tmp_path / "run.pt"
    batches_per_epoch = make_trainer().sampler.__len__()
    trainer = make_trainer(InterruptAfter(batches_per_epoch + 1), checkpoint_path=path)
    history = trainer.fit(3)
    assert trainer.interrupted
    assert len(history) == 1 and trainer.epoch == 1
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert_same_weights(weights(trainer.model), torch.load(path, weights_only=True)["model"])
    assert "Interrupted" in capsys.readouterr().out


@pytest.mark.parametrize(
    "options, message",
    [
        ({"k": 1}, "k must be a whole number >= 2"),
        ({"p": 1}, "p must be a whole number >= 2"),
        ({"lr": 0}, "lr must be a number > 0"),
    ],
)
def test_bad_settings_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        make_trainer(**options)


def test_bad_data_is_refused():
    images, labels = tiny_data()
    model = EmbeddingNet(embedding_dim=8, width=4)
    loss = TripletLoss()
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        Trainer(model, images.flatten(1), labels, loss)
    with pytest.raises(ValueError, match="both test_images and test_labels"):
        Trainer(model, images, labels, loss, test_images=images)
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        Trainer(model, images, labels, "semihard")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="one label per embedding"):
            Trainer(model, images, labels[:-1], loss)
