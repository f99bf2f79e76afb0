"""Validate a classify request body (single paper or batch) into a `ClassifyRequest`.

Plain checks on the decoded JSON, no schema library: unknown fields are refused (400) so a typo
such as "abstact" is reported instead of silently ignored; `null` counts as absent for the
optional fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from lambda_handler.api import ApiError
from lambda_handler.year_prior import EARLIEST_DATE, parse_paper_date

MAX_DOCUMENTS = 64
MAX_ABSTRACT_CHARS = 20_000
MAX_TITLE_CHARS = 1_000  # the longest title in the shared data has 335 characters
MAX_ID_CHARS = 256  # an id is echoed back: it must stay small beside the labels
DEFAULT_TOP_K = 5
SINGLE_FIELDS = frozenset({"id", "title", "abstract", "date", "top_k", "threshold"})
BATCH_FIELDS = frozenset({"documents", "top_k", "threshold"})
DOCUMENT_FIELDS = frozenset({"id", "title", "abstract", "date"})


@dataclass(frozen=True)
class Document:
    """One paper to classify; `id` is echoed back when given, and the year of its `date` (when
    given) informs the scores."""

    title: str
    abstract: str
    id: str | None = None
    year: int | None = None


@dataclass(frozen=True)
class ClassifyRequest:
    """Papers plus the decision options shared by all of them."""

    documents: tuple[Document, ...]
    top_k: int
    threshold: float | None = None
    is_batch: bool = False  # a `documents` request, even of one paper


def parse_classify(payload: object, n_labels: int) -> ClassifyRequest:
    """Check a classify body against the API contract; raise ApiError (400 or 413)."""
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_request", "the request must be a JSON object")
    if "documents" in payload and payload["documents"] is None:  # null counts as absent
        payload = {name: value for name, value in payload.items() if name != "documents"}
    batch = "documents" in payload
    _refuse_unknown(payload, BATCH_FIELDS if batch else SINGLE_FIELDS, "")
    top_k = parse_top_k(payload.get("top_k"), n_labels)
    threshold = parse_threshold(payload.get("threshold"))
    if not batch:
        return ClassifyRequest((parse_document(payload, ""),), top_k, threshold)
    items = payload["documents"]
    if not isinstance(items, list) or not items:
        raise ApiError(
            400, "invalid_request", "documents must be a non-empty list of paper objects"
        )
    if len(items) > MAX_DOCUMENTS:
        raise ApiError(
            413,
            "too_many_documents",
            f"a request may hold at most {MAX_DOCUMENTS} documents, got {len(items)}",
        )
    documents = []
    for index, item in enumerate(items):
        where = f"documents[{index}]."
        if not isinstance(item, dict):
            raise ApiError(400, "invalid_request", f"documents[{index}] must be an object")
        _refuse_unknown(item, DOCUMENT_FIELDS, where)
        documents.append(parse_document(item, where))
    return ClassifyRequest(tuple(documents), top_k, threshold, is_batch=True)


def no_content_words(field: str) -> ApiError:
    """The 400 for a paper whose `field` (`abstract`, `documents[2].abstract`) has nothing
    the models read: the same words on every path (API, bulk runs, the CLI)."""
    return ApiError(
        400,
        "no_content_words",
        f"{field} has no content words after tokenization (only stopwords, numbers, "
        "punctuation or letters outside the Latin alphabet; the model reads English); there is "
        "nothing to classify",
    )


def parse_document(fields: dict, where: str) -> Document:
    """One paper's id, title and abstract, with their types, the abstract's emptiness and both
    lengths checked."""
    doc_id, title, abstract = fields.get("id"), fields.get("title"), fields.get("abstract")
    if doc_id is not None and not isinstance(doc_id, str):
        raise ApiError(400, "invalid_request", f"{where}id must be a string")
    if doc_id is not None and len(doc_id) > MAX_ID_CHARS:
        raise ApiError(
            400,
            "invalid_request",
            f"{where}id has {len(doc_id)} characters; the limit is {MAX_ID_CHARS}",
        )
    if title is not None and not isinstance(title, str):
        raise ApiError(400, "invalid_request", f"{where}title must be a string")
    if title is not None and len(title) > MAX_TITLE_CHARS:
        # The model reads the title first and only its first words: a long "title" would push
        # the abstract out unseen.
        raise ApiError(
            413,
            "title_too_long",
            f"{where}title has {len(title)} characters; the limit is {MAX_TITLE_CHARS}",
        )
    if abstract is None:
        raise ApiError(400, "invalid_request", f"{where}abstract is required")
    if not isinstance(abstract, str):
        raise ApiError(400, "invalid_request", f"{where}abstract must be a string")
    if not abstract.strip():
        raise ApiError(400, "empty_abstract", f"{where}abstract is empty")
    if len(abstract) > MAX_ABSTRACT_CHARS:
        raise ApiError(
            413,
            "abstract_too_long",
            f"{where}abstract has {len(abstract)} characters; the limit is {MAX_ABSTRACT_CHARS}",
        )
    return Document(title or "", abstract, doc_id, parse_date(fields.get("date"), where))


def parse_date(value: object, where: str) -> int | None:
    """The year of a paper's `date`, read as training reads its files' dates, or None when
    absent."""
    if value is None:
        return None
    day = parse_paper_date(value) if isinstance(value, str) else None
    if day is None:
        raise ApiError(
            400,
            "invalid_date",
            f"{where}date must be the paper's date as a string: an ISO date such as "
            f'"2019-05-01" (a date and time counts as its date, and a year such as "2019" or a '
            f'month such as "2019-05" as its first day), from {EARLIEST_DATE.year} to tomorrow',
        )
    return day.year


def _refuse_unknown(fields: dict, allowed: frozenset[str], where: str) -> None:
    unknown = sorted(str(name) for name in fields if name not in allowed)
    if unknown:
        listed = ", ".join(repr(name[:50]) for name in unknown[:5])
        expected = ", ".join(sorted(allowed))
        place = f" in {where.rstrip('.')}" if where else ""
        raise ApiError(
            400, "invalid_request", f"unknown field(s) {listed}{place}; expected {expected}"
        )


def parse_top_k(value: object, n_labels: int) -> int:
    """`top_k` as given, or the default; ApiError unless an integer (2.0 included) from 1 to
    n_labels."""
    if value is None:
        return min(DEFAULT_TOP_K, n_labels)
    if type(value) is float and value.is_integer():
        value = int(value)  # JSON (and the contract's schema) count 2.0 as the integer 2
    if type(value) is not int or not 1 <= value <= n_labels:
        raise ApiError(400, "invalid_top_k", f"top_k must be an integer from 1 to {n_labels}")
    return value


def parse_threshold(value: object) -> float | None:
    """`threshold` as a float, or None for the labels' own; ApiError unless within [0, 1]."""
    if value is None:
        return None
    # The range check also refuses NaN and infinities, and never overflows on huge integers.
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ApiError(400, "invalid_threshold", "threshold must be a number from 0 to 1")
    return float(value)
