"""Bulk classification: records in, one result per record out, whatever the records hold.

The semantics of a Step Functions Distributed Map batch (infra/statemachine/bulk.asl.json),
used by the Lambda function for such events and by the local run (`bulk_run.py`) alike:

- an item is `{"index": n, "record": r}`, where r is a JSON Lines object
  (`{"id", "title", "abstract", "date"}`; other fields are ignored) or a row of a Kaggle CSV
  (`titles`, `summaries`, `terms`, and `date` in the all-fields file);
- the result of item n is `{"index": n, "id": ..., "labels": [...], "low_confidence": ...}`,
  or `{"index": n, "id": ..., "error": code, "message": text}` with the API's error codes;
- items in = results out, in order: one bad record never fails or shortens the batch.

    python -m lambda_handler.bulk INPUT OUTPUT_DIR    # the local run; see bulk_run.py
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from lambda_handler.api import ApiError
from lambda_handler.model import Classifier, Encoded
from lambda_handler.routes import paper_answer
from lambda_handler.validation import (
    MAX_DOCUMENTS,
    MAX_ID_CHARS,
    no_content_words,
    parse_document,
    parse_threshold,
    parse_top_k,
)

BATCH_KEYS = frozenset({"Items", "BatchInput"})
CSV_FIELD_LIMIT = 1 << 24  # one CSV field may hold up to 16 MiB before the row is refused
# A batch's answer must fit Step Functions' 256 KiB limit on a task's result: 64 results of the
# 20 longest label names and 256-character ids take about 140 KB (216 KiB if every id character
# is a JSON-escaped control character); 64 real abstracts took 115 KB (2026-12-06).
MAX_BULK_TOP_K = 20
# Field names of a record (any case): JSON Lines' and the Kaggle CSV's columns, and their kin.
TITLE_FIELDS = ("title", "titles")
ABSTRACT_FIELDS = ("abstract", "abstracts", "summary", "summaries")
DATE_FIELDS = ("date",)
_PAPER_FIELDS = frozenset((*TITLE_FIELDS, *ABSTRACT_FIELDS, *DATE_FIELDS))


def is_batch_event(event: object) -> bool:
    """Whether a Lambda event is a Distributed Map ItemBatcher batch."""
    return isinstance(event, dict) and "Items" in event and set(event) <= BATCH_KEYS


class InvalidBatchOptions(ValueError):
    """The run's top_k or threshold is out of range: every batch would fail alike, so each
    raises (Lambda names the error by this class) and the run stops instead of succeeding with
    an error for every record."""


def parse_options(top_k: object, threshold: object, n_labels: int) -> tuple[int, float | None]:
    """A bulk run's top_k (at most MAX_BULK_TOP_K) and threshold; ApiError when out of range."""
    return parse_top_k(top_k, min(n_labels, MAX_BULK_TOP_K)), parse_threshold(threshold)


def handle_batch(classifier: Classifier, event: Mapping[str, object]) -> dict[str, object]:
    """`{"results": [...]}` for an ItemBatcher event; a malformed item becomes its error result."""
    items = event.get("Items")
    options = event.get("BatchInput")
    if not isinstance(items, list):
        raise ValueError("Items must be a list")  # not a batch the state machine could send
    pairs = [
        (item.get("index"), item.get("record")) if isinstance(item, dict) else (position, item)
        for position, item in enumerate(items)
    ]
    options = options if isinstance(options, dict) else {}
    try:
        top_k, threshold = parse_options(
            options.get("top_k"), options.get("threshold"), len(classifier.labels)
        )
    except ApiError as error:
        raise InvalidBatchOptions(error.message) from None
    return {"results": classify(classifier, pairs, top_k, threshold)}


def classify(
    classifier: Classifier,
    items: Sequence[tuple[object, object]],
    top_k: int,
    threshold: float | None,
) -> list[dict[str, object]]:
    """One result per `(index, record)`, in order, with options `parse_options` accepted; the
    records' papers are scored together."""
    results: list[dict[str, object]] = []
    papers: list[tuple[int, Encoded, int | None]] = []
    for index, record in items:
        try:
            papers.append((len(results), *encode(classifier, record)))
            results.append({"index": index, "id": record_id(record)})
        except ApiError as error:
            results.append(failure(index, record, error))
    for start in range(0, len(papers), MAX_DOCUMENTS):
        group = papers[start : start + MAX_DOCUMENTS]
        scores = classifier.predict(
            [encoded for _, encoded, _ in group], [year for _, _, year in group]
        )
        for (position, _, _), row in zip(group, scores, strict=True):
            results[position] |= paper_answer(classifier, row, top_k, threshold)
    return results


def encode(classifier: Classifier, record: object) -> tuple[Encoded, int | None]:
    """A record's paper as the models read it, and its year; ApiError naming what is wrong
    with it."""
    if not isinstance(record, dict):
        raise ApiError(400, "invalid_request", "a record must be a JSON object")
    if record.get("id") is not None and record_id(record) is None:
        raise ApiError(
            400,
            "invalid_request",
            f"the id must be text or an integer of at most {MAX_ID_CHARS} characters "
            "(no lone surrogate)",
        )
    document = parse_document(paper_fields(record), "")
    encoded = classifier.encode(document.title, document.abstract)
    if encoded is None:
        raise no_content_words("abstract")
    return encoded, document.year


def column_for(header: Sequence[str], aliases: Sequence[str]) -> str | None:
    """The header's name (as written) of the first of `aliases` it holds, in any case."""
    by_name = {name.strip().lower(): name for name in reversed(header)}
    return next((by_name[alias] for alias in aliases if alias in by_name), None)


def field_count_problem(row: Mapping[object, object], header_fields: int) -> str | None:
    """What is wrong with a CSV row read by csv.DictReader (extra values under None, missing
    ones None), or None when it has the header's number of fields."""
    extra = len(row.get(None) or ())  # type: ignore[arg-type]
    missing = sum(value is None for value in row.values())
    if not extra and not missing:
        return None
    problem = f"{extra} more" if extra else f"{missing} fewer"
    return f"{problem} fields than the header's {header_fields}; is a quote or comma missing?"


def paper_fields(record: Mapping[object, object]) -> dict[str, object]:
    """A record's `title`, `abstract` and `date`, from the first non-null of their field names,
    in any case (`Abstract`, `summaries`); None when absent. ApiError when two of its fields spell
    the same name (`abstract` and `ABSTRACT`): which one was meant cannot be told."""
    by_name: dict[str, object] = {}
    for key, value in record.items():
        if not isinstance(key, str) or value is None:
            continue
        name = key.strip().lower()
        if name in by_name and name in _PAPER_FIELDS:
            raise ApiError(
                400,
                "invalid_request",
                f"the record has two {name!r} fields that differ only in case or spaces; send one",
            )
        by_name[name] = value
    fields = {
        name: next((by_name[field] for field in aliases if field in by_name), None)
        for name, aliases in (
            ("title", TITLE_FIELDS),
            ("abstract", ABSTRACT_FIELDS),
            ("date", DATE_FIELDS),
        )
    }
    fields["date"] = given_date(fields["date"])
    return fields


def given_date(value: object) -> object:
    """A record's `date` as given, or None for an empty or blank one (an empty CSV cell: no
    date, as in training)."""
    return None if isinstance(value, str) and not value.strip() else value


def record_id(record: object) -> object:
    """The record's `id` when it is an integer or text of at most MAX_ID_CHARS characters, text
    without a lone surrogate (which the Lambda runtime could not write as UTF-8); else None."""
    if not isinstance(record, dict):
        return None
    value = record.get("id")
    if isinstance(value, str):
        valid = len(value) <= MAX_ID_CHARS and not any("\ud800" <= c <= "\udfff" for c in value)
        return value if valid else None
    if isinstance(value, int) and not isinstance(value, bool):
        return value if len(str(value)) <= MAX_ID_CHARS else None
    return None


def failure(index: object, record: object, error: ApiError) -> dict[str, object]:
    return {"index": index, "id": record_id(record), "error": error.code, "message": error.message}


if __name__ == "__main__":
    from lambda_handler.bulk_run import main

    sys.exit(main())
