"""Fast distances against float64 direct differences, and their numerical guarantees."""
import pytest
import torch

from course_utils import _validate
from course_utils.core import reference
from course_utils.core.distances import cosine_distance, euclidean, pairwise_distances, squared_euclidean

METRICS = list(_validate.METRICS)  # every distance the course knows
ROW_FUNCTIONS = {"squared_euclidean": squared_euclidean, "euclidean": euclidean, "cosine": cosine_distance}


def direct_pairwise(x, y, metric):
    """(n, m) distances from explicit float64 differences, broadcast (not a matrix product)."""
    x, y = x.double(), y.double()
    if metric == "cosine":
        x, y = x / x.norm(dim=1, keepdim=True), y / y.norm(dim=1, keepdim=True)
        return 1 - (x[:, None, :] * y[None, :, :]).sum(-1)
    squared = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    return squared.sqrt() if metric == "euclidean" else squared


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(5))
def test_pairwise_matches_direct_differences(metric, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    n, m, d = torch.randint(1, 40, (3,), generator=g).tolist()
    scale = [0.1, 1.0, 10.0][seed % 3]
    offset = 2.0 * torch.randn(d, generator=g)  # away from the origin: more cancellation
    x = (scale * torch.randn(n, d, generator=g) + offset).to(dtype)
    y = (scale * torch.randn(m, d, generator=g) + offset).to(dtype)
    expected = direct_pairwise(x, y, metric)
    got = pairwise_distances(x, y, metric=metric)
    assert got.shape == (n, m) and got.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert torch.allclose(got.double(), expected, rtol=tol, atol=tol * expected.abs().max().clamp_min(1))


@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_against_reference_loops(metric):
    x = torch.randn(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(pairwise_distances(x, metric=metric), reference.pairwise_distances(x, metric=metric))


@pytest.mark.parametrize("metric", METRICS)
def test_row_wise_against_reference(metric):
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(9, 5, generator=g), torch.randn(9, 5, generator=g)
    expected = torch.stack([reference.distance(a[i], b[i], metric) for i in range(9)])
    assert torch.allclose(ROW_FUNCTIONS[metric](a, b).double(), expected, atol=1e-6)


@pytest.mark.parametrize("metric", METRICS)
def test_self_distances_symmetric_nonnegative_zero_diagonal(metric):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(50, 16, generator=g) * 100 + 1000  # large values: much round-off
    x[10] = x[3]  # a duplicate point
    dist = pairwise_distances(x, metric=metric)
    assert (dist >= 0).all()
    assert (dist.diagonal() == 0).all()
    assert torch.equal(dist, dist.T)
    assert dist[3, 10] <= 1e-3 * dist.max()


def test_squared_euclidean_row_wise_is_exactly_zero_for_identical_rows():
    a = torch.randn(4, 8)
    assert torch.equal(squared_euclidean(a, a.clone()), torch.zeros(4))


@pytest.mark.parametrize("metric", ["euclidean", "squared_euclidean"])
def test_gradient_finite_at_zero_distance(metric):
    """The sqrt at zero distance must not turn into NaN gradients."""
    x = torch.randn(6, 4)
    x = torch.cat([x, x[:2]]).requires_grad_()  # duplicates, plus the zero diagonal
    pairwise_distances(x, metric=metric).sum().backward()
    assert torch.isfinite(x.grad).all()
    a = torch.randn(3, 4, requires_grad=True)
    b = a.detach().clone().requires_grad_()
    ROW_FUNCTIONS[metric](a, b).sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    assert torch.equal(a.grad, torch.zeros_like(a.grad))


def test_naive_sqrt_would_give_nan_which_we_avoid():
    """Documents the failure the safe sqrt prevents (shown to learners in notebook 08)."""
    a = torch.randn(2, 3, requires_grad=True)
    naive = ((a - a.detach()) ** 2).sum(1).sqrt()
    naive.sum().backward()
    assert torch.isnan(a.grad).all()


def test_euclidean_value_and_gradient_match_reference():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 3, dtype=torch.float64, generator=g, requires_grad=True)
    weights = torch.rand(6, 6, dtype=torch.float64, generator=g)
    (pairwise_distances(x, metric="euclidean") * weights).sum().backward()
    fast = x.grad.clone()
    x.grad = None
    (reference.pairwise_distances(x, metric="euclidean") * weights).sum().backward()
    assert torch.allclose(fast, x.grad, atol=1e-8)


@pytest.mark.parametrize("autocast_dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("metric", METRICS)
def test_autocast_computes_in_float32(autocast_dtype, metric):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(64, 32, generator=g)
    plain = pairwise_distances(x, metric=metric)
    with torch.autocast("cpu", dtype=autocast_dtype):
        mixed = pairwise_distances(x, metric=metric)
        mixed_from_half = pairwise_distances(x.to(autocast_dtype), metric=metric)
    assert mixed.dtype == torch.float32 and mixed_from_half.dtype == torch.float32
    assert torch.allclose(mixed, plain, atol=1e-5, rtol=1e-5)


def test_cosine_lies_in_zero_two_and_is_scale_invariant():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(20, 4, generator=g)
    dist = pairwise_distances(x, metric="cosine")
    assert (dist >= 0).all() and (dist <= 2).all()
    assert torch.allclose(pairwise_distances(3.5 * x, metric="cosine"), dist, atol=1e-6)


def test_unit_vectors_squared_euclidean_is_two_minus_two_cos():
    """F2: on the unit sphere ||a - b||^2 = 2 - 2 cos(a, b) = 2 * cosine distance."""
    g = torch.Generator().manual_seed(6)
    x = torch.nn.functional.normalize(torch.randn(30, 8, generator=g), dim=1)
    assert torch.allclose(pairwise_distances(x), 2 * pairwise_distances(x, metric="cosine"), atol=1e-6)


def test_cosine_zero_row_is_a_clear_error():
    x = torch.randn(4, 3)
    x[2] = 0
    with pytest.raises(ValueError, match="all-zero vector.*rows at \\[2\\]"):
        pairwise_distances(x, metric="cosine")
    with pytest.raises(ValueError, match="all-zero"):
        cosine_distance(x, torch.randn(4, 3))


def test_pairwise_with_mismatched_embedding_size():
    with pytest.raises(ValueError, match="same number of columns"):
        pairwise_distances(torch.randn(3, 4), torch.randn(3, 5))
