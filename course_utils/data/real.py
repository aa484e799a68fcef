"""Real data sets as images (N, C, H, W) float32 in [0, 1] and labels (N,) long. Olivetti and LFW are downloaded
by scikit-learn (its caches are pickles), MNIST by torchvision, into cache_dir/<name> (default data/cache), through
a temporary folder renamed once the arrays pass their checks: a failed download leaves no cache."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

DEFAULT_CACHE_DIR = Path(__file__).resolve().parents[2] / "data" / "cache"


class DatasetUnavailableError(RuntimeError):
    """A data set is not in the cache and cannot be downloaded, or its files are damaged."""


def load_digits_dataset() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 handwritten digits 0..9: (1797, 1, 8, 8) grey levels 0..16 divided by 16."""
    import sklearn.datasets

    digits = sklearn.datasets.load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
    return images, torch.as_tensor(digits.target, dtype=torch.long)


def load_olivetti_faces(cache_dir: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The Olivetti (AT&T) faces: (400, 1, 64, 64) grey pictures of persons 0..39, ten each."""
    return _load_sklearn("olivetti", "olivetti_faces", {}, cache_dir, (1, 64, 64), 400, 40)


def load_lfw_people(cache_dir: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Labeled Faces in the Wild: (N, 1, 62, 47) grey pictures of the 62 persons with 20 pictures or more."""
    return _load_sklearn("lfw", "lfw_people", {"min_faces_per_person": 20}, cache_dir, (1, 62, 47))


def load_mnist(cache_dir: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST's 60,000 training pictures of handwritten digits 0..9, (60000, 1, 28, 28)."""

    def fetch(folder: Path, download: bool):
        import torchvision.datasets

        dataset = torchvision.datasets.MNIST(root=str(folder), train=True, download=download)
        return dataset.data.unsqueeze(1).float() / 255, dataset.targets.long()

    how = ("run load_mnist() once with internet access (torchvision downloads about 12 MB), or put its four files, "
           "decompressed (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
           "t10k-labels-idx1-ubyte), in {folder}/MNIST/raw/")
    return _load_cached("mnist", cache_dir, fetch, how, (1, 28, 28), 60000, 10)


def _load_sklearn(name: str, data_set: str, options: dict, cache_dir, shape, n_pictures=None, n_classes=None):
    """Load with scikit-learn's fetch_<data_set>(**options) through the cache."""

    def fetch(folder: Path, download: bool):
        import sklearn.datasets

        found = getattr(sklearn.datasets, f"fetch_{data_set}")(data_home=str(folder), download_if_missing=download,
                                                               **options)
        images = torch.as_tensor(found.images, dtype=torch.float32).unsqueeze(1)
        return images, torch.as_tensor(found.target, dtype=torch.long)

    how = f"run load_{data_set}() once with internet access (scikit-learn downloads it from figshare)"
    return _load_cached(name, cache_dir, fetch, how, shape, n_pictures, n_classes)


def _load_cached(name: str, cache_dir, fetch, how: str, *expected) -> tuple[torch.Tensor, torch.Tensor]:
    """fetch(folder, download) from cache_dir/name, or downloaded; how: the remedy, expected: _check's arguments."""
    final = (DEFAULT_CACHE_DIR if cache_dir is None else Path(cache_dir)) / name
    how = how.format(folder=final)
    if final.is_dir():
        try:
            loaded = fetch(final, False)
        # Not only OSError: unpickling a damaged file raises KeyError, EOFError, struct.error, ... by its bytes.
        except Exception as error:
            raise DatasetUnavailableError(
                f"The {name} cache at {final} exists but cannot be read ({type(error).__name__}: {error}). "
                f"Delete that folder and load again to download it afresh: {how}.") from error
        return _check(name, final, *loaded, *expected)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{name}-partial-", dir=final.parent))
    try:
        try:
            loaded = fetch(partial, True)
        except (OSError, RuntimeError) as error:  # urllib's URLError is an OSError
            raise DatasetUnavailableError(
                f"The {name} data set is not in the cache (expected at {final}) and could not be downloaded "
                f"({type(error).__name__}: {error}). To get it, {how}; or copy {final} from a machine you trust "
                "(the cache may hold pickles, which can run code when loaded).") from error
        _check(name, partial, *loaded, *expected)
        try:
            partial.rename(final)  # atomic: the cache appears complete or not at all
        except OSError:
            if not final.is_dir():  # another process finishing first is fine
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # gone already after a successful rename
    return loaded


def _check(name, folder, images, labels, shape, n_pictures=None, n_classes=None):
    """The data, unless they lack the published picture shape and counts (None: any)."""
    found, wanted = (tuple(images.shape[1:]), len(images), len(labels.unique())), (shape, n_pictures, n_classes)
    problems = [f"{what} {got} instead of {want}" for what, got, want in
                zip(("picture shape", "pictures:", "classes:"), found, wanted) if want is not None and got != want]
    if images.numel() and not (float(images.min()) >= 0 and float(images.max()) <= 1):
        problems.append("pixel values outside [0, 1]")
    if problems:
        raise DatasetUnavailableError(f"{name}: {'; '.join(problems)}. The files in {folder} look damaged: "
                                      "delete that folder and load again.")
    return images, labels
