"""Training slices from slice stores, a resumable seeded batch sampler, and the DataLoader.

The unit handed around is a whole mini-batch: the sampler yields arrays of positions into
the training set, and ``TrainingSlices[positions]`` gathers them from the memory-mapped
stores in one vectorised read per store (``SliceStore.arrays``), in worker processes when
asked, which send the uint8 batch; it becomes float32 where it arrives (``BatchLoader``).
The epoch's order is a pure function of (seed, epoch), and the sampler's state is
(epoch, batches already taken), so a run resumed from a checkpoint sees exactly the
batches it would have seen.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from calf.errors import CalfError
from calf.models.sizes import SIZE_MULTIPLE

if TYPE_CHECKING:
    from calf.store import SliceStore


class TrainingSlices(Dataset):
    """The slices of a training (or validation) set, drawn from one or more stores.

    ``self[positions]`` returns float32 images ``(B, 1, S, S)`` in [0, 1] and float32 {0, 1}
    masks of the training-set positions given. Pickles by store path, so worker processes
    open their own memory maps.
    """

    def __init__(self, stores: Sequence["SliceStore"], rows: Sequence[np.ndarray]):
        self.paths = [str(s.path) for s in stores]
        self.size = stores[0].size
        self.store_of = np.concatenate(
            [np.full(len(r), i, dtype=np.int64) for i, r in enumerate(rows)]
        )
        self.row_of = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])
        self._stores: list[SliceStore] | None = list(stores)

    def __len__(self) -> int:
        return len(self.row_of)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_stores": None}

    def _open(self) -> list["SliceStore"]:
        if self._stores is None:
            from calf.store import SliceStore

            self._stores = [SliceStore(p) for p in self.paths]
        return self._stores

    def __getitem__(self, positions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        from calf.store import training_tensors

        return training_tensors(*self.raw(positions))

    def raw(self, positions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The uint8 images and masks ``(B, 1, S, S)`` of the positions, as stored."""
        stores = self._open()
        pos = np.asarray(positions, dtype=np.int64)
        sid, rows = self.store_of[pos], self.row_of[pos]
        if len(stores) == 1:
            images, masks = stores[0].arrays(rows)
            return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(masks).unsqueeze(1)
        x = torch.empty(len(pos), 1, self.size, self.size, dtype=torch.uint8)
        y = torch.empty_like(x)
        for i in np.unique(sid):
            take = sid == i
            xi, yi = stores[i].arrays(rows[take])
            sel = torch.from_numpy(take)
            x[sel], y[sel] = torch.from_numpy(xi).unsqueeze(1), torch.from_numpy(yi).unsqueeze(1)
        return x, y


class _RawBatches(Dataset):
    """The loader's dataset: uint8 batches (what worker processes send to the main one)."""

    def __init__(self, data: TrainingSlices):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, positions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data.raw(positions)


class BatchLoader:
    """The training DataLoader, yielding float32 batches converted where they arrive.

    Workers send the store's uint8 (a quarter of float32's bytes through shared memory,
    the cost that bounds a worker: about 4x the slices/s, ``benchmarks/data.py``); the
    batch becomes float32 in the main process, on ``device`` when one is given (the uint8
    batch is copied there, from pinned memory, then converted), else on the CPU (pinned
    again when the loader pins). The DataLoader's attributes (``pin_memory``,
    ``num_workers``, ...) read through.
    """

    def __init__(self, loader: DataLoader, device: torch.device | None):
        self.loader = loader
        self.device = device

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["loader"], name)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from calf.store import training_tensors

        pin_again = self.loader.pin_memory and self.device is None
        for x, y in self.loader:
            if self.device is not None:
                x = x.to(self.device, non_blocking=True)
                y = y.to(self.device, non_blocking=True)
            x, y = training_tensors(x, y)
            if pin_again:
                x, y = x.pin_memory(), y.pin_memory()
            yield x, y


def load_slices(store_paths: Sequence[str], csv: str, option: str) -> TrainingSlices:
    """Open the stores and select a training-set CSV's rows (checked against the index)."""
    from calf.store import SliceStore, select_rows

    stores = [SliceStore(p) for p in store_paths]
    sizes = {s.size for s in stores}
    if len(sizes) > 1:
        listing = ", ".join(f"{s.path} ({s.size})" for s in stores)
        raise CalfError(f"--store: slice stores of different sizes: {listing}")
    size = sizes.pop()
    if size % SIZE_MULTIPLE:
        raise CalfError(
            f"{stores[0].path}: slice size {size} is not divisible by {SIZE_MULTIPLE}, "
            "which the models need"
        )
    try:
        selections = select_rows(stores, csv)
    except CalfError as err:
        raise CalfError(f"{option}: {err}") from None
    used = [s for s in selections if len(s.rows)]
    return TrainingSlices([s.store for s in used], [s.rows for s in used])


class EpochSampler(Sampler):
    """Seeded mini-batches of training-set positions; resumable mid-epoch.

    Epoch e visits ``numpy.random.default_rng([seed, e]).permutation(n)`` in chunks of
    ``batch_size``. The last, shorter batch is kept unless it holds a single slice
    (BatchNorm cannot train on one sample; a different slice sits out each epoch).
    ``max_batches`` caps the batches per epoch. ``set_epoch(e, start)`` selects the epoch
    and skips its first ``start`` batches (after a resume).
    """

    def __init__(self, n: int, batch_size: int, seed: int, max_batches: int | None = None):
        if n < 2:
            raise CalfError(f"the training set has {n} slice(s); training needs at least 2")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        full, rest = divmod(n, batch_size)
        count = full + (1 if rest > 1 else 0)
        self.batches_per_epoch = count if max_batches is None else min(count, max_batches)
        self.epoch, self.start = 1, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        if not 0 <= start <= self.batches_per_epoch:
            raise ValueError(f"start {start} outside 0..{self.batches_per_epoch}")
        self.epoch, self.start = epoch, start

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start

    def __iter__(self) -> Iterator[np.ndarray]:
        order = self.order(self.epoch)
        for b in range(self.start, self.batches_per_epoch):
            yield order[b * self.batch_size : (b + 1) * self.batch_size]

    def state_dict(self, epoch: int, position: int) -> dict[str, int]:
        """The sampler at ``position`` batches into ``epoch`` (what a checkpoint keeps)."""
        return {"seed": self.seed, "n": self.n, "batch_size": self.batch_size,
                "batches_per_epoch": self.batches_per_epoch, "epoch": epoch,
                "position": position}

    def check_state(self, state: dict[str, int], source: Path) -> None:
        """Refuse a checkpoint whose sampler does not match this training set."""
        mine = self.state_dict(self.epoch, 0)
        for key in ("seed", "n", "batch_size", "batches_per_epoch"):
            if state.get(key) != mine[key]:
                raise CalfError(
                    f"{source}: checkpoint sampler has {key}={state.get(key)}, this run "
                    f"{mine[key]}; the training set changed"
                )


def _quiet_worker(_: int) -> None:
    # SLURM signals every process of the job step: workers leave SIGTERM/SIGUSR1 to the
    # main process, which finishes its step, saves and shuts them down
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(
    data: TrainingSlices,
    sampler: Sampler,
    workers: int,
    pin: bool,
    seed: int,
    device: torch.device | None = None,
) -> BatchLoader:
    """A loader of whole float32 batches (the sampler yields them); workers persist.

    It draws its worker seeds from its own generator, not torch's global one, so that
    starting an epoch's iterator leaves the model's random stream (dropout) untouched and
    a run resumed mid-epoch sees the same stream as an uninterrupted one. ``device``: where
    the uint8 batches become float32 (see ``BatchLoader``); the batches are then there.
    """
    return BatchLoader(DataLoader(
        _RawBatches(data),
        sampler=sampler,
        batch_size=None,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=workers > 0,
        worker_init_fn=_quiet_worker if workers > 0 else None,
        prefetch_factor=2 if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    ), device)


def eval_batches(n: int, batch_size: int) -> list[np.ndarray]:
    """Positions 0..n-1 in order, in batches (validation)."""
    return [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
