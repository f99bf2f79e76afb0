"""Command line: suggest arXiv categories for one paper or a file of papers.

    python -m lambda_handler "<title>" "<abstract>"
    python -m lambda_handler --file papers.csv      # columns title/abstract or titles/summaries
    python -m lambda_handler --file papers.jsonl    # one {"title", "abstract"} object a line

An optional `date` (column or field, an ISO date such as 2019-05-01, or a year such as 2019) is
the paper's date, as in the API.

Each paper goes through the same validation and decision rule as the API (one paper at a time,
so a paper's scores never depend on the others). Errors are one line on stderr; the exit status
is 1 when the model or any paper failed, 2 for bad usage or a file that cannot be read as papers
(as for train/run.py and the bulk run).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from lambda_handler.api import ApiError, json_problem, strict_json, utf8_json
from lambda_handler.bulk import (
    ABSTRACT_FIELDS,
    CSV_FIELD_LIMIT,
    DATE_FIELDS,
    TITLE_FIELDS,
    column_for,
    field_count_problem,
    given_date,
    paper_fields,
)
from lambda_handler.service import Service
from lambda_handler.settings import Settings


class InputError(Exception):
    """A file the CLI cannot read as papers."""


@dataclass(frozen=True)
class Paper:
    """One paper read from the command line or a file; `where` locates it for error messages."""

    id: str
    where: str
    fields: dict[str, object]


def read_papers(path: Path) -> Iterator[Paper]:
    """Papers from a CSV or JSONL file (optionally .gz), chosen by extension or first character."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror}") from None
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise InputError(f"{path} is not valid gzip: {error}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text") from None
    name = path.name.removesuffix(".gz").lower()
    is_jsonl = name.endswith((".jsonl", ".ndjson", ".json")) or (
        not name.endswith(".csv") and text.lstrip().startswith("{")
    )
    return _jsonl_papers(text) if is_jsonl else _csv_papers(text, path)


def _csv_papers(text: str, path: Path) -> Iterator[Paper]:
    """Every row, parsed strictly and all at once, so that a broken quote (which would merge
    rows) stops the run with its row number before any paper is classified."""
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    rows: list[dict[str, str]] = []
    try:
        fieldnames = reader.fieldnames or []
        for row in reader:
            rows.append(row)
    except csv.Error as error:
        raise InputError(
            f"{path} row {len(rows) + 2}: not valid CSV ({error}); "
            "a stray quote there would merge rows"
        ) from None
    abstract_column = column_for(fieldnames, ABSTRACT_FIELDS)
    if abstract_column is None:
        found = ", ".join(name.strip().lower() for name in fieldnames) or "no header"
        raise InputError(
            f"{path} needs an abstract column ({' or '.join(ABSTRACT_FIELDS)}) and optionally a "
            f"title column ({' or '.join(TITLE_FIELDS)}); found {found}"
        )
    if not rows:
        raise InputError(f"{path} holds no papers (only a header)")
    for number, row in enumerate(rows, start=2):
        problem = field_count_problem(row, len(fieldnames))
        if problem:
            raise InputError(f"{path} row {number}: {problem}")
    return _rows_to_papers(rows, fieldnames, abstract_column)


def _rows_to_papers(
    rows: list[dict[str, str]], fieldnames: Sequence[str], abstract_column: str
) -> Iterator[Paper]:
    title_column = column_for(fieldnames, TITLE_FIELDS)
    id_column = column_for(fieldnames, ("id",))
    date_column = column_for(fieldnames, DATE_FIELDS)
    for number, row in enumerate(rows, start=2):
        title = row.get(title_column) if title_column else None
        paper_id = row.get(id_column) if id_column else None
        fields = {"title": title or "", "abstract": row.get(abstract_column) or ""}
        date = given_date(row.get(date_column)) if date_column else None
        if date is not None:
            fields["date"] = date
        yield Paper(paper_id or str(number), f"row {number}", fields)


def _jsonl_papers(text: str) -> Iterator[Paper]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            record = strict_json(line)
        except (ValueError, RecursionError) as error:
            yield Paper(
                str(number),
                where,
                {"invalid": f"not valid JSON: {json_problem(error, record=True)}"},
            )
            continue
        if not isinstance(record, dict):
            yield Paper(str(number), where, {"invalid": "not a JSON object"})
            continue
        try:
            fields = paper_fields(record)
        except ApiError as error:
            yield Paper(str(number), where, {"invalid": error.message})
            continue
        paper_id = record.get("id")
        yield Paper(
            str(paper_id) if paper_id is not None else str(number),
            where,
            {**fields, "title": "" if fields["title"] is None else fields["title"]},
        )


def classify(service: Service, paper: Paper, options: dict[str, object]) -> dict:
    """The API's answer for one paper (via a direct invocation of the handler)."""
    if "invalid" in paper.fields:
        return {"statusCode": 400, "error": paper.fields["invalid"]}
    answer = service.handle({**paper.fields, **options})
    body = json.loads(answer["body"])
    if answer["statusCode"] != 200:
        return {"statusCode": answer["statusCode"], "error": body.get("message", "error")}
    return {"statusCode": 200, "result": body["results"][0]}


def format_table(labels: list[dict]) -> str:
    """Suggested labels as an aligned text table."""
    width = max([len("label")] + [len(item["label"]) for item in labels])
    lines = [f"  {'label':<{width}}  score  name"]
    lines += [f"  {i['label']:<{width}}  {i['score']:.3f}  {i['name']}" for i in labels]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lambda_handler",
        description="Suggest arXiv categories for a paper's title and abstract.",
    )
    parser.add_argument("title", nargs="?", help="the paper's title")
    parser.add_argument("abstract", nargs="?", help="the paper's abstract")
    parser.add_argument("--file", type=Path, help="CSV or JSONL (.gz too) file of papers")
    parser.add_argument("--top-k", type=int, help="at most this many labels per paper")
    parser.add_argument("--threshold", type=float, help="one threshold for all labels")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.add_argument("--model-dir", type=Path, help="model directory (default MODEL_DIR)")
    args = parser.parse_args(argv)
    if args.top_k is not None and args.top_k < 1:
        parser.error(f"--top-k must be a positive integer, got {args.top_k}")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold must be a number from 0 to 1, got {args.threshold}")
    if args.file is not None and (args.title is not None or args.abstract is not None):
        parser.error("give either --file or a title and an abstract, not both")
    if args.file is None and args.abstract is None:
        parser.error('give a title and an abstract (use "" for no title), or --file')

    settings = replace(Settings.from_env(), log_level="CRITICAL")
    if args.model_dir is not None:
        settings = replace(settings, model_dir=args.model_dir, model_s3_uri=None)
    service = Service.from_settings(settings)
    if service.classifier is None:
        print(f"error: model unavailable: {service.failure}", file=sys.stderr)
        return 1
    n_labels = len(service.classifier.labels)
    if args.top_k is not None and args.top_k > n_labels:
        parser.error(f"--top-k must be at most the model's {n_labels} labels, got {args.top_k}")

    options = {
        key: value
        for key, value in (("top_k", args.top_k), ("threshold", args.threshold))
        if value is not None
    }
    if args.file is None:
        papers: Iterator[Paper] = iter(
            [Paper("", "", {"title": args.title, "abstract": args.abstract})]
        )
    else:
        try:
            papers = read_papers(args.file)
        except InputError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2

    failed = seen = 0
    try:
        for paper in papers:
            seen += 1
            outcome = classify(service, paper, options)
            if outcome["statusCode"] != 200:
                failed += 1
                where = f"{paper.where}: " if paper.where else ""
                print(f"error: {where}{outcome['error']}", file=sys.stderr)
                continue
            result = outcome["result"]
            if args.json:
                record = {"id": paper.id} if paper.id else {}
                print(utf8_json(record | result))
            else:
                if paper.id:
                    title = printable(str(paper.fields.get("title") or "")).strip()
                    title = title.replace("\n", " ")
                    shown = title[:70] + ("…" if len(title) > 70 else "")
                    print(f"{printable(paper.id)}: {shown}")
                print(format_table(result["labels"]))
                if result.get("low_confidence"):
                    print("  (low confidence: the top score is below the model's line)")
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if not seen:  # an empty JSON Lines file (an empty CSV is refused while it is read)
        print(f"error: {args.file} holds no papers", file=sys.stderr)
        return 2
    return 1 if failed else 0


def printable(text: str) -> str:
    """`text` with any lone surrogate (valid in JSON strings) written as its escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


if __name__ == "__main__":
    sys.exit(main())
