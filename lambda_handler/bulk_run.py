"""The local bulk run: a JSON Lines or Kaggle CSV file in, JSON Lines results out, with the
Distributed Map's semantics (bulk.py) and its batches of `--batch-size` records.

    python -m lambda_handler.bulk INPUT OUTPUT_DIR [--workers 2] [--batch-size 64]
                                  [--top-k K] [--threshold T] [--model-dir DIR]

INPUT is a path or an s3:// URI, .jsonl or .csv, optionally .gz. OUTPUT_DIR receives
`part-<first index>.jsonl` files of `--part-batches` batches each, every one written whole
(temporary file, then rename), so an interrupted run leaves only complete parts, and the same
command run again skips them. `_run.json` records the run's settings (a rerun with others is
refused) and `_summary.json` its counts. Each result is bulk.py's, plus the input `line` it
came from. Stops with one line and exit status 2, before any work, when the input is missing,
unreadable or has no abstract column, `--top-k` or `--threshold` is out of range, or OUTPUT_DIR
cannot be written; and, keeping the parts already written, when a compressed input turns out
damaged part-way. A CSV row that does not parse (a stray quote, too many or too few fields)
is an error result of its own, never merged into its neighbours.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import multiprocessing
import re
import signal
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from lambda_handler.api import ApiError, json_problem, strict_json, utf8_json
from lambda_handler.bulk import (
    ABSTRACT_FIELDS,
    CSV_FIELD_LIMIT,
    classify,
    column_for,
    field_count_problem,
    parse_options,
)
from lambda_handler.files import write_bytes_atomic, write_json_atomic
from lambda_handler.manifest import ModelError
from lambda_handler.model import Classifier
from lambda_handler.settings import Settings
from lambda_handler.signals import interrupt_on_signals
from lambda_handler.validation import DEFAULT_TOP_K

DEFAULT_BATCH_SIZE = 64  # ItemBatcher's MaxItemsPerBatch in infra/template.yaml
DEFAULT_PART_BATCHES = 100  # batches per output file: 6,400 records, the unit of resuming
RUN_FILE, SUMMARY_FILE = "_run.json", "_summary.json"


class BulkError(Exception):
    """A problem with the whole run (input, output, settings): reported in one line."""


@dataclass(frozen=True)
class Entry:
    """One input record as read: its index (from 0, as Distributed Map numbers items), the
    line it starts on, and the record, or the reason it could not be read."""

    index: int
    line: int
    record: object = None
    error: tuple[str, str] | None = None  # (code, message)


@dataclass
class Counts:
    read: int = 0
    classified: int = 0
    failed: int = 0
    skipped: int = 0
    parts_written: int = 0
    parts_skipped: int = 0

    def add(self, other: Counts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


# --- input ------------------------------------------------------------------------------------


@dataclass
class Source:
    """An input file opened as bytes, with its size and how much of it has been read."""

    name: str
    raw: IO[bytes]
    size: int | None
    position: int = field(default=0)

    @classmethod
    def open(cls, location: str) -> Source:
        """Open a path or s3:// URI; BulkError when it is missing or unreadable."""
        found = re.fullmatch(r"s3://([^/]+)/(.+)", location)
        if found:
            from lambda_handler.s3_model import default_client

            try:
                answer = default_client().get_object(Bucket=found[1], Key=found[2])
            except Exception as error:  # botocore's ClientError and connection errors
                raise BulkError(f"cannot read {location}: {_describe(error)}") from None
            return cls(location, answer["Body"], answer.get("ContentLength"))
        path = Path(location)
        try:
            return cls(location, path.open("rb"), path.stat().st_size)
        except OSError as error:
            raise BulkError(f"cannot read {location}: {error.strerror}") from None

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.position += len(data)
        return data

    def stream(self) -> IO[bytes]:
        """The file's bytes, decompressed when its name ends in .gz."""
        counted = _Counted(self)
        return gzip.GzipFile(fileobj=counted) if self.name.endswith(".gz") else counted

    @property
    def format(self) -> str:
        name = self.name.removesuffix(".gz")
        if name.endswith((".jsonl", ".ndjson", ".json")):
            return "jsonl"
        if name.endswith(".csv"):
            return "csv"
        raise BulkError(f"{self.name}: expected a .jsonl or .csv file (optionally .gz)")


class _Counted(io.RawIOBase):
    """A readable stream over a Source that counts what has been read (for progress)."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.source.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def entries(source: Source) -> Iterator[Entry]:
    """Every record of the input, in order, malformed ones included as errors; BulkError when
    the file itself is damaged (bad or truncated gzip), with the parts written so far kept."""
    stream = io.BufferedReader(source.stream(), 1 << 20)
    try:
        if source.format == "jsonl":
            yield from _jsonl_entries(stream)
        else:
            yield from _csv_entries(stream, source.name)
    except (OSError, EOFError, zlib.error) as error:
        detail = " ".join(str(error).split())[:200] or type(error).__name__
        raise BulkError(
            f"{source.name} cannot be read past byte {source.position:,} ({detail}); the parts "
            "written before are complete"
        ) from None


def _jsonl_entries(stream: IO[bytes]) -> Iterator[Entry]:
    index = 0
    for line_number, line in enumerate(stream, start=1):
        if line_number == 1:
            line = line.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark
        if not line.strip():
            continue  # blank lines hold no record
        try:
            entry = Entry(index, line_number, strict_json(line.decode("utf-8")))
        except UnicodeDecodeError:
            entry = Entry(
                index, line_number, error=("invalid_json", f"line {line_number} is not UTF-8")
            )
        except (ValueError, RecursionError) as error:
            message = f"line {line_number} is not valid JSON: {json_problem(error, record=True)}"
            entry = Entry(index, line_number, error=("invalid_json", message))
        yield entry
        index += 1


def _csv_entries(stream: IO[bytes], name: str) -> Iterator[Entry]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    csv.field_size_limit(CSV_FIELD_LIMIT)
    lines = _Lines(text)  # csv's own line_num misses the lines of a row that fails to parse
    reader = csv.DictReader(lines, strict=True)  # a stray quote is an error, not merged rows
    try:
        header = reader.fieldnames or []
    except (csv.Error, OSError, EOFError) as error:
        raise BulkError(f"{name}: not a readable CSV file ({error})") from None
    if column_for(header, ABSTRACT_FIELDS) is None:
        raise BulkError(
            f"{name}: no abstract column; expected one of {', '.join(ABSTRACT_FIELDS)}, "
            f"found {', '.join(header[:10]) or 'no header'}"
        )
    index, line_number = 0, lines.read + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield Entry(
                index, line_number, error=("invalid_request", f"line {line_number}: {error}")
            )
        else:
            problem = field_count_problem(row, len(header))
            if problem:
                message = f"line {line_number} has {problem}"
                yield Entry(index, line_number, error=("invalid_request", message))
            elif any(
                "\udc80" <= char <= "\udcff"
                for value in row.values()
                if isinstance(value, str)
                for char in value
            ):
                yield Entry(
                    index, line_number, error=("invalid_json", f"line {line_number} is not UTF-8")
                )
            else:
                yield Entry(index, line_number, row)
        index, line_number = index + 1, lines.read + 1


class _Lines:
    """The lines of a text stream, counting how many have been read."""

    def __init__(self, text: IO[str]) -> None:
        self.text, self.read = text, 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self.text)
        self.read += 1
        return line


# --- work -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs besides the entries: picklable, for --workers."""

    output: Path
    model_dir: Path
    batch_size: int
    top_k: int  # as parse_options accepted them
    threshold: float | None


_CLASSIFIER: Classifier | None = None


def _load(plan: Plan) -> Classifier:
    global _CLASSIFIER
    if _CLASSIFIER is None:
        _CLASSIFIER = Classifier.load(plan.model_dir, Settings.from_env().ort_threads)
    return _CLASSIFIER


def _unload() -> None:
    global _CLASSIFIER
    _CLASSIFIER = None


def _worker_start(plan: Plan) -> None:
    """A worker process: Ctrl-C is the parent's to handle; load the model once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _load(plan)


def part_name(first_index: int) -> str:
    return f"part-{first_index:010d}.jsonl"


def run_part(plan: Plan, part: list[Entry]) -> Counts:
    """Classify one part in batches, write its results file whole; its counts."""
    classifier = _load(plan)
    lines, counts = [], Counts(read=len(part), parts_written=1)
    for start in range(0, len(part), plan.batch_size):
        batch = part[start : start + plan.batch_size]
        readable = [entry for entry in batch if entry.error is None]
        answers = iter(
            classify(
                classifier, [(e.index, e.record) for e in readable], plan.top_k, plan.threshold
            )
        )
        for entry in batch:
            if entry.error is None:
                result = next(answers)
            else:
                code, message = entry.error
                result = {"index": entry.index, "id": None, "error": code, "message": message}
            failed = "error" in result
            counts.failed += failed
            counts.classified += not failed
            lines.append(utf8_json({**result, "line": entry.line}))
    write_bytes_atomic(plan.output / part_name(part[0].index), ("\n".join(lines) + "\n").encode())
    return counts


def parts(records: Iterator[Entry], size: int) -> Iterator[list[Entry]]:
    part: list[Entry] = []
    for entry in records:
        part.append(entry)
        if len(part) == size:
            yield part
            part = []
    if part:
        yield part


# --- the run ----------------------------------------------------------------------------------


class Progress:
    """One status line on stderr: papers, papers/s, share of the input read, ETA."""

    def __init__(self, source: Source, stream: IO[str] | None = None, every: float = 0.5) -> None:
        self.source, self.stream, self.started = source, stream or sys.stderr, time.monotonic()
        self.tty = self.stream.isatty()
        self.every = every if self.tty else 10.0
        self.shown = self.started  # the first line after `every` seconds (a log gets no noise)

    def update(self, counts: Counts, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.shown < self.every:
            return
        self.shown = now
        elapsed = max(now - self.started, 1e-9)
        done = counts.classified + counts.failed
        rate = done / elapsed
        line = f"{done + counts.skipped:,} papers ({counts.failed:,} failed), {rate:,.0f}/s"
        size = self.source.size
        if size:
            share = min(self.source.position / size, 1.0)
            line += f", {100 * share:.0f}% read"
            if 0 < share < 1 and done:
                line += f", ETA {_clock(elapsed * (1 - share) / share)}"
        end = "\n" if final or not self.tty else ""
        print(("\r" if self.tty else "") + line.ljust(72), end=end, file=self.stream, flush=True)


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


def prepare_output(output: Path, settings: dict[str, object]) -> None:
    """Create OUTPUT_DIR, prove it writable, and record or check the run's settings."""
    try:
        output.mkdir(parents=True, exist_ok=True)
        for stale in output.glob(".part-*.tmp"):  # a worker killed mid-write
            stale.unlink()
        run_file = output / RUN_FILE
        if run_file.exists():
            try:
                previous = json.loads(run_file.read_text(encoding="utf-8"))
            except ValueError:
                raise BulkError(
                    f"{run_file} is not readable JSON; use another directory, or delete it to "
                    "start this one afresh"
                ) from None
            if previous != settings:
                differ = sorted(
                    k
                    for k in settings.keys() | previous.keys()
                    if settings.get(k) != previous.get(k)
                )
                raise BulkError(
                    f"{output} holds a run with other settings ({', '.join(differ)}); "
                    "use another directory or the same settings"
                )
        else:
            write_json_atomic(run_file, settings)
    except OSError as error:
        raise BulkError(f"cannot write to {output}: {error.strerror}") from None


def run(args: argparse.Namespace) -> Counts:
    output: Path = args.output
    model_dir = args.model_dir or Settings.from_env().model_dir
    plan = Plan(output, Path(model_dir), args.batch_size, DEFAULT_TOP_K, None)
    source = Source.open(args.input)
    try:
        classifier = _load(plan)  # fails here, before any work, if the model is bad
    except ModelError as error:
        raise BulkError(f"the model cannot be used: {error}") from None
    try:  # as the function checks a batch's, but once for the whole run
        top_k, threshold = parse_options(args.top_k, args.threshold, len(classifier.labels))
    except ApiError as error:
        raise BulkError(f"--{error.message.replace('_', '-')}") from None
    plan = replace(plan, top_k=top_k, threshold=threshold)
    records = entries(source)
    first = next(records, None)  # reads the header (CSV) and checks the format
    settings = {
        "input": args.input,
        "batch_size": args.batch_size,
        "part_size": args.batch_size * args.part_batches,
        "top_k": args.top_k,
        "threshold": args.threshold,
        "model": classifier.info.to_dict(),
    }
    prepare_output(output, settings)
    counts, progress = Counts(), Progress(source)
    if first is None:
        return counts
    todo = _pending(
        parts(_chain(first, records), args.batch_size * args.part_batches), output, counts
    )
    if args.workers == 1:
        for part in todo:
            counts.add(run_part(plan, part))
            progress.update(counts)
    else:
        _unload()  # checked above; each worker loads its own
        context = multiprocessing.get_context("spawn")  # onnxruntime sessions do not survive fork
        with context.Pool(args.workers, _worker_start, (plan,)) as pool:
            pending: list[Any] = []
            for part in todo:
                pending.append(pool.apply_async(run_part, (plan, part)))
                while len(pending) >= 2 * args.workers:  # bounded: the input is read as needed
                    counts.add(pending.pop(0).get())
                    progress.update(counts)
            for job in pending:
                counts.add(job.get())
                progress.update(counts)
    progress.update(counts, final=True)
    return counts


def _chain(first: Entry, rest: Iterator[Entry]) -> Iterator[Entry]:
    yield first
    yield from rest


def _pending(
    all_parts: Iterator[list[Entry]], output: Path, counts: Counts
) -> Iterator[list[Entry]]:
    """The parts whose results file is not there yet; the others are counted as skipped."""
    for part in all_parts:
        if (output / part_name(part[0].index)).exists():
            counts.read += len(part)
            counts.skipped += len(part)
            counts.parts_skipped += 1
        else:
            yield part


def _describe(error: BaseException) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        detail = response.get("Error", {})
        return f"{detail.get('Code', 'error')}: {detail.get('Message', '')}".strip(": ")
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lambda_handler.bulk", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("input", help="a .jsonl or .csv file (optionally .gz): a path or s3:// URI")
    parser.add_argument("output", type=Path, help="directory for the part-*.jsonl results")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="records per batch (default 64)"
    )
    parser.add_argument(
        "--part-batches",
        type=int,
        default=DEFAULT_PART_BATCHES,
        help="batches per output file (default 100)",
    )
    parser.add_argument("--top-k", type=int, help="labels per paper at most (default 5; 1 to 20)")
    parser.add_argument("--threshold", type=float, help="one threshold for every label")
    parser.add_argument("--model-dir", type=Path, help="model directory (default MODEL_DIR)")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.batch_size < 1 or args.part_batches < 1:
        parser.error("--workers, --batch-size and --part-batches must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_signals()
    started = time.monotonic()
    try:
        counts = run(args)
    except BulkError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the parts written are complete; run the same command to resume",
            file=sys.stderr,
        )
        return 130
    seconds = time.monotonic() - started
    summary = {**asdict(counts), "seconds": round(seconds, 1)}
    write_json_atomic(args.output / SUMMARY_FILE, summary)
    skipped = f", {counts.skipped:,} skipped (already in {args.output})" if counts.skipped else ""
    print(
        f"{counts.read:,} papers read: {counts.classified:,} classified, {counts.failed:,} "
        f"failed{skipped}; {seconds:,.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
