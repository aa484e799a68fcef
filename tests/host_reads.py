"""Count the reads of tensor values by Python: on a GPU each one waits for the queued kernels.

Both levels are watched: the Python methods (``.item()``, ``bool()``, ``.tolist()`` ...) and the
operators that read values inside torch (a boolean-mask index calls ``nonzero`` in C++,
``bool()`` and ``.item()`` call ``_local_scalar_dense``). A read is counted once, at the
outermost level that saw it."""
import contextlib
from unittest import mock

import torch
from torch.utils._python_dispatch import TorchDispatchMode

CONVERSIONS = ("item", "__bool__", "__int__", "__float__", "__index__", "tolist", "nonzero")
SYNCING_OPERATORS = ("_local_scalar_dense", "nonzero", "is_nonzero", "masked_select", "equal")


def _is_mask(index) -> bool:
    return isinstance(index, torch.Tensor) and index.dtype == torch.bool


@contextlib.contextmanager
def count_host_reads(ignore=lambda tensor: False):
    """Yields a list that collects the name of every host read made inside the block.

    ignore(tensor) -> True leaves out reads of that tensor (e.g. Adam's CPU step counters)."""
    seen, inside = [], []

    def counting(name, original):
        def wrapper(tensor, *args, **kwargs):
            if inside or ignore(tensor):
                return original(tensor, *args, **kwargs)
            seen.append(name)
            inside.append(name)
            try:
                return original(tensor, *args, **kwargs)
            finally:
                inside.pop()
        return wrapper

    class SyncingOperators(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            syncs = name in SYNCING_OPERATORS or (name in ("index", "index_put") and any(map(_is_mask, args[1])))
            if syncs and not inside and not (args and isinstance(args[0], torch.Tensor) and ignore(args[0])):
                seen.append(name)
            return func(*args, **(kwargs or {}))

    with contextlib.ExitStack() as stack:
        for name in CONVERSIONS:
            stack.enter_context(mock.patch.object(torch.Tensor, name, counting(name, getattr(torch.Tensor, name))))
        stack.enter_context(SyncingOperators())
        yield seen
