"""Random labelled batches for the loss and miner tests, including awkward ones."""
import torch

KINDS = ("gaussian", "ties", "duplicates", "lonely_anchors")


def make_batch(seed: int, kind: str, dtype=torch.float64, max_size: int = 14):
    """A (B, D) batch and its labels.

    gaussian: continuous points, ties have probability zero.
    ties: points on a small integer grid, so many distances are exactly equal (and zero).
    duplicates: several pictures are exact copies of others, across and within classes.
    lonely_anchors: some labels occur once, so those anchors have no positive.
    """
    g = torch.Generator().manual_seed(seed)
    size = int(torch.randint(3, max_size + 1, (), generator=g))
    classes = int(torch.randint(2, 5, (), generator=g))
    dim = int(torch.randint(1, 5, (), generator=g))
    labels = torch.randint(0, classes, (size,), generator=g)
    if kind == "ties":
        x = torch.randint(-1, 2, (size, dim), generator=g).to(dtype)
        x[x.norm(dim=1) == 0, 0] = 1  # keep cosine defined
    else:
        x = torch.randn(size, dim, generator=g, dtype=dtype)
    if kind == "duplicates":
        copies = torch.randint(0, size, (size // 3,), generator=g)
        x[: len(copies)] = x[copies]
    if kind == "lonely_anchors":
        labels[: size // 3] = torch.arange(100, 100 + size // 3)
    return x, labels
