"""Find the training pictures and their captions, kohya's way, and report every bad file before training starts.

Layouts (docs/reference/kohya-training.md §1):
- ``--data DIR`` whose sub-folders are named ``N_name``: each is a subset repeated N times, ``name`` is its class
  caption for pictures without a caption file; sub-folders without a leading number are skipped with a warning.
- ``--data DIR`` with pictures directly inside: one subset, repeated once (kohya would refuse; we are kind).
- ``--dataset-config FILE``: kohya's TOML (``[general]``, ``[[datasets]]``, ``[[datasets.subsets]]``; the lowest
  level wins).
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loradeck.errors import LoradeckError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CAPTION_EXTS = (".txt", ".caption")
_REPEAT_DIR = re.compile(r"^(\d+)_(.*)$")


@dataclass(frozen=True)
class DataProblem:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class DatasetError(LoradeckError):
    """Training data with bad files; ``problems`` lists each one with its path."""

    def __init__(self, problems: list[DataProblem]):
        self.problems = problems
        shown = "; ".join(str(p) for p in problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        n = len(problems)
        super().__init__(f"The training data has {n} problem{'s' if n != 1 else ''}: {shown}{more}.")


@dataclass
class Subset:
    """One folder of pictures with its kohya options."""

    image_dir: Path
    num_repeats: int = 1
    class_tokens: str = ""
    caption_extension: str = ".txt"
    shuffle_caption: bool | None = None  # None: the run's setting
    keep_tokens: int | None = None
    flip_aug: bool | None = None
    caption_prefix: str = ""
    caption_suffix: str = ""
    is_reg: bool = False  # regularisation pictures: no trigger, cycled to the number of training pictures


@dataclass(frozen=True)
class Item:
    """One training picture: file, raw caption (first line), its subset's index and repeat count."""

    image: Path
    caption: str
    subset: int
    repeats: int
    is_reg: bool = False


@dataclass
class DatasetSpec:
    """What was found: subsets, items, dataset-level options from a TOML (None = the run's setting), warnings."""

    subsets: list[Subset]
    items: list[Item] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)  # resolution, batch_size, bucket settings from TOML
    warnings: list[str] = field(default_factory=list)

    @property
    def num_train_images(self) -> int:
        """Training images per epoch, repeats included (kohya's ``ss_num_train_images``)."""
        return sum(i.repeats for i in self.items if not i.is_reg)

    @property
    def num_reg_images(self) -> int:
        """Regularisation images per epoch: cycled to the training count (kohya), 0 without any."""
        return self.num_train_images if any(i.is_reg for i in self.items) else 0

    def tag_frequency(self, trigger: str = "") -> dict[str, dict[str, int]]:
        """kohya ``ss_tag_frequency``: per folder name, comma tags lower-cased, counted once per picture.

        Captions are counted as trained, with the trigger prepended, so tools that guess triggers from tag
        frequencies find it."""
        from loradeck.train.captions import with_trigger

        out: dict[str, Counter] = {}
        for item in self.items:
            if item.is_reg:
                continue
            folder = self.subsets[item.subset].image_dir.name
            caption = with_trigger(item.caption, trigger)
            tags = [t.strip().lower() for t in caption.split(",") if t.strip()]
            out.setdefault(folder, Counter()).update(tags)
        return {k: dict(v) for k, v in out.items()}

    def dataset_dirs(self, reg: bool = False) -> dict[str, dict[str, int]]:
        """kohya ``ss_dataset_dirs`` (``reg``: ``ss_reg_dataset_dirs``): {folder: {"n_repeats": N, "img_count": M}}."""
        counts = Counter(i.subset for i in self.items)
        return {
            s.image_dir.name: {"n_repeats": s.num_repeats, "img_count": counts.get(k, 0)}
            for k, s in enumerate(self.subsets)
            if s.is_reg == reg
        }


# ------------------------------------------------------------------------------------------------ finding subsets
def subsets_from_folder(
    data: Path, caption_extension: str = ".txt"
) -> tuple[list[Subset], list[str], list[DataProblem]]:
    """Subsets of a data folder (kohya ``N_name`` sub-folders, or the pictures directly inside)."""
    if not data.is_dir():
        return [], [], [DataProblem(data, "no such folder")]
    subdirs = sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith("."))
    direct = [p for p in data.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
    subsets: list[Subset] = []
    warnings: list[str] = []
    for d in subdirs:
        m = _REPEAT_DIR.match(d.name)
        if not m:
            warnings.append(f"{d}: skipped, the folder name does not start with a repeat count (like 10_{d.name})")
            continue
        subsets.append(Subset(d, int(m[1]), m[2].replace("_", " ").strip(), caption_extension))
    if direct or not subsets:
        subsets.insert(0, Subset(data, 1, "", caption_extension))
    return subsets, warnings, []


def subsets_from_toml(path: Path) -> tuple[list[Subset], dict[str, Any], list[DataProblem]]:
    """kohya dataset config: subsets with general < dataset < subset options, and the first dataset's options."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return [], {}, [DataProblem(path, f"cannot be read ({exc.strerror or exc})")]
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        return [], {}, [DataProblem(path, f"is not valid TOML ({type(exc).__name__}: {exc})")]
    why = toml_layout_problem(doc)
    if why:
        return [], {}, [DataProblem(path, why)]
    general = doc.get("general", {})
    datasets = doc.get("datasets", [])
    if not datasets:
        return [], {}, [DataProblem(path, "has no [[datasets]] table")]
    subset_keys = {f for f in Subset.__dataclass_fields__} - {"image_dir"}
    dataset_keys = (
        "resolution", "batch_size", "enable_bucket", "min_bucket_reso", "max_bucket_reso", "bucket_reso_steps",
        "bucket_no_upscale",
    )  # fmt: skip
    options = {k: general[k] for k in dataset_keys if k in general} | {
        k: datasets[0][k] for k in dataset_keys if k in datasets[0]
    }
    subsets: list[Subset] = []
    problems: list[DataProblem] = []
    for ds in datasets:
        for sub in ds.get("subsets", []):
            merged = {**general, **{k: v for k, v in ds.items() if k != "subsets"}, **sub}
            if "image_dir" not in merged:
                problems.append(DataProblem(path, "a subset has no image_dir"))
                continue
            image_dir = Path(merged["image_dir"]).expanduser()
            if not image_dir.is_absolute():
                image_dir = path.parent / image_dir
            kwargs = {k: v for k, v in merged.items() if k in subset_keys}
            bad = next((k for k, v in kwargs.items() if not _subset_value_ok(k, v)), None)
            if bad:
                problems.append(DataProblem(path, f"a subset's {bad} = {str(kwargs[bad])[:60]!r} has the wrong type"))
                continue
            subsets.append(Subset(image_dir, **kwargs))
    if "resolution" in options and isinstance(options["resolution"], list | tuple):
        options["resolution"] = int(options["resolution"][0])
    return subsets, options, problems


def toml_layout_problem(doc: dict[str, Any]) -> str | None:
    """Why a kohya dataset TOML does not have its tables where they belong (None when it does): checked before any
    value is used, so a hostile file gives one sentence instead of a TypeError deep in the scan."""
    if not isinstance(doc.get("general", {}), dict):
        return "[general] is not a table"
    datasets = doc.get("datasets", [])
    if not isinstance(datasets, list) or not all(isinstance(d, dict) for d in datasets):
        return "datasets is not a list of [[datasets]] tables"
    for ds in datasets:
        subs = ds.get("subsets", [])
        if not isinstance(subs, list) or not all(isinstance(x, dict) for x in subs):
            return "a dataset's subsets is not a list of [[datasets.subsets]] tables"
        if "image_dir" in ds and not isinstance(ds["image_dir"], str):
            return "an image_dir is not a string"
        if any("image_dir" in x and not isinstance(x["image_dir"], str) for x in subs):
            return "an image_dir is not a string"
    if "image_dir" in doc.get("general", {}) and not isinstance(doc["general"]["image_dir"], str):
        return "an image_dir is not a string"
    reso = doc.get("general", {}).get("resolution", datasets[0].get("resolution") if datasets else None)
    if isinstance(reso, list | tuple) and (not reso or not isinstance(reso[0], int) or isinstance(reso[0], bool)):
        return "resolution is not a number or a list of numbers"
    return None


_SUBSET_TYPES = {"num_repeats": int, "keep_tokens": int, "shuffle_caption": bool, "flip_aug": bool, "is_reg": bool}


def _subset_value_ok(key: str, value: Any) -> bool:
    want = _SUBSET_TYPES.get(key, str)
    if value is None:
        return key in ("shuffle_caption", "keep_tokens", "flip_aug")
    if want is int:
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1_000_000
    return isinstance(value, want)


# ------------------------------------------------------------------------------------------------ files
MAX_CAPTION_BYTES = 1024 * 1024


def read_caption(path: Path) -> str:
    """First line of a caption file (kohya ignores the rest unless wildcards are on)."""
    with path.open("rb") as f:  # capped: only the first line is used, and a caption is not a megabyte
        data = f.read(MAX_CAPTION_BYTES)
    text = data.split(b"\n", 1)[0].decode("utf-8-sig")
    return text.splitlines()[0].strip() if text.strip() else ""


def _caption_file(image: Path, preferred: str) -> Path | None:
    for ext in (preferred, *CAPTION_EXTS):
        p = image.with_suffix(ext)
        if p.is_file():
            return p
    return None


def _check_image(path: Path) -> str | None:
    """None when PIL can open and decode the picture, else why not."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.width < 1 or im.height < 1:
                return "the picture is empty"
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        return f"cannot be read as a picture ({type(exc).__name__}: {exc})"
    return None


def scan_subset(index: int, subset: Subset) -> tuple[list[Item], list[DataProblem]]:
    if not subset.image_dir.is_dir():
        return [], [DataProblem(subset.image_dir, "no such folder")]
    files = sorted(p for p in subset.image_dir.iterdir() if p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTS]
    problems: list[DataProblem] = []
    if not images:
        problems.append(DataProblem(subset.image_dir, "the folder holds no pictures (.png .jpg .jpeg .webp .bmp)"))
    stems = {p.stem for p in images}
    for p in files:
        if p.suffix.lower() in CAPTION_EXTS and p.stem not in stems:
            problems.append(DataProblem(p, "a caption without a picture of the same name"))
    items: list[Item] = []
    for image in images:
        why = _check_image(image)
        if why:
            problems.append(DataProblem(image, why))
            continue
        cap_path = _caption_file(image, subset.caption_extension)
        caption = subset.class_tokens
        if cap_path is not None:
            try:
                caption = read_caption(cap_path)
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(DataProblem(cap_path, f"the caption cannot be read ({exc})"))
                continue
            if not caption:
                problems.append(DataProblem(cap_path, "the caption file is empty"))
                continue
        caption = f"{subset.caption_prefix}{caption}{subset.caption_suffix}"
        items.append(Item(image, caption, index, subset.num_repeats, subset.is_reg))
    if subset.num_repeats < 1:
        problems.append(DataProblem(subset.image_dir, f"repeat count {subset.num_repeats} must be at least 1"))
    return items, problems


def scan_dataset(
    data: Path | None, dataset_config: Path | None, caption_extension: str = ".txt", reg_data: Path | None = None
) -> DatasetSpec:
    """Every subset and picture, or DatasetError listing every problem found (all of them, not just the first).

    ``reg_data``: kohya ``--reg_data_dir``, the same folder layout, as regularisation subsets."""
    options: dict[str, Any] = {}
    if dataset_config is not None:
        subsets, options, problems = subsets_from_toml(dataset_config)
        warnings: list[str] = []
    else:
        assert data is not None
        subsets, warnings, problems = subsets_from_folder(data, caption_extension)
    if reg_data is not None:
        reg, reg_warnings, reg_problems = subsets_from_folder(reg_data, caption_extension)
        for sub in reg:
            sub.is_reg = True
        subsets, warnings, problems = subsets + reg, warnings + reg_warnings, problems + reg_problems
    spec = DatasetSpec(subsets, options=options, warnings=warnings)
    for k, subset in enumerate(subsets):
        items, found = scan_subset(k, subset)
        spec.items += items
        problems += found
    if not problems and not any(not i.is_reg for i in spec.items):
        problems.append(DataProblem(dataset_config or data, "no training pictures were found"))
    if problems:
        raise DatasetError(problems)
    return spec
