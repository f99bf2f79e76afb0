"""Load, clean, deduplicate and split arXiv abstracts CSVs (Kaggle format).

The Kaggle file has columns `titles`, `summaries`, `terms`, where `terms` is a Python-list
string mixing arXiv categories with ACM and MSC codes. Several files can be read at once; they
are deduplicated across files as within one. An optional `date` column (ISO dates) is kept for
the report's drift check; other extra columns are ignored. Everything that is dropped, folded
or left undated is counted, so the run can print where every row went.
"""

from __future__ import annotations

import ast
import bisect
import csv
import gzip
import hashlib
import lzma
import os
import re
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from lambda_handler.files import sha256_file
from lambda_handler.year_prior import parse_paper_date
from train.categories import canonical, is_arxiv_category, respelled
from train.thresholds import FOLDS

REQUIRED_COLUMNS = ("titles", "summaries", "terms")
DATE_COLUMN = "date"
MAX_UNPARSABLE_FRACTION = 0.01
ROWS_NAMED = 5  # bad rows named in an error or warning, at most
MIN_ABSTRACT_KEY_WORDS = 20  # shorter abstracts are no duplicate key (none in the shared data)
# Shorter titles ("Introduction", "Erratum", "Dark Energy") are no duplicate key either: two
# papers may share them (none in the shared data, where one title repeats).
MIN_TITLE_KEY_WORDS = 4
_NOT_ALNUM = re.compile(r"[\W_]+")
_STRING_LITERAL = re.compile(r"'[^']*'|\"[^\"]*\"")
_PANDAS_TWIN = re.compile(r"(.+)\.[0-9]+")  # pandas renames a repeated column `terms` to `terms.1`


class DataError(Exception):
    """A problem with the input data, reported to the user as one line."""


@dataclass(frozen=True)
class Paper:
    """One deduplicated paper with its (canonical) arXiv category codes, primary first."""

    title: str
    abstract: str
    labels: tuple[str, ...]
    date: date | None = None
    primary: str = ""  # the first listed category, kept when the label filter drops it
    source: str = ""  # name of the file it was read from (the first one, if listed twice)

    def __post_init__(self) -> None:
        if not self.primary and self.labels:
            object.__setattr__(self, "primary", self.labels[0])


@dataclass
class Splits:
    """Train/validation/test papers, the kept label set and the counts behind them."""

    train: list[Paper]
    val: list[Paper]
    test: list[Paper]
    labels: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    dropped_codes: Counter[str] = field(default_factory=Counter)
    files: dict[str, dict[str, int]] = field(default_factory=dict)  # per input file
    unparsable_rows: dict[str, list[int]] = field(default_factory=dict)  # per file: the first
    folded_codes: Counter[str] = field(default_factory=Counter)  # "alias -> canonical": count
    unknown_codes: Counter[str] = field(default_factory=Counter)  # arXiv-style, not in taxonomy
    dropped_labels: Counter[str] = field(default_factory=Counter)  # label: its training papers
    checksums: dict[str, tuple[str, int]] = field(default_factory=dict)  # per file: sha256, bytes


def read_csv(path: Path) -> pd.DataFrame:
    """Read a Kaggle-format CSV or CSV.gz; raise DataError naming the file and the problem."""
    if path.is_dir():
        raise DataError(f"{path} is a folder; pass each CSV file with its own --data")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        frame = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            compression="infer",
            encoding="utf-8",
            on_bad_lines="error",
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a CSV file (it is not UTF-8 text)") from None
    except (gzip.BadGzipFile, zlib.error):
        raise DataError(f"{path}: not a valid gzip file") from None
    except EOFError:
        raise DataError(f"{path}: the compressed file ends early (truncated?)") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    except (pd.errors.ParserError, csv.Error) as error:
        detail = " ".join(str(error).split())
        raise DataError(f"{path}: not a valid CSV file ({detail})") from None
    except (zipfile.BadZipFile, lzma.LZMAError, OSError, ImportError, ValueError) as error:
        # pandas infers zip, bz2, xz, zstd ... from the suffix; a zip must hold exactly one CSV
        detail = " ".join(str(error).split())[:200]
        raise DataError(
            f"{path}: cannot be read as a (compressed) CSV file ({detail}); pass each CSV, plain "
            "or .gz, with its own --data"
        ) from None
    repeated = repeated_columns([str(column) for column in frame.columns])
    if repeated:
        raise DataError(
            f"{path}: the header names {', '.join(map(repr, repeated))} more than once (in "
            "any case); which column holds the data cannot be told: keep one"
        )
    # `Titles` or ` terms` name the required columns too, as `Date` names the date column.
    frame = frame.rename(
        columns={
            column: str(column).strip().lower()
            for column in frame.columns
            if str(column).strip().lower() in REQUIRED_COLUMNS
        }
    )
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        found = ", ".join(repr(str(column)[:50]) for column in frame.columns[:8])
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (found: {found})")
    if frame.empty:
        raise DataError(f"{path}: the file has a header but no rows")
    return frame


def repeated_columns(columns: list[str]) -> list[str]:
    """The columns this module reads (`terms`, `date` ...) that a header names twice, in any
    case or spacing (pandas reads a repeated `terms` as `terms` and `terms.1`)."""
    read = (*REQUIRED_COLUMNS, DATE_COLUMN)
    names = []
    for column in columns:
        name = column.strip().lower()
        twin = _PANDAS_TWIN.fullmatch(name)
        names.append(twin.group(1) if twin and twin.group(1) in read else name)
    counts = Counter(names)
    return [name for name in read if counts[name] > 1]


def parse_terms(raw: str) -> list[str] | None:
    """Parse a `terms` cell such as "['cs.CV', 'cs.LG']"; None when it is not a list of
    strings, or when two string literals stand side by side ("['cs.LG' 'stat.ML']", as numpy
    prints an array), which Python would silently join into one code."""
    text = raw.strip()
    try:
        tree = ast.parse(text, mode="eval")
        value = ast.literal_eval(tree)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        return None
    elements = tree.body.elts  # type: ignore[attr-defined]  # a list or tuple display
    segments = (ast.get_source_segment(text, element) or "" for element in elements)
    if any(len(_STRING_LITERAL.findall(segment)) > 1 for segment in segments):
        return None
    return [v.strip() for v in value]


def normalize_title(title: str) -> str:
    """Title key for deduplication: case, punctuation and spacing ignored."""
    return _NOT_ALNUM.sub(" ", title.casefold()).strip()


def normalize_abstract(abstract: str) -> str:
    """Abstract key for deduplication: case and spacing ignored."""
    return " ".join(abstract.casefold().split())


def paper_key(title: str, abstract: str) -> str:
    """One paper's text as the split hashes it, and as `train/compare.py` pairs two runs' papers."""
    return f"{normalize_title(title)}\n{normalize_abstract(abstract)}"


@dataclass
class FileLoad:
    """What one file contributed: its papers (before cross-file deduplication) and counts."""

    papers: list[Paper]
    counts: dict[str, int]
    dropped_codes: Counter[str] = field(default_factory=Counter)
    folded_codes: Counter[str] = field(default_factory=Counter)
    unknown_codes: Counter[str] = field(default_factory=Counter)
    unparsable_rows: list[int] = field(default_factory=list)  # the first few, numbered from 1
    sha256: str = ""  # of the file as it was read, not as it may be when the run ends
    size: int = 0


def describe_rows(rows: list[int], total: int) -> str:
    """`data rows 3, 17 and 40 more`: where to look, numbered from 1 after the header (a
    quoted field that spans lines makes its row span them too)."""
    listed = ", ".join(map(str, rows))
    more = f" and {total - len(rows):,} more" if total > len(rows) else ""
    return f"data row{'s' if total > 1 else ''} {listed}{more}"


def read_papers(path: Path, source: str | None = None) -> FileLoad:
    """Parse one file's rows into papers with canonical arXiv codes; count every drop. Each
    paper's `source` is `source`, by default the file's name."""
    frame = read_csv(path)
    source = source or path.name
    load = FileLoad(
        [], {"rows_read": len(frame)}, sha256=sha256_file(path), size=path.stat().st_size
    )
    # `date`, or `Date` and the like: a dated file is never silently read as undated
    date_column = next((c for c in frame.columns if str(c).strip().lower() == DATE_COLUMN), None)
    has_date = date_column is not None
    dates = frame[date_column] if has_date else [""] * len(frame)
    unparsable = empty_text = bad_dates = 0
    rows = frame[list(REQUIRED_COLUMNS)].itertuples(index=False)
    for row, ((title, abstract, raw_terms), raw_date) in enumerate(zip(rows, dates, strict=True)):
        terms = parse_terms(raw_terms)
        if terms is None:
            unparsable += 1
            if len(load.unparsable_rows) < ROWS_NAMED:
                load.unparsable_rows.append(row + 1)
            continue
        if not abstract.strip():
            empty_text += 1
            continue
        labels = []
        for code in terms:
            folded = canonical(code) or canonical(respelled(code) or "")
            if folded is not None:
                labels.append(folded)
                if folded != code:
                    load.folded_codes[f"{code} -> {folded}"] += 1
            elif is_arxiv_category(code):
                load.unknown_codes[code] += 1
            else:
                load.dropped_codes[code] += 1
        paper_date = parse_paper_date(raw_date) if has_date else None
        bad_dates += has_date and paper_date is None
        labels = list(dict.fromkeys(labels))
        load.papers.append(
            Paper(title.strip(), abstract.strip(), tuple(labels), paper_date, source=source)
        )
    if unparsable > MAX_UNPARSABLE_FRACTION * len(frame):
        raise DataError(
            f"{path}: {unparsable} of {len(frame)} rows have an unparsable 'terms' value "
            f"(more than {MAX_UNPARSABLE_FRACTION:.0%}: "
            f"{describe_rows(load.unparsable_rows, unparsable)}); "
            "is this the Kaggle format?"
        )
    load.counts.update(
        rows_unparsable_terms=unparsable,
        rows_empty_abstract=empty_text,
        rows_dated=len(load.papers) - bad_dates if has_date else 0,
        rows_unparsable_date=bad_dates,
        papers_without_arxiv_code=sum(not paper.labels for paper in load.papers),
    )
    return load


def load_papers(
    paths: Path | list[Path],
) -> tuple[list[Paper], dict[str, int], Counter[str]]:
    """Papers of one or more files, deduplicated across all; returns papers, counts, dropped."""
    papers, counts, dropped, _ = load_files([paths] if isinstance(paths, Path) else paths)
    return papers, counts, dropped


def distinct_files(paths: Iterable[Path]) -> list[Path]:
    """Each file once, as first spelled: `a.csv` and `./x/../a.csv` are read (and listed) once."""
    seen: set[str] = set()
    kept = []
    for path in paths:
        real = os.path.realpath(path)  # never raises (a symlink loop stays for read_csv to name)
        if real not in seen:
            seen.add(real)
            kept.append(path)
    return kept


def load_files(
    paths: list[Path],
) -> tuple[list[Paper], dict[str, int], Counter[str], dict[str, FileLoad]]:
    """Read every file once (`distinct_files`), then deduplicate papers across them (the first
    file's copy of a paper wins).

    Papers name their file by its name, or by its path where two files share a name."""
    paths = distinct_files(paths)
    names = Counter(path.name for path in paths)
    sources = {str(path): path.name if names[path.name] == 1 else str(path) for path in paths}
    loads = {key: read_papers(Path(key), source) for key, source in sources.items()}
    everything = [paper for load in loads.values() for paper in load.papers]
    labelled = [paper for paper in everything if paper.labels]
    unique, duplicates = deduplicate(labelled)
    counts = {
        key: sum(load.counts[key] for load in loads.values())
        for key in next(iter(loads.values())).counts
    }
    counts["duplicates_merged"] = duplicates
    counts["papers_unique"] = len(unique)
    kept = Counter(paper.source for paper in unique)  # a merged paper keeps its first file
    for key, load in loads.items():
        labelled_here = sum(bool(paper.labels) for paper in load.papers)
        load.counts["duplicates_merged"] = labelled_here - kept[sources[key]]
        load.counts["papers_kept"] = kept[sources[key]]
    dropped = sum((load.dropped_codes for load in loads.values()), Counter())
    return unique, counts, dropped, loads


def deduplicate(papers: list[Paper]) -> tuple[list[Paper], int]:
    """Merge papers sharing a normalised title or an abstract; labels are united, and the
    first dated copy gives the date.

    A title of fewer than `MIN_TITLE_KEY_WORDS` words ("Introduction") is no key, nor is an
    abstract shorter than `MIN_ABSTRACT_KEY_WORDS` words ("This paper has been withdrawn."),
    so that unrelated papers are not merged; abstracts are compared ignoring case and spacing.
    Sharing is transitive (a copy with A's title and B's abstract merges all three), so which
    papers merge does not depend on the files' order; a merged paper keeps its first copy's
    text and position, so the later split stays deterministic.
    """
    parent = list(range(len(papers)))  # union-find over papers sharing a key

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_with_key: dict[tuple[str, str], int] = {}
    for i, paper in enumerate(papers):
        title, abstract = normalize_title(paper.title), normalize_abstract(paper.abstract)
        keys = [
            *([("title", title)] if len(title.split()) >= MIN_TITLE_KEY_WORDS else []),
            *([("abstract", abstract)] if len(abstract.split()) >= MIN_ABSTRACT_KEY_WORDS else []),
        ]
        for key in keys:
            other = first_with_key.setdefault(key, i)
            a, b = root(other), root(i)
            parent[max(a, b)] = min(a, b)  # a group's root is its first paper
    groups: dict[int, list[int]] = {}
    for i in range(len(papers)):
        groups.setdefault(root(i), []).append(i)
    merged = []
    for members in groups.values():  # in the order of each group's first paper
        copies = [papers[i] for i in members]
        merged.append(
            replace(
                copies[0],
                labels=tuple(dict.fromkeys(code for copy in copies for code in copy.labels)),
                date=next((copy.date for copy in copies if copy.date), None),
            )
        )
    return merged, len(papers) - len(merged)


def split(
    papers: list[Paper],
    *,
    seed: int,
    min_label_count: int,
    fractions: tuple[float, float] = (0.8, 0.1),
) -> tuple[list[list[Paper]], list[str], Counter[str]]:
    """Split into train/val/test by `split_position`; keep labels with enough training papers.

    A paper's split depends on its own text and the seed only, not on the other papers read
    with it: a model trained on one file and one trained on it and others hold out the same
    papers of that file, so their test figures compare on one sample, and papers added to a
    file later never move a test paper into training. (A paper listed in several files is
    read as the first file's copy, so with `--data` in another order its text may differ.)
    """
    positions = [split_position(paper, seed) for paper in papers]
    bounds = (fractions[0], fractions[0] + fractions[1])
    parts: list[list[Paper]] = [[], [], []]
    for i in sorted(range(len(papers)), key=positions.__getitem__):  # a seeded shuffle
        parts[bisect.bisect_right(bounds, positions[i])].append(papers[i])
    train_counts = Counter(label for paper in parts[0] for label in paper.labels)
    labels = sorted(label for label, count in train_counts.items() if count >= min_label_count)
    rare = Counter(
        {label: count for label, count in train_counts.items() if count < min_label_count}
    )
    for part in parts[1:]:  # labels only validation or test papers carry: no training paper
        rare.update({lb: 0 for paper in part for lb in paper.labels if lb not in train_counts})
    kept = set(labels)
    filtered = []
    for part in parts:
        narrowed = [
            replace(paper, labels=tuple(lb for lb in paper.labels if lb in kept)) for paper in part
        ]
        filtered.append([paper for paper in narrowed if paper.labels])
    return filtered, labels, rare


def split_position(paper: Paper, seed: int) -> float:
    """Where a paper falls in [0, 1): a hash of the seed and `paper_key`, to 53 bits."""
    key = f"{seed}\n{paper_key(paper.title, paper.abstract)}".encode()
    digest = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
    return (digest >> 11) / 2.0**53


def prepare(paths: Path | list[Path], *, seed: int, min_label_count: int) -> Splits:
    """Everything from the CSV file(s) to labelled splits, with the counts of every step."""
    paths = [paths] if isinstance(paths, Path) else list(paths)
    where = paths[0] if len(paths) == 1 else ", ".join(map(str, paths))
    papers, counts, dropped_codes, loads = load_files(paths)
    if not papers:
        raise DataError(f"{where}: no paper with an arXiv category code is left after filtering")
    (train, val, test), labels, rare = split(papers, seed=seed, min_label_count=min_label_count)
    counts["labels_kept"] = len(labels)
    counts["labels_dropped_rare"] = len(rare)  # too few training papers, or none
    counts["papers_without_kept_label"] = len(papers) - len(train) - len(val) - len(test)
    counts.update({"train": len(train), "val": len(val), "test": len(test)})
    if len(labels) < 2 or not train or len(val) < FOLDS or not test:
        raise DataError(
            f"{where}: too little data left after filtering ({len(labels)} labels with "
            f"≥{min_label_count} training papers; {len(train)}/{len(val)}/{len(test)} papers "
            f"in train/val/test; at least 2 labels and {FOLDS} validation papers are needed)"
        )
    return Splits(
        train,
        val,
        test,
        labels,
        counts,
        dropped_codes,
        files={name: load.counts for name, load in loads.items()},
        unparsable_rows={name: load.unparsable_rows for name, load in loads.items()},
        folded_codes=sum((load.folded_codes for load in loads.values()), Counter()),
        unknown_codes=sum((load.unknown_codes for load in loads.values()), Counter()),
        dropped_labels=rare,
        checksums={name: (load.sha256, load.size) for name, load in loads.items()},
    )


def multi_hot(papers: list[Paper], labels: list[str]) -> np.ndarray:
    """Binary label matrix, shape (papers, labels), in `labels` order."""
    column = {label: j for j, label in enumerate(labels)}
    matrix = np.zeros((len(papers), len(labels)), dtype=np.float32)
    for i, paper in enumerate(papers):
        for label in paper.labels:
            if label in column:
                matrix[i, column[label]] = 1.0
    return matrix
