"""The two data sets the entrypoints train on, read from a channel or built in.

digits: scikit-learn's 8x8 handwritten digits. The channel form is `digits.npz` with
`images` float32 (N, 8, 8) in 0..16 and `labels` int64 (N,).
text: CPython's pydoc topics (about 465 KB of English). The channel form is `corpus.txt`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from sm_toolkit.errors import ConfigError

DIGITS_FILE = "digits.npz"
CORPUS_FILE = "corpus.txt"
SPLIT_SEED = 0  # data splits are fixed whatever the training seed


def builtin_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images.astype(np.float32), data.target.astype(np.int64)


def builtin_text() -> str:
    from pydoc_data.topics import topics

    return "\n".join(topics[k] for k in sorted(topics))


def write_digits_npz(directory: Path) -> Path:
    """Write digits.npz (the form the `train` channel carries) into `directory`."""
    images, labels = builtin_digits()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / DIGITS_FILE
    np.savez_compressed(path, images=images, labels=labels)
    return path


def write_text_corpus(directory: Path) -> Path:
    """Write corpus.txt (UTF-8) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CORPUS_FILE
    path.write_text(builtin_text(), encoding="utf-8")
    return path


def load_digits_arrays(channel: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """(images (N,8,8) float32 in 0..16, labels (N,) int64) from the channel or scikit-learn."""
    if channel is None:
        return builtin_digits()
    path = Path(channel) / DIGITS_FILE
    if not path.is_file():
        raise ConfigError("train channel", str(channel), f"a folder containing {DIGITS_FILE}")
    with np.load(path) as npz:
        return npz["images"].astype(np.float32), npz["labels"].astype(np.int64)


def load_text(channel: Path | None) -> str:
    if channel is None:
        return builtin_text()
    path = Path(channel) / CORPUS_FILE
    if not path.is_file():
        raise ConfigError("train channel", str(channel), f"a folder containing {CORPUS_FILE}")
    return path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Split:
    x: torch.Tensor
    y: torch.Tensor


def digits_splits(images: np.ndarray, labels: np.ndarray, *, limit: int = 0) -> dict[str, Split]:
    """Stratified 70/15/15 train/val/test split, images scaled to 0..1 as (N, 1, 8, 8).

    `limit` > 0 keeps only that many samples (debug sizes).
    """
    x = images / 16.0
    idx = np.arange(len(labels))
    if limit:
        idx, _ = train_test_split(
            idx, train_size=min(limit, len(idx) - 10), stratify=labels, random_state=SPLIT_SEED
        )
    train, rest = train_test_split(
        idx, test_size=0.3, stratify=labels[idx], random_state=SPLIT_SEED
    )
    val, test = train_test_split(
        rest, test_size=0.5, stratify=labels[rest], random_state=SPLIT_SEED
    )
    return {
        name: Split(torch.from_numpy(x[i][:, None].copy()), torch.from_numpy(labels[i].copy()))
        for name, i in (("train", train), ("val", val), ("test", test))
    }


class CharVocab:
    """Characters of a text, sorted; ids are positions in that order."""

    def __init__(self, text: str) -> None:
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor([self.index[c] for c in text], dtype=torch.long)

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)


def text_splits(text: str, *, limit: int = 0, val_fraction: float = 0.1):
    """(vocab, train ids, val ids): the last `val_fraction` of the text is validation."""
    if limit:
        text = text[:limit]
    vocab = CharVocab(text)
    ids = vocab.encode(text)
    cut = int(len(ids) * (1.0 - val_fraction))
    return vocab, ids[:cut], ids[cut:]
