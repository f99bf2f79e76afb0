"""Train, evaluate and report the TF-IDF baseline and the BiLSTM on an arXiv abstracts CSV.

Usage: python train/run.py [--data PATH ...] [options]; `--help` lists them. The data is every
`--data` given (repeat it for several files), else `$ARXIV_DATA` (one path, or several joined
by `:`), else `data/arxiv_data.csv`, else a download of the Kaggle file.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "data" / "arxiv_data.csv"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        type=Path,
        action="append",
        help="CSV or CSV.gz in the Kaggle format; repeat for several files (else $ARXIV_DATA)",
    )
    data.add_argument("--seed", type=int, default=42, help="split and training seed (default 42)")
    data.add_argument(
        "--min-label-count",
        type=int,
        default=20,
        help="drop labels with fewer training papers (20)",
    )
    data.add_argument(
        "--year-prior-until",
        type=int,
        default=None,
        metavar="YEAR",
        help="fit the year prior on dated papers up to this year (2019: the shared data's later "
        "papers come from field-specific listings)",
    )
    data.add_argument(
        "--no-download", action="store_true", help="fail instead of downloading the data"
    )
    text = parser.add_argument_group("text")
    text.add_argument(
        "--vocab-size", type=int, default=40_000, help="LSTM vocabulary incl. padding and OOV ids"
    )
    text.add_argument(
        "--max-length", type=int, default=200, help="tokens kept per paper (the first ones)"
    )
    model = parser.add_argument_group("models")
    model.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="LSTM epochs at most (early stopping may end sooner)",
    )
    model.add_argument(
        "--lstm-output",
        dest="output",
        choices=("softmax", "sigmoid"),
        default=None,
        help="LSTM output layer: softmax over labels or per-label sigmoid (softmax)",
    )
    model.add_argument("--units", type=int, default=None, help="LSTM units per direction")
    model.add_argument("--embedding-dim", type=int, default=None, help="embedding width")
    model.add_argument("--batch-size", type=int, default=None, help="LSTM batch size")
    model.add_argument("--learning-rate", type=float, default=None, help="LSTM Adam learning rate")
    model.add_argument("--dropout", type=float, default=None, help="dropout before the output")
    model.add_argument(
        "--spatial-dropout", type=float, default=None, help="dropout of embedding channels"
    )
    model.add_argument("--baseline-max-features", type=int, default=None, help="TF-IDF features")
    out = parser.add_argument_group("output")
    out.add_argument(
        "--artifacts", type=Path, default=REPO / "artifacts", help="artifacts folder (./artifacts)"
    )
    out.add_argument(
        "--reports", type=Path, default=REPO / "reports", help="reports folder (./reports)"
    )
    out.add_argument("--quiet", action="store_true", help="no Keras progress bar")
    args = parser.parse_args(argv)
    for name in (
        "min_label_count",
        "vocab_size",
        "max_length",
        "epochs",
        "units",
        "embedding_dim",
        "batch_size",
        "baseline_max_features",
        "year_prior_until",
    ):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    from lambda_handler.text import FIRST_WORD_ID

    if not 0 <= args.seed < 2**32:  # numpy's and Keras's seed range
        parser.error("--seed must be an integer from 0 to 4294967295")
    if args.vocab_size <= FIRST_WORD_ID:
        parser.error(
            f"--vocab-size must be more than {FIRST_WORD_ID}: ids below it are padding and "
            "out-of-vocabulary"
        )
    if args.learning_rate is not None and not 0 < args.learning_rate < 1:
        parser.error("--learning-rate must be between 0 and 1")
    for name in ("dropout", "spatial_dropout"):
        value = getattr(args, name)
        if value is not None and not 0 <= value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 0 and below 1")
    return args


def resolve_data(args: argparse.Namespace) -> list[Path]:
    """The data files: --data, then $ARXIV_DATA, then data/arxiv_data.csv, then a download."""
    from train.data import DataError, distinct_files
    from train.download import KAGGLE_MIRROR_SHA256, KAGGLE_MIRROR_SIZE, KAGGLE_MIRROR_URL, download

    if args.data:
        return distinct_files(args.data)
    if os.environ.get("ARXIV_DATA"):
        parts = [part.strip() for part in os.environ["ARXIV_DATA"].split(os.pathsep)]
        parts = [part for part in parts if part]
        if not parts:
            raise DataError(f"$ARXIV_DATA ({os.environ['ARXIV_DATA']!r}) names no file")
        return distinct_files(map(Path, parts))
    if DEFAULT_DATA.exists() or args.no_download:
        return [DEFAULT_DATA]
    print(f"No --data, $ARXIV_DATA or {DEFAULT_DATA}; downloading {KAGGLE_MIRROR_URL}", flush=True)
    return [
        download(
            KAGGLE_MIRROR_URL,
            DEFAULT_DATA,
            expected_sha256=KAGGLE_MIRROR_SHA256,
            expected_size=KAGGLE_MIRROR_SIZE,
            check=check_kaggle_header,
        )
    ]


def check_kaggle_header(path: Path) -> None:
    """Refuse a download whose first line is not the Kaggle CSV's header, before it takes the
    data file's place (no published checksum pins that file)."""
    import csv

    from train.data import REQUIRED_COLUMNS, DataError

    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        header = next(csv.reader([handle.readline()]), [])
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        found = ", ".join(header[:8]) or "nothing"
        raise DataError(
            f"the download is not the Kaggle CSV: no {', '.join(missing)} (found {found})"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from lambda_handler.signals import interrupt_on_signals

    interrupt_on_signals()  # Ctrl-C and kill end the run cleanly, also as a background job
    from export.artifacts import DATA_FILE
    from lambda_handler.files import OutputFolderError, check_replaceable, check_writable_folder
    from train.data import DataError, prepare
    from train.download import DownloadError

    try:
        check_replaceable(args.artifacts, marker=DATA_FILE)  # before, not after, the training
        check_writable_folder(args.reports)
        paths = resolve_data(args)
        print(f"Reading {', '.join(map(str, paths))}", flush=True)
        splits = prepare(paths, seed=args.seed, min_label_count=args.min_label_count)
    except (DataError, DownloadError, OutputFolderError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    try:
        from train.quiet_tensorflow import import_tensorflow

        import_tensorflow()  # only once the data is good: it takes seconds
        from train.pipeline import Settings, run

        run(paths, splits, Settings.from_args(args))
    except OutputFolderError as error:  # the folder changed during the run
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: previous artifacts and reports are untouched", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
