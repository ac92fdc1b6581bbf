"""Every image of a data set decoded once before training, so that all unreadable files are named together.

Files that decoded before are remembered by size and modification time (a JSON file per data set root under
``$XDG_CACHE_HOME/sarvit``, ``~/.cache/sarvit`` by default), so a second run decodes nothing it has seen.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional

from torch.utils.data import ConcatDataset, Dataset, Subset

from ..errors import SarvitError
from .loading import load_rgb_image

__all__ = ["BadImages", "check_images", "dataset_files"]

# where torchvision's readers keep their file lists (ImageFolder, Flowers-102, Oxford-IIIT Pets)
_FILE_LISTS = ("samples", "_image_files", "_images")
_SHOWN = 20  # files named in the message; the rest are counted


class BadImages(SarvitError):
    """Images that could not be decoded: ``bad`` maps each split name to ``[(index, path, reason)]``."""

    def __init__(self, message: str, bad: dict) -> None:
        super().__init__(message)
        self.bad = bad


def dataset_files(dataset: Dataset) -> Optional[list[str]]:
    """The image file of every item of ``dataset`` (through ``Subset`` / ``ConcatDataset``), or None for a
    data set whose images are not files (CIFAR, synthetic)."""
    if isinstance(dataset, Subset):
        files = dataset_files(dataset.dataset)
        return None if files is None else [files[index] for index in dataset.indices]
    if isinstance(dataset, ConcatDataset):
        parts = [dataset_files(part) for part in dataset.datasets]
        return None if any(part is None for part in parts) else [file for part in parts for file in part]
    for name in _FILE_LISTS:
        entries = getattr(dataset, name, None)
        if isinstance(entries, list):
            return [str(entry[0] if isinstance(entry, tuple) else entry) for entry in entries]
    return None


def check_images(datasets: dict[str, Optional[Dataset]], *, skip_bad: bool = False,
                 say: Callable[[str], None] = print, workers: Optional[int] = None) -> dict[str, Optional[Dataset]]:
    """Decode every image of each named split once (in parallel, with a progress bar), skipping files the cache
    vouches for. All unreadable files are one :class:`BadImages` error; with ``skip_bad`` they are left out
    (the splits come back as ``Subset`` of their good items) and counted through ``say``."""
    bad: dict[str, list] = {}
    for split, dataset in datasets.items():
        files = None if dataset is None else dataset_files(dataset)
        if files:
            found = _decode_all(files, split, workers)
            if found:
                bad[split] = found
    if not bad:
        return datasets
    count = sum(len(found) for found in bad.values())
    where = ", ".join(f"{len(found)} in {split}" for split, found in bad.items())
    if not skip_bad:
        listed = [f"{path} ({reason})" for found in bad.values() for _, path, reason in found]
        more = f"; and {len(listed) - _SHOWN} more" if len(listed) > _SHOWN else ""
        raise BadImages(f"{count} image file(s) cannot be read ({where}): {'; '.join(listed[:_SHOWN])}{more}; "
                        "fix or remove them, or pass --skip-bad-images to leave them out", bad)
    kept = dict(datasets)
    for split, found in bad.items():
        left_out = {index for index, _, _ in found}
        kept[split] = Subset(datasets[split], [i for i in range(len(datasets[split])) if i not in left_out])
        if not len(kept[split]):
            raise SarvitError(f"--skip-bad-images: no {split} image can be read")
    say(f"--skip-bad-images: left out {count} unreadable image file(s) ({where})")
    return kept


def _decode_all(files: list[str], split: str, workers: Optional[int]) -> list[tuple[int, str, str]]:
    cache_file = _cache_file(files)
    known = _read_cache(cache_file)
    stamps = {}
    todo = []
    for index, path in enumerate(files):
        try:
            info = os.stat(path)
            stamps[path] = [info.st_size, info.st_mtime_ns]
        except OSError:
            stamps[path] = None
        if known.get(path) != stamps[path] or stamps[path] is None:
            todo.append((index, path))
    bad = []
    if todo:
        from tqdm import tqdm

        with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool, \
                tqdm(total=len(todo), desc=f"checking {split} images", unit="img", leave=False, file=sys.stderr,
                     disable=None) as progress:
            for (index, path), reason in zip(todo, pool.map(_reason, (path for _, path in todo))):
                progress.update()
                if reason is not None:
                    bad.append((index, path, reason))
    broken = {path for _, path, _ in bad}
    good = {path: stamp for path, stamp in stamps.items() if stamp is not None and path not in broken}
    if todo and cache_file is not None:
        _write_cache(cache_file, {**known, **good})
    return bad


def _reason(path: str) -> Optional[str]:
    """None when ``path`` decodes, else why not (the loader's own words)."""
    try:
        load_rgb_image(path).close()
    except SarvitError as error:
        return str(error).split(": expected a decodable image, got ")[-1]
    return None


def _cache_file(files: list[str]) -> Optional[Path]:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    root = os.path.commonpath([os.path.dirname(os.path.abspath(path)) for path in files])
    return Path(base) / "sarvit" / f"images-{hashlib.sha1(root.encode()).hexdigest()[:16]}.json"


def _read_cache(path: Optional[Path]) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError, AttributeError):
        return {}


def _write_cache(path: Path, stamps: dict) -> None:
    """Best effort: a cache that cannot be written only means decoding again next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(stamps))
        os.replace(temp, path)
    except OSError:
        pass
