"""The HDF5 stage store: the only module that opens HDF5 files for writing.

Every stage file is written to a temporary name and renamed when complete, with the attributes
(stage, fingerprint, params, config, versions) stamped last and `complete = True` written at the
very end; so a crash or Ctrl-C never leaves a file that passes as complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from pipeline import __version__

__all__ = ["ATTRS", "write_stage", "read_stage", "stage_attrs", "write_atomic_h5", "clean_temporaries",
           "string_dataset", "read_strings", "pid_alive"]

# Attribute names every stage file carries.
ATTRS = ("stage", "fingerprint", "params_json", "deps_json", "inputs_json", "config_json",
         "stage_version", "sprites_version", "created_utc", "complete")

_STR = h5py.string_dtype(encoding="utf-8")


def _temporary(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def write_atomic_h5(path: Path) -> Iterator[h5py.File]:
    """Open a temporary HDF5 file; on success rename it over `path`, on failure delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    f = h5py.File(tmp, "w")
    try:
        yield f
        f.flush()
        f.close()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            f.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def write_stage(path: Path, meta: dict[str, Any]) -> Iterator[h5py.File]:
    """Write a stage artifact; `meta` holds the values of ATTRS except `complete`/`created_utc`."""
    with write_atomic_h5(path) as f:
        yield f
        for key, value in meta.items():
            f.attrs[key] = value if not isinstance(value, (dict, list)) else json.dumps(value, sort_keys=True)
        f.attrs["sprites_version"] = __version__
        f.attrs["created_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        f.attrs["complete"] = True


def stage_attrs(path: Path) -> dict[str, Any] | None:
    """The attributes of a complete stage file, or None if it is missing, unreadable or incomplete."""
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except (OSError, FileNotFoundError):
        return None
    if not attrs.get("complete"):
        return None
    return attrs


def read_stage(path: Path) -> h5py.File:
    return h5py.File(path, "r")


def string_dataset(group: h5py.Group, name: str, values: list[str] | None = None, **kwargs) -> h5py.Dataset:
    """A UTF-8 string dataset (resizable when created empty)."""
    if values is None:
        return group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=_STR, chunks=(1024,), **kwargs)
    return group.create_dataset(name, data=np.array(values, dtype=object), dtype=_STR, **kwargs)


def read_strings(dataset: h5py.Dataset) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else v for v in dataset[()]]


def clean_temporaries(folder: Path) -> list[Path]:
    """Remove temporary files left by killed runs (their process is gone)."""
    removed = []
    for tmp in Path(folder).glob("*.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and pid_alive(int(pid)) and int(pid) != os.getpid():
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether process `pid` still runs (its temporary files must then be left alone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
