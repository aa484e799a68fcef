"""Real data sets in the course's format: (images (N, C, H, W) float32 in [0, 1], labels long (N,)).

``load_digits_dataset`` ships with scikit-learn (offline); Olivetti and LFW are downloaded by
scikit-learn, MNIST and Fashion-MNIST by torchvision, into ``cache_dir/<name>`` (default data/cache).
A download goes into a temporary folder, renamed to ``<name>`` only once the arrays pass their checks,
so a failed download leaves no half-written cache. Without files and network a loader raises
`DatasetUnavailableError` naming the data set, the folder it expected and how to get the files.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch

from course_utils._validate import check_whole_number

#: Where downloads are cached unless a loader is given another cache_dir.
DEFAULT_CACHE_DIR = Path(__file__).resolve().parents[2] / "data" / "cache"

# (pictures, persons) of LFW people per min_faces_per_person, as published by scikit-learn's example.
LFW_PEOPLE_SIZES = {70: (1288, 7)}

Loaded = tuple[torch.Tensor, torch.Tensor]


class DatasetUnavailableError(RuntimeError):
    """A data set is neither in the cache nor downloadable (offline, or the download failed)."""


class DatasetCheckError(RuntimeError):
    """Loaded data do not look as published (wrong shape or counts): the files are damaged."""


def load_digits_dataset() -> Loaded:
    """scikit-learn's 1,797 handwritten digits 0..9, as (1797, 1, 8, 8) grey levels 0..16 divided by 16."""
    import sklearn.datasets

    digits = sklearn.datasets.load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
    labels = torch.as_tensor(digits.target, dtype=torch.long)
    _check_loaded("digits", images, labels, (1, 8, 8), n_pictures=1797, n_identities=10)
    return images, labels


def load_olivetti_faces(cache_dir: str | Path | None = None) -> Loaded:
    """The Olivetti (AT&T) faces: (400, 1, 64, 64) grey pictures of persons 0..39, ten each, grouped by person."""

    def fetch(folder: Path, download: bool) -> Loaded:
        import sklearn.datasets

        faces = sklearn.datasets.fetch_olivetti_faces(data_home=str(folder), download_if_missing=download)
        images = torch.as_tensor(faces.images, dtype=torch.float32).unsqueeze(1)
        return images, torch.as_tensor(faces.target, dtype=torch.long)

    how = "run load_olivetti_faces() once with internet access (scikit-learn downloads it from figshare)"
    expected = {"picture_shape": (1, 64, 64), "n_pictures": 400, "n_identities": 40, "per_identity": 10}
    return _load_cached("olivetti", cache_dir, fetch, expected, how)


def load_lfw_people(
    min_faces_per_person: int = 20, resize: float = 0.5, color: bool = False, cache_dir: str | Path | None = None
) -> Loaded:
    """Labeled Faces in the Wild: public figures with at least min_faces_per_person pictures.

    Args:
        resize: scale of the 125 x 94 centre crop, in (0, 1] (0.5 gives 62 x 47 pictures).
        color: True for RGB pictures, False for grey.
    Returns:
        images: (N, C, H, W) float32 in [0, 1], C = 3 with color else 1.
        labels: (N,) long person ids 0..(persons - 1).
    """
    check_whole_number(min_faces_per_person, "min_faces_per_person", 1)
    if isinstance(resize, bool) or not isinstance(resize, (int, float)) or not 0 < resize <= 1:
        raise ValueError(f"resize must be a number in (0, 1], got {resize!r}.")

    def fetch(folder: Path, download: bool) -> Loaded:
        import sklearn.datasets

        people = sklearn.datasets.fetch_lfw_people(
            data_home=str(folder), min_faces_per_person=min_faces_per_person, resize=resize, color=color,
            download_if_missing=download,
        )
        images = torch.as_tensor(people.images, dtype=torch.float32)
        images = images.permute(0, 3, 1, 2) if color else images.unsqueeze(1)
        return images.contiguous(), torch.as_tensor(people.target, dtype=torch.long)

    n_pictures, n_identities = LFW_PEOPLE_SIZES.get(min_faces_per_person, (None, None))
    # scikit-learn keeps the 125 x 94 centre of LFW's 250 x 250 pictures, then resizes.
    expected = {
        "picture_shape": (3 if color else 1, int(125 * resize), int(94 * resize)),
        "n_pictures": n_pictures,
        "n_identities": n_identities,
        "min_faces_per_person": min_faces_per_person,
    }
    how = "run load_lfw_people() once with internet access (scikit-learn downloads a 233 MB archive from figshare)"
    return _load_cached("lfw", cache_dir, fetch, expected, how)


def load_mnist(train: bool = True, cache_dir: str | Path | None = None) -> Loaded:
    """MNIST handwritten digits 0..9: the 60,000 training (train=True) or 10,000 test pictures, (N, 1, 28, 28)."""
    return _load_torchvision("mnist", "MNIST", 12, train, cache_dir)


def load_fashion_mnist(train: bool = True, cache_dir: str | Path | None = None) -> Loaded:
    """Fashion-MNIST, 10 kinds of clothing: the 60,000 training (train=True) or 10,000 test pictures, (N, 1, 28, 28)."""
    return _load_torchvision("fashion_mnist", "FashionMNIST", 31, train, cache_dir)


def _load_torchvision(name: str, class_name: str, megabytes: int, train: bool, cache_dir) -> Loaded:
    if not isinstance(train, bool):
        raise TypeError(f"train must be True or False, got {train!r}.")
    n_pictures = 60000 if train else 10000

    def fetch(folder: Path, download: bool) -> Loaded:
        import torchvision.datasets

        dataset = getattr(torchvision.datasets, class_name)(root=str(folder), train=train, download=download)
        return dataset.data.unsqueeze(1).float() / 255, dataset.targets.long()

    expected = {"picture_shape": (1, 28, 28), "n_pictures": n_pictures, "n_identities": 10}
    if name == "fashion_mnist":
        expected["per_identity"] = n_pictures // 10
    how = (
        f"run load_{name}() once with internet access (torchvision downloads about {megabytes} MB "
        f"and checks the published MD5 sums), or put its four files, decompressed (train-images-idx3-ubyte, "
        f"train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte), in {{folder}}/{class_name}/raw/"
    )
    return _load_cached(name, cache_dir, fetch, expected, how)


def _load_cached(
    name: str, cache_dir, fetch: Callable[[Path, bool], Loaded], expected: dict, how_to_get: str
) -> Loaded:
    """Load from cache_dir/name, or download into a temporary folder renamed there once checked.

    Args:
        fetch: fetch(folder, download) -> (images, labels), reading or downloading into folder.
        expected: keyword arguments of _check_loaded.
        how_to_get: what to do when the data cannot be had ("{folder}": the cache folder).
    """
    root = DEFAULT_CACHE_DIR if cache_dir is None else Path(cache_dir)
    final = root / name
    how_to_get = how_to_get.format(folder=final)
    if final.is_dir():
        try:
            images, labels = fetch(final, False)
        # Not only OSError: unpickling a damaged file (scikit-learn's caches are pickles) raises
        # KeyError, IndexError, EOFError, ValueError, struct.error, ... depending on the bytes.
        except Exception as error:
            raise DatasetUnavailableError(
                f"The {name} cache at {final} exists but cannot be read ({type(error).__name__}: {error}). "
                f"Delete that folder and load again to download it afresh: {how_to_get}."
            ) from error
        _check_loaded(name, images, labels, folder=final, **expected)
        return images, labels
    root.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{name}-partial-", dir=root))
    try:
        try:
            images, labels = fetch(partial, True)
        except (OSError, RuntimeError) as error:  # urllib's URLError is an OSError
            raise DatasetUnavailableError(
                f"The {name} data set is not in the cache (expected at {final}) and could not be "
                f"downloaded ({type(error).__name__}: {error}). To get it, {how_to_get}; on a machine "
                f"without internet, copy the folder {final} from a machine that has it and that you trust "
                "(the cache may hold pickles, which can run code when loaded)."
            ) from error
        _check_loaded(name, images, labels, folder=partial, **expected)
        try:
            partial.rename(final)  # atomic: the cache appears complete or not at all
        except OSError:
            if not final.is_dir():  # another process finishing first is fine; anything else is not
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # gone already after a successful rename
    return images, labels


def _check_loaded(
    name: str, images: torch.Tensor, labels: torch.Tensor, picture_shape: tuple[int, int, int],
    n_pictures: int | None = None, n_identities: int | None = None, per_identity: int | None = None,
    min_faces_per_person: int = 1, folder: Path | None = None,
) -> None:
    """Raise DatasetCheckError unless images and labels have the published shape and counts (None: any)."""
    problems = []
    if images.dim() != 4 or tuple(images.shape[1:]) != picture_shape:
        problems.append(f"pictures of shape {tuple(images.shape[1:])} instead of {picture_shape}")
    if n_pictures is not None and images.shape[0] != n_pictures:
        problems.append(f"{images.shape[0]} pictures instead of {n_pictures}")
    if labels.shape != (images.shape[0],):
        problems.append(f"labels of shape {tuple(labels.shape)} for {images.shape[0]} pictures")
    if images.numel() and not (float(images.min()) >= 0 and float(images.max()) <= 1):
        problems.append("pixel values outside [0, 1]")
    sizes = torch.unique(labels, return_counts=True)[1]
    if n_identities is not None and len(sizes) != n_identities:
        problems.append(f"{len(sizes)} classes instead of {n_identities}")
    if per_identity is not None and not bool((sizes == per_identity).all()):
        problems.append(
            f"classes of {int(sizes.min())} to {int(sizes.max())} pictures instead of {per_identity} pictures each"
        )
    if len(sizes) and int(sizes.min()) < min_faces_per_person:
        problems.append(f"a person has fewer than min_faces_per_person={min_faces_per_person} pictures")
    if problems:
        damaged = f" The files in {folder} look damaged: delete that folder and load again." if folder else ""
        raise DatasetCheckError(f"{name}: " + "; ".join(problems) + "." + damaged)
