"""Batches for training: pictures fitted to their buckets, latents (cached in memory or on disk), captions.

Everything random is a pure function of (seed, epoch) or (seed, step), never of a running RNG, so a resumed run
sees exactly the batches, flips and caption orders the uninterrupted run would have seen.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from loradeck.train.buckets import fit, make_buckets, no_upscale_bucket, pick_bucket
from loradeck.train.captions import drops_caption, process_caption
from loradeck.train.data_scan import DatasetSpec

Encoder = Callable[[torch.Tensor], torch.Tensor]  # pixels NCHW in [-1, 1] → latents NCHW


@dataclass(frozen=True)
class BucketSettings:
    resolution: int
    enable: bool = True
    min_size: int = 256
    max_size: int = 1024
    step: int = 64
    no_upscale: bool = False

    @classmethod
    def for_resolution(cls, resolution: int, **given) -> BucketSettings:
        """kohya's defaults scaled to the resolution (256–1024 step 64 at 512; step 8 for tiny models)."""
        step = given.get("step") or (64 if resolution >= 256 else 8)
        return cls(
            resolution=resolution,
            enable=given.get("enable", True),
            min_size=given.get("min_size") or max(step, resolution // 2),
            max_size=given.get("max_size") or resolution * 2,
            step=step,
            no_upscale=given.get("no_upscale", False),
        )


@dataclass
class Batch:
    latents: torch.Tensor  # NCHW, float32
    captions: list[str]
    # Several processes (DDP): this process's rows of the step's global batch, its size, and a weight per row (0 for
    # a stand-in row when the global batch has fewer pictures than processes). One process: all rows, weights 1.
    rows: list[int] | None = None
    total: int = 0
    weights: list[float] | None = None


class TrainDataset:
    """Items in buckets, the epoch order, and the batch of any step."""

    def __init__(
        self,
        spec: DatasetSpec,
        buckets: BucketSettings,
        batch_size: int,
        seed: int,
        *,
        trigger: str = "",
        shuffle_caption: bool = False,
        keep_tokens: int = 0,
        caption_dropout: tuple[float, int, float] = (0.0, 0, 0.0),  # rate, every N epochs, tag rate
        flip_aug: bool = False,
        num_processes: int = 1,
        process_index: int = 0,
    ):
        self.spec, self.settings, self.batch_size, self.seed = spec, buckets, batch_size, seed
        self.trigger = trigger
        self.caption_dropout = caption_dropout
        self.num_processes, self.process_index = num_processes, process_index
        subsets = spec.subsets
        self._shuffle = [s.shuffle_caption if s.shuffle_caption is not None else shuffle_caption for s in subsets]
        self._keep = [s.keep_tokens if s.keep_tokens is not None else keep_tokens for s in subsets]
        self._flip = [s.flip_aug if s.flip_aug is not None else flip_aug for s in subsets]
        self.bucket_list = make_buckets(buckets.resolution, buckets.min_size, buckets.max_size, buckets.step)
        self.item_buckets = [self._bucket_of(item.image) for item in spec.items]
        self._cache: dict[tuple[int, bool], torch.Tensor] = {}
        self._orders: dict[int, list[list[int]]] = {}

    # ------------------------------------------------------------------------------------------------ buckets
    def _bucket_of(self, path: Path) -> tuple[int, int]:
        with Image.open(path) as im:
            w, h = ImageOps.exif_transpose(im).size if im.getexif() else im.size
        s = self.settings
        if not s.enable:
            return s.resolution, s.resolution
        if s.no_upscale:
            return no_upscale_bucket(w, h, s.resolution, s.step)
        return pick_bucket(w, h, self.bucket_list)

    def bucket_info(self) -> dict:
        """kohya ``ss_bucket_info``: resolutions in use with their counts (repeats included) and the mean AR error."""
        counts: dict[tuple[int, int], int] = {}
        err = 0.0
        for item, b in zip(self.spec.items, self.item_buckets, strict=True):
            counts[b] = counts.get(b, 0) + item.repeats
            with Image.open(item.image) as im:
                err += abs(im.width / im.height - b[0] / b[1])
        buckets = {str(i): {"resolution": list(b), "count": c} for i, (b, c) in enumerate(sorted(counts.items()))}
        return {"buckets": buckets, "mean_img_ar_error": err / max(1, len(self.spec.items))}

    # ------------------------------------------------------------------------------------------------ order
    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """Global batches (``batch_size`` per process × processes) of item indices (repeats expanded) for one epoch;
        batches never mix buckets. One step is one global batch, whatever the number of processes."""
        if epoch not in self._orders:
            rng = random.Random(f"order:{self.seed}:{epoch}")
            train = [i for i, item in enumerate(self.spec.items) if not item.is_reg for _ in range(item.repeats)]
            reg = [i for i, item in enumerate(self.spec.items) if item.is_reg for _ in range(item.repeats)]
            if reg:  # kohya: regularisation pictures cycled to as many as the training pictures (epoch-wise offset)
                start = (epoch * len(train)) % len(reg)
                reg = [reg[(start + k) % len(reg)] for k in range(len(train))]
            by_bucket: dict[tuple[int, int], list[int]] = {}
            for idx in train + reg:
                by_bucket.setdefault(self.item_buckets[idx], []).append(idx)
            batches: list[list[int]] = []
            size = self.batch_size * self.num_processes
            for bucket in sorted(by_bucket):
                pool = by_bucket[bucket]
                rng.shuffle(pool)
                batches += [pool[i : i + size] for i in range(0, len(pool), size)]
            rng.shuffle(batches)
            self._orders = {epoch: batches}  # only the current epoch is kept
        return self._orders[epoch]

    @property
    def batches_per_epoch(self) -> int:
        return len(self.epoch_batches(0))

    @property
    def steps_per_epoch(self) -> int:
        return self.batches_per_epoch

    def locate(self, step: int) -> tuple[int, int]:
        """(epoch, index of the step's global batch within the epoch) of a 0-based step."""
        return divmod(step, self.steps_per_epoch)

    # ------------------------------------------------------------------------------------------------ pixels
    def pixels(self, idx: int, flip: bool = False) -> torch.Tensor:
        """One picture fitted to its bucket, CHW float32 in [-1, 1]."""
        with Image.open(self.spec.items[idx].image) as im:
            image = ImageOps.exif_transpose(im).convert("RGB")
        image = fit(image, self.item_buckets[idx])
        if flip:
            image = ImageOps.mirror(image)
        arr = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()

    def _latent(self, idx: int, flip: bool, encode: Encoder) -> torch.Tensor:
        if (idx, flip) in self._cache:
            return self._cache[(idx, flip)]
        return encode(self.pixels(idx, flip)[None])[0].float().cpu()

    # ------------------------------------------------------------------------------------------------ caching
    def cache_latents(self, encode: Encoder, to_disk: bool, on_item: Callable[[int, int], None] | None = None) -> None:
        """Encode every picture once (and its mirror where flips are on); on disk as kohya ``_WxH_sd.npz``."""
        n = len(self.spec.items)
        for idx, item in enumerate(self.spec.items):
            flips = (False, True) if self._flip[item.subset] else (False,)
            npz = _npz_path(item.image, self.item_buckets[idx])
            loaded = _read_npz(npz, item.image, flips) if to_disk else None
            if loaded is None:
                loaded = {f: encode(self.pixels(idx, f)[None])[0].float().cpu() for f in flips}
                if to_disk:
                    _write_npz(npz, loaded)
            for f, lat in loaded.items():
                self._cache[(idx, f)] = lat
            if on_item:
                on_item(idx + 1, n)

    # ------------------------------------------------------------------------------------------------ batches
    def batch(self, step: int, encode: Encoder) -> Batch:
        """This process's share of the step's global batch. Every process draws the flips and captions of the whole
        global batch in order from one generator, so N processes see exactly what one process with the whole batch
        sees; each keeps its own slice of ``batch_size`` rows."""
        epoch, k = self.locate(step)
        indices = self.epoch_batches(epoch)[k]
        rng = random.Random(f"step:{self.seed}:{step}:0")
        start = self.process_index * self.batch_size
        mine = range(start, min(start + self.batch_size, len(indices)))
        rows, latents, captions = [], [], []
        for pos, idx in enumerate(indices):
            item = self.spec.items[idx]
            flip = self._flip[item.subset] and rng.random() < 0.5
            rate, every, tag_rate = self.caption_dropout
            if drops_caption(rng, epoch + 1, rate, every):
                caption = ""  # kohya drops everything, trigger included: unconditional training
            else:
                caption = process_caption(
                    item.caption,
                    rng,
                    shuffle=self._shuffle[item.subset],
                    keep_tokens=self._keep[item.subset],
                    trigger="" if item.is_reg else self.trigger,
                    tag_dropout=tag_rate,
                )
            if pos in mine or (not mine and pos == 0):  # no row of its own: a stand-in with weight 0 (DDP needs one)
                rows.append(pos)
                latents.append(self._latent(idx, flip, encode))
                captions.append(caption)
        weights = [1.0 if pos in mine else 0.0 for pos in rows]
        return Batch(torch.stack(latents), captions, rows, len(indices), weights)


def _npz_path(image: Path, bucket: tuple[int, int]) -> Path:
    return image.with_name(f"{image.stem}_{bucket[0]:04d}x{bucket[1]:04d}_sd.npz")


def _read_npz(path: Path, image: Path, flips: tuple[bool, ...]) -> dict[bool, torch.Tensor] | None:
    """Cached latents when the file is newer than the picture and holds every flip needed."""
    try:
        if path.stat().st_mtime < image.stat().st_mtime:
            return None
        with np.load(path) as data:
            out = {False: torch.from_numpy(data["latents"].copy())}
            if True in flips:
                if "latents_flipped" not in data:
                    return None
                out[True] = torch.from_numpy(data["latents_flipped"].copy())
        return out
    except (OSError, ValueError, KeyError):
        return None


def _write_npz(path: Path, latents: dict[bool, torch.Tensor]) -> None:
    arrays = {"latents": latents[False].numpy()}
    if True in latents:
        arrays["latents_flipped"] = latents[True].numpy()
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
