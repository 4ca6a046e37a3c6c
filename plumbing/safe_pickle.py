"""An unpickler for checkpoints written by other programs: tensors come back, nothing runs.

torch's weights-only loader refuses some files whose weights are plain tensors: a MAE training checkpoint
saved with pickle protocol 4 (an opcode it lacks), or one whose `args` hold a `pathlib.Path`. This module
is the standard 'restricting globals' unpickler instead: the few torch functions that rebuild tensors are
called; classes that only carry data (argparse.Namespace, paths, numpy scalars, config containers) become
inert records that are never constructed; any other global is refused by name.
"""

from __future__ import annotations

import collections
import pickle
from typing import Any

import torch

__all__ = ["Unpickler", "load"]

_CALLED = {
    "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": torch._utils._rebuild_parameter_with_state,
    "collections.OrderedDict": collections.OrderedDict,
    "torch.Size": torch.Size,
    **{f"torch.{name}": getattr(torch, name) for name in ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")},
}
# Data-only classes and helpers found in training checkpoints; exact names, or a module prefix ending in '.'.
_DATA_ONLY = (
    "argparse.Namespace", "pathlib.", "numpy.dtype", "numpy.ndarray", "numpy.core.multiarray.", "numpy._core.multiarray.",
    "_codecs.encode", "builtins.set", "builtins.frozenset", "builtins.slice", "builtins.complex", "collections.defaultdict",
    "omegaconf.", "lightning.fabric.utilities.data.AttributeDict", "pytorch_lightning.utilities.parsing.AttributeDict",
    "torch.torch_version.TorchVersion",
)


class InertRecord(dict):
    """What a data-only class becomes: its arguments and state kept as data, its own code never run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.args, self.kwargs, self.items_appended = args, kwargs, []

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def append(self, item: Any) -> None:
        self.items_appended.append(item)

    def extend(self, items: Any) -> None:
        self.items_appended.extend(items)


def _data_only(qualified: str) -> bool:
    return any(qualified == entry or (entry.endswith(".") and qualified.startswith(entry)) for entry in _DATA_ONLY)


class Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        qualified = f"{module}.{name}"
        if qualified in _CALLED:
            return _CALLED[qualified]
        if _data_only(qualified):
            return type(name, (InertRecord,), {"__module__": f"inert.{module}"})
        # the wording torch's weights-only loader uses, so callers report both the same way
        raise pickle.UnpicklingError(f"Unsupported global: GLOBAL {qualified} is not a tensor or plain data")


def load(file: Any, **kwargs: Any) -> Any:
    return Unpickler(file, **kwargs).load()
