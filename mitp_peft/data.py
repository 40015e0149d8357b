"""Readers for the paper's datasets in their published layouts and for your own pairs, and the batch collator.

Every reader returns a `datasets.DatasetDict` with `image`, `text` and `label` (single-label, a `ClassLabel`) or
`labels` (multi-label, a list of `ClassLabel` indices) columns. Bad data stops with an error naming the file and the
row (with `verify_images=True`, the default, every image is decoded once, which takes minutes for 100,000 photos;
without it a broken image fails only when training reaches its row); samples that a dataset's convention
drops (MM-IMDB movies without any of the 23 genres) are counted in the log. With `allow_missing=True` a reader keeps
rows that lack their image or their text (None there; see `MITPConfig.missing_modalities`), and `simulate_missing`
removes one from a seeded share of the rows, as the missing-modality literature measures it.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

import datasets
import numpy as np
import pyarrow.compute as pc
from PIL import Image

from .collator import MITPCollator, text_is_absent  # noqa: F401  (MITPCollator: importable from here too)

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# The 23 genres used for MM-IMDB in the literature (Arevalo et al., 2017), by frequency.
MMIMDB_GENRES = (
    "Drama", "Comedy", "Romance", "Thriller", "Crime", "Action", "Adventure", "Horror", "Documentary", "Mystery",
    "Sci-Fi", "Fantasy", "Family", "Biography", "War", "History", "Music", "Animation", "Musical", "Western", "Sport",
    "Short", "Film-Noir",
)  # fmt: skip
SNLI_VE_LABELS = ("entailment", "neutral", "contradiction")


def load_food101(root: str | Path, verify_images: bool = True, allow_missing: bool = False) -> datasets.DatasetDict:
    """UPMC-Food101: `images/{train,test}/<class>/<file>` and `texts/{train,test}_titles.csv`.

    CSV rows are `image file, title, class` (a header row is recognised by a first cell that is not an image file).
    The 101 class names are the class folders of `images/train`.
    """
    root = Path(root)
    names = sorted(p.name for p in _existing(root / "images" / "train").iterdir() if p.is_dir())
    splits = {}
    for split in ("train", "test"):
        table = _existing(root / "texts" / f"{split}_titles.csv")
        rows = {}
        for number, row in _csv_rows(table):
            if len(row) < 3:
                raise ValueError(f"{table}, row {number}: expected 'image file, title, class', got {row!r}.")
            image_file, title, label = row[0], row[1], row[2]
            image = root / "images" / split / label / image_file
            rows[number] = dict(image=str(image), text=title, label=_label_index(label, names, table, number))
        splits[split] = _dataset(rows, datasets.ClassLabel(names=names), "label", table, verify_images, allow_missing)
    return datasets.DatasetDict(splits)


def load_mmimdb(root: str | Path, verify_images: bool = True, allow_missing: bool = False) -> datasets.DatasetDict:
    """MM-IMDB: `dataset/<id>.jpeg` and `<id>.json` (with `plot` and `genres`), and `split.json`.

    The text is the first plot summary; the labels are the movie's genres among the 23 of the literature. Movies with
    none of them are dropped, as in the literature, and counted in the log.
    """
    root = Path(root)
    split_file = _existing(root / "split.json")
    split_ids = json.loads(split_file.read_text())
    splits = {}
    for split in ("train", "dev", "test"):
        if split not in split_ids:
            raise ValueError(f"{split_file} has no {split!r} split; it has {sorted(split_ids)}.")
        rows, dropped = {}, 0
        for movie in split_ids[split]:
            meta_file = _existing(root / "dataset" / f"{movie}.json")
            meta = json.loads(meta_file.read_text())
            for key in ("plot", "genres"):
                if key not in meta:
                    raise ValueError(f"{meta_file}: no {key!r} field.")
            labels = sorted({MMIMDB_GENRES.index(g) for g in meta["genres"] if g in MMIMDB_GENRES})
            if not labels:
                dropped += 1
                continue
            plot = meta["plot"][0] if isinstance(meta["plot"], list) else meta["plot"]
            rows[f"movie {movie}"] = dict(image=str(root / "dataset" / f"{movie}.jpeg"), text=plot, labels=labels)
        if dropped:
            logger.warning(
                "MM-IMDB %s: dropped %d of %d movies with none of the 23 genres.", split, dropped, len(rows) + dropped
            )
        label_feature = datasets.Sequence(datasets.ClassLabel(names=list(MMIMDB_GENRES)))
        splits[split] = _dataset(rows, label_feature, "labels", split_file, verify_images, allow_missing)
    return datasets.DatasetDict(splits)


def load_snli_ve(
    root: str | Path, images: Optional[str | Path] = None, verify_images: bool = True, allow_missing: bool = False
) -> datasets.DatasetDict:
    """SNLI-VE: `snli_ve_{train,dev,test}.jsonl` (`Flickr30K_ID`, `sentence2`, `gold_label`) and the Flickr30k
    images (`<images>/<id>.jpg`, by default `<root>/flickr30k_images`). The hypothesis is the text."""
    root = Path(root)
    image_dir = Path(images) if images is not None else root / "flickr30k_images"
    splits = {}
    for split in ("train", "dev", "test"):
        table = _existing(root / f"snli_ve_{split}.jsonl")
        rows = {}
        for number, record in _jsonl_rows(table):
            for key in ("Flickr30K_ID", "sentence2", "gold_label"):
                if key not in record:
                    raise ValueError(f"{table}, row {number}: no {key!r} field.")
            label = _label_index(record["gold_label"], SNLI_VE_LABELS, table, number)
            image = image_dir / f"{record['Flickr30K_ID']}.jpg"
            rows[number] = dict(image=str(image), text=record["sentence2"], label=label)
        label_feature = datasets.ClassLabel(names=list(SNLI_VE_LABELS))
        splits[split] = _dataset(rows, label_feature, "label", table, verify_images, allow_missing)
    return datasets.DatasetDict(splits)


def load_pairs(
    files: dict[str, str | Path],
    image_column: str = "image",
    text_column: str = "text",
    label_column: str = "label",
    label_names: Optional[Iterable[str]] = None,
    verify_images: bool = True,
    allow_missing: bool = False,
) -> datasets.DatasetDict:
    """Your own data: a CSV (with a header; Excel's UTF-8 BOM is fine) or JSON-lines file per split, e.g.
    `{"train": "train.csv", "validation": "val.csv"}`, each row holding an image path (relative to the file's folder
    or absolute), a text and a label. A training split alone is fine.

    The classes are `label_names` in that order, or else the training split's labels (the first split's where none
    is called "train"): numbers in numeric order (2 before 10), other names sorted. A label that only another split
    holds is refused, naming the file and the row: a model cannot learn a class it never sees.
    """
    tables = {split: _existing(Path(path)) for split, path in files.items()}
    records = {split: list(_table_rows(table)) for split, table in tables.items()}
    for split, table in tables.items():
        if not records[split]:
            raise ValueError(f"{table} holds no rows (only a header, or nothing): give it at least one pair.")
        for number, record in records[split]:
            missing = [c for c in (image_column, text_column, label_column) if c not in record]
            if missing:
                raise ValueError(f"{table}, row {number}: missing column(s) {missing}; it has {sorted(record)}.")
    for split, table in tables.items():
        for number, record in records[split]:
            record[label_column] = _clean_label(record[label_column], table, number)
    names = list(label_names) if label_names is not None else None
    if names is None:
        training = "train" if "train" in records else next(iter(records))
        names = _ordered_labels({record[label_column] for _, record in records[training]})
    splits = {}
    for split, table in tables.items():
        rows = {
            number: dict(
                image=str(table.parent / record[image_column]) if str(record[image_column] or "").strip() else None,
                text=None if record[text_column] is None else str(record[text_column]),
                label=_label_index(str(record[label_column]), names, table, number),
            )
            for number, record in records[split]
        }
        splits[split] = _dataset(rows, datasets.ClassLabel(names=names), "label", table, verify_images, allow_missing)
    return datasets.DatasetDict(splits)


def _ordered_labels(labels: set[str]) -> list[str]:
    """Numbers in numeric order (a CSV's 2 before its 10), names in alphabetical order."""
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


def load_hub(
    name_or_path: str,
    image_column: str = "image",
    text_column: str = "text",
    label_column: str = "label",
    allow_missing: bool = False,
    **load_kwargs: Any,
) -> datasets.DatasetDict:
    """A dataset through `datasets.load_dataset` (a hub id, or a local folder in the same layout), with its
    columns renamed to `image`, `text` and `label`, images decoded as `datasets.Image` and labels as `ClassLabel`.
    A row whose image is null or whose text is null or blank is an error naming it, unless `allow_missing`."""
    data = datasets.load_dataset(name_or_path, **load_kwargs)
    if not isinstance(data, datasets.DatasetDict):
        raise ValueError(f"{name_or_path}: expected named splits, got {type(data).__name__}; do not pass split=.")
    for split, dataset in data.items():
        missing = [c for c in (image_column, text_column, label_column) if c not in dataset.column_names]
        if missing:
            raise ValueError(f"{name_or_path} ({split}): missing column(s) {missing}; it has {dataset.column_names}.")
        if not allow_missing:
            _refuse_absent_cells(dataset, image_column, text_column, f"{name_or_path} ({split})")
    renames = {old: new for old, new in ((image_column, "image"), (text_column, "text"), (label_column, "label"))}
    data = data.rename_columns({old: new for old, new in renames.items() if old != new})
    first = next(iter(data.values()))
    if not isinstance(first.features["image"], datasets.Image):
        data = data.cast_column("image", datasets.Image())
    if not isinstance(first.features["label"], datasets.ClassLabel):
        data = data.class_encode_column("label")
    return data.select_columns(["image", "text", "label"])


MISSING_TYPES = ("image", "text", "both")


def missing_pattern(size: int, rate: float, kind: str, seed: int = 0) -> list[str]:
    """What each of `size` rows lacks ("", "image" or "text"): `rate` of them, chosen from `seed` (the same rows every
    run), lack the image (`kind="image"`), the text (`"text"`), or half of them each (`"both"`, the mixed setting of
    MAP, Lee et al., CVPR 2023)."""
    if kind not in MISSING_TYPES:
        raise ValueError(f"missing type must be one of {MISSING_TYPES}, got {kind!r}.")
    if not 0 <= rate <= 1:
        raise ValueError(f"missing rate must be in [0, 1], got {rate!r}.")
    chosen = np.random.default_rng(seed).permutation(size)[: round(rate * size)]
    lacks = [""] * size
    for position, row in enumerate(chosen):
        lacks[row] = kind if kind != "both" else ("image" if position % 2 == 0 else "text")
    return lacks


def simulate_missing(dataset: datasets.Dataset, rate: float, kind: str, seed: int = 0) -> datasets.Dataset:
    """The dataset with `rate` of its rows lacking a modality (see `missing_pattern`): None in their place, and the
    column `missing` recording what each row lacks ("", "image" or "text")."""
    lacks = missing_pattern(len(dataset), rate, kind, seed)

    def remove(row: dict, index: int) -> dict:
        return {**row, "missing": lacks[index], **({lacks[index]: None} if lacks[index] else {})}

    return dataset.map(remove, with_indices=True, desc="simulating missing modalities")


def _existing(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (see the reader's docstring for the expected layout).")
    return path


def _csv_rows(table: Path) -> Iterable[tuple[int, list[str]]]:
    with table.open(newline="", encoding="utf-8-sig") as f:
        for number, row in enumerate(csv.reader(f), start=1):
            if number == 1 and row and not row[0].lower().endswith(IMAGE_SUFFIXES):
                continue  # a header
            if row:
                yield number, row


def _jsonl_rows(table: Path) -> Iterable[tuple[int, dict]]:
    with table.open(encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{table}, row {number}: not valid JSON ({error.msg}).") from error


def _table_rows(table: Path) -> Iterable[tuple[int, dict]]:
    if table.suffix in (".jsonl", ".json"):
        if table.read_text(encoding="utf-8-sig").lstrip().startswith("["):
            raise ValueError(
                f"{table} is a JSON array; pairs files are JSON lines (one object per line) or CSV. Convert it, e.g. "
                "with `datasets.Dataset.from_json(path).to_json(path_jsonl)`."
            )
        yield from _jsonl_rows(table)
        return
    with table.open(newline="", encoding="utf-8-sig") as f:  # utf-8-sig: Excel writes a byte-order mark
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        other = [d for d in (";", "\t", "|") if len(header) == 1 and d in header[0]]
        if other:
            raise ValueError(
                f"{table}: the header {header[0]!r} is one column, which looks {other[0]!r}-separated; pairs CSV "
                "files are comma-separated. Save it with commas (e.g. pandas' to_csv), or as JSON lines."
            )
        yield from enumerate(reader, start=2)  # row 1 is the header


MISSING_VALUES = ("nan", "na", "n/a", "none", "null")
"""Cells that spreadsheet and pandas exports write for a missing value."""


def _clean_label(label: Any, table: Path, number: int) -> str:
    """A label cell as a class name, or an error naming the row: an empty cell, a missing-value marker or stray spaces
    would otherwise become classes of their own."""
    text = "" if label is None else str(label)
    if not text.strip():
        raise ValueError(f"{table}, row {number}: the label is empty. Give every row a label, or drop the row.")
    if text.strip().lower() in MISSING_VALUES:
        raise ValueError(
            f"{table}, row {number}: the label is {text!r}, which exports write for a missing value (pandas writes "
            "NaN for an empty cell). Give the row its label, or drop it."
        )
    if text != text.strip():
        raise ValueError(
            f"{table}, row {number}: the label {text!r} has leading or trailing spaces, so it would be a class apart "
            f"from {text.strip()!r}. Strip the spaces in the file."
        )
    return text


def _refuse_absent_cells(dataset: datasets.Dataset, image_column: str, text_column: str, source: str) -> None:
    """The first row of a hub dataset without its image or its text, as an error naming it. Read from the Arrow
    columns, so no image is decoded: `text_is_absent`'s rule, on a whole column at once."""
    columns = dataset.select_columns([image_column, text_column]).with_format("arrow")[:]
    for column, what in ((image_column, "image"), (text_column, "text")):
        values = columns.column(column)
        absent = pc.is_null(values)
        if what == "text":
            absent = pc.or_kleene(absent, pc.equal(pc.utf8_trim_whitespace(values.cast("string")), ""))
        rows = pc.indices_nonzero(pc.fill_null(absent, False))
        if len(rows):
            raise ValueError(
                f"{source}, row {rows[0].as_py()}: no {what} ({len(rows)} row(s) lack one). Give it, drop the rows, "
                "or read with allow_missing=True (for an adapter with missing_modalities)."
            )


def _label_index(label: str, names: Iterable[str], table: Path, number: int) -> int:
    names = list(names)
    if label not in names:
        shown = names if len(names) <= 10 else [*names[:10], "..."]
        raise ValueError(f"{table}, row {number}: unknown label {label!r}; known labels: {shown}.")
    return names.index(label)


def _dataset(
    rows: dict[int | str, dict],
    label_feature: Any,
    label_key: str,
    source: Path,
    verify: bool,
    allow_missing: bool = False,
) -> datasets.Dataset:
    """The rows (keyed by the row number or name the errors give) as a Dataset, once every image was found.

    A row without its image (an empty cell, or a file that does not exist) or without its text (an empty cell) is an
    error naming it, unless `allow_missing`: then the image or the text is None, and the counts are logged."""
    absent = {"image": 0, "text": 0}
    for number, row in rows.items():
        where = f"row {number}" if isinstance(number, int) else number
        if text_is_absent(row["text"]):
            if not allow_missing:
                raise ValueError(
                    f"{source}, {where}: the text is empty. Give it, drop the row, or read with allow_missing=True "
                    "(for an adapter with missing_modalities)."
                )
            row["text"], absent["text"] = None, absent["text"] + 1
        image = None if row["image"] is None else Path(row["image"])
        if image is None or not image.exists():
            if not allow_missing:
                shown = "no image" if image is None else f"image {image} does not exist"
                raise FileNotFoundError(
                    f"{source}, {where}: {shown}. Give it, drop the row, or read with allow_missing=True (for an "
                    "adapter with missing_modalities)."
                )
            row["image"], absent["image"] = None, absent["image"] + 1
            continue
        if verify:
            try:
                with Image.open(image) as opened:
                    opened.load()  # a full decode: verify() passes truncated JPEGs
            except Exception as error:  # PIL raises many types for broken files
                raise ValueError(f"{source}, {where}: image {image} cannot be read ({error}).") from error
    if any(absent.values()):
        logger.info("%s: %d of %d rows without their image, %d without their text.", source, absent["image"],
                    len(rows), absent["text"])  # fmt: skip
    features = datasets.Features(image=datasets.Image(), text=datasets.Value("string"), **{label_key: label_feature})
    return datasets.Dataset.from_list(list(rows.values()), features=features)
