"""Bad input gets a clear ValueError or TypeError that says what is wrong and how to fix it."""
import pytest
import torch

from course_utils import (
    TripletLoss,
    batch_all_triplet_loss,
    batch_hard_triplet_loss,
    batch_semihard_triplet_loss,
    cosine_distance,
    euclidean,
    mine_triplets,
    pairwise_distances,
    squared_euclidean,
    triplet_loss,
)

BATCH_LOSSES = [batch_all_triplet_loss, batch_hard_triplet_loss, batch_semihard_triplet_loss]
GOOD_X = torch.randn(6, 4)
GOOD_LABELS = torch.tensor([0, 0, 1, 1, 2, 2])


def _nan_row():
    x = GOOD_X.clone()
    x[3, 1] = float("nan")
    return x


def _inf_row():
    x = GOOD_X.clone()
    x[0, 0] = float("inf")
    return x


@pytest.mark.parametrize("loss_fn", BATCH_LOSSES + [lambda x, y, **kw: TripletLoss(**kw)(x, y), lambda x, y, **kw: mine_triplets(x, y)])
@pytest.mark.parametrize(
    "embeddings,labels,error,message",
    [
        (GOOD_X[0], GOOD_LABELS, ValueError, r"must be 2-D .* got shape \(4,\)"),
        (GOOD_X.view(6, 2, 2), GOOD_LABELS, ValueError, r"flatten\(1\)"),
        (GOOD_X.numpy(), GOOD_LABELS, TypeError, "torch.as_tensor"),
        (GOOD_X.long(), GOOD_LABELS, TypeError, r"floating tensor.*\.float\(\)"),
        (_nan_row(), GOOD_LABELS, ValueError, r"NaN or inf in row\(s\) \[3\]"),
        (_inf_row(), GOOD_LABELS, ValueError, r"NaN or inf in row\(s\) \[0\]"),
        (GOOD_X, GOOD_LABELS[:5], ValueError, "5 entries but there are 6 embeddings"),
        (GOOD_X, GOOD_LABELS.float(), TypeError, r"integer tensor.*labels\.long\(\)"),
        (GOOD_X, GOOD_LABELS.bool(), TypeError, "integer tensor"),
        (GOOD_X, GOOD_LABELS[:, None], ValueError, r"column.*labels\.view\(-1\)"),
        (GOOD_X, torch.nn.functional.one_hot(GOOD_LABELS), ValueError, r"one-hot.*argmax\(dim=1\)"),
        (GOOD_X, GOOD_LABELS.tolist(), TypeError, "labels must be a torch.Tensor"),
        (GOOD_X, GOOD_LABELS.numpy(), TypeError, "labels must be a torch.Tensor"),
    ],
)
def test_batch_losses_and_miner_refuse_bad_input(loss_fn, embeddings, labels, error, message):
    with pytest.raises(error, match=message):
        loss_fn(embeddings, labels)


@pytest.mark.parametrize("loss_fn", BATCH_LOSSES)
@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"alpha": -0.1}, ValueError, "alpha must be >= 0"),
        ({"alpha": float("nan")}, ValueError, "finite"),
        ({"alpha": "0.2"}, TypeError, "alpha must be a number"),
        ({"alpha": torch.tensor([0.1, 0.2])}, ValueError, "single number"),
        ({"metric": "manhattan"}, ValueError, r"unknown metric 'manhattan'; choose one of 'squared_euclidean'"),
    ],
)
def test_batch_losses_refuse_bad_settings(loss_fn, kwargs, error, message):
    with pytest.raises(error, match=message):
        loss_fn(GOOD_X, GOOD_LABELS, **kwargs)


def test_alpha_as_one_element_tensor_is_accepted():
    assert torch.equal(batch_all_triplet_loss(GOOD_X, GOOD_LABELS, torch.tensor(0.2)), batch_all_triplet_loss(GOOD_X, GOOD_LABELS, 0.2))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"mining": "hardest"}, "unknown mining 'hardest'"),
        ({"metric": "l1"}, "unknown metric"),
        ({"alpha": -1}, "alpha must be >= 0"),
        ({"mining": "all", "soft": True}, "mining='hard'"),
    ],
)
def test_module_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TripletLoss(**kwargs)


@pytest.mark.parametrize(
    "args,kwargs,error,message",
    [
        ((GOOD_X, GOOD_X, GOOD_X[:5]), {}, ValueError, r"anchor and negative must have the same shape"),
        ((GOOD_X, GOOD_X[:, :3], GOOD_X), {}, ValueError, r"anchor and positive must have the same shape"),
        ((GOOD_X, GOOD_X, GOOD_X), {"reduction": "avg"}, ValueError, "unknown reduction 'avg'"),
        ((GOOD_X, GOOD_X, GOOD_X), {"alpha": -0.5}, ValueError, "alpha must be >= 0"),
        ((GOOD_X, _nan_row(), GOOD_X), {}, ValueError, "positive contains NaN"),
        ((GOOD_X[0], GOOD_X[1], GOOD_X[2]), {}, ValueError, "anchor must be 2-D"),
    ],
)
def test_triplet_loss_refuses_bad_input(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        triplet_loss(*args, **kwargs)


@pytest.mark.parametrize("fn", [squared_euclidean, euclidean, cosine_distance])
def test_row_distances_refuse_bad_input(fn):
    with pytest.raises(ValueError, match="a and b must have the same shape"):
        fn(GOOD_X, GOOD_X[:3])
    with pytest.raises(TypeError, match="b must be a torch.Tensor"):
        fn(GOOD_X, [[0.0] * 4] * 6)


def test_pairwise_refuses_bad_input():
    with pytest.raises(ValueError, match="unknown metric"):
        pairwise_distances(GOOD_X, metric="hamming")
    with pytest.raises(ValueError, match="y contains NaN"):
        pairwise_distances(GOOD_X, _nan_row())


def test_miner_refuses_bad_strategy_and_count():
    with pytest.raises(ValueError, match="unknown strategy 'easy'"):
        mine_triplets(GOOD_X, GOOD_LABELS, "easy")
    with pytest.raises(ValueError, match="num_triplets must be a whole number >= 0, got -3"):
        mine_triplets(GOOD_X, GOOD_LABELS, "random", num_triplets=-3)
    with pytest.raises(TypeError, match="num_triplets must be a whole number"):
        mine_triplets(GOOD_X, GOOD_LABELS, "random", num_triplets=2.0)


@pytest.mark.parametrize("value, error, message", [
    (0, ValueError, "lr must be a number > 0, got 0.0"),
    (-0.1, ValueError, "lr must be a number > 0"),
    (float("nan"), ValueError, "lr must be a finite number"),
    ("0.1", TypeError, "lr must be a number, got str"),
    (True, TypeError, "lr must be a number, got bool"),
])
def test_positive_numbers_are_checked_by_one_validator(value, error, message):
    from course_utils._validate import check_positive
    from course_utils.lessons.toy_training import make_toy_points, train_toy_points

    with pytest.raises(error, match=message):
        check_positive(value, "lr")
    points, labels = make_toy_points()
    with pytest.raises(error, match=message.replace("lr", "learning_rate")):
        train_toy_points(points, labels, learning_rate=value)
