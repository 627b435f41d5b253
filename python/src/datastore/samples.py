"""A map-style dataset over the files of a version, for PyTorch's DataLoader and the like."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

from .dataset import Dataset, File, PathLike


class FileDataset:
    """The files of a version under `root` (its mount, or a local copy), as samples.

    `len(d)` is the number of files (of this rank's shard); `d[i]` is the bytes of file `i`,
    or `transform(bytes, path)` when a transform is given. It needs nothing of torch, and
    `torch.utils.data.DataLoader` takes it as is, workers and shuffling included::

        ds = Dataset.get("imagenet@v3")
        root = get_data_path("imagenet", "v3")
        data = FileDataset(ds, root, prefix="train/", transform=decode,
                           rank=rank, world_size=world_size)
        loader = DataLoader(data, batch_size=64, shuffle=True, num_workers=8)

    With `world_size` > 1, rank `r` gets files r, r + world_size, r + 2 * world_size, ... of
    the version's order: disjoint shards that together cover every file once.
    """

    def __init__(
        self,
        dataset: Dataset,
        root: PathLike,
        prefix: str = "",
        transform: Optional[Callable[[bytes, str], Any]] = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size} (world_size {world_size})")
        chosen = [f for f in dataset.files if f.path.startswith(prefix)]
        self.files: List[File] = chosen[rank::world_size]
        self.root = Path(root)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Any:
        f = self.files[i]
        data = (self.root / f.path).read_bytes()
        if self.transform is None:
            return data
        return self.transform(data, f.path)

    def paths(self, order: Optional[Sequence[int]] = None) -> List[str]:
        """The paths of the samples, in `order` (indices, as a sampler gives them) if given:
        what `Dataset.prefetch` takes to fetch an epoch ahead in the order it will be read."""
        if order is None:
            return [f.path for f in self.files]
        return [self.files[i].path for i in order]
