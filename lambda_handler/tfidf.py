"""The TF-IDF + logistic-regression baseline scored with numpy alone, as served and as evaluated.

Training fits the model with scikit-learn (`train/baseline.py`) and hands this module the
vocabulary, idf and coefficients; everything that scores papers afterwards, the training
report included, goes through `TfidfScorer`, so the figures describe what ships.

Features are the paper's content words (`lambda_handler.text.words`) and their n-grams, with
sublinear tf, idf and l2 normalisation as scikit-learn's `TfidfVectorizer` computes them. The
coefficients are stored feature-major: near-zero weights are pruned at training time and the
rest kept in 16 bits (the size and score error this costs are in the report). Features with a
weight for many labels (the common words, which make up most of every paper) are stored as
dense rows, the others as sparse ones: a dense row is no bigger than a sparse row that full,
and a batch scores it with one gather and one segment sum instead of an index per weight.
Dense rows are int16 with a scale per row, which numpy widens to float32 some ten times faster
than float16 and which is finer than float16 for all but a row's largest weights.
"""

from __future__ import annotations

import io
import json
import math
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np

FORMAT_VERSION = 3
ARRAYS = (
    "grams",
    "idf",
    "indptr",
    "label_ids",
    "values",
    "dense_features",
    "dense",
    "dense_scale",
    "intercept",
)
# A feature whose kept weights cover at least this share of the labels is stored as a dense row:
# from a third of 152 labels, 20k of the 150k features, 95% of a paper's weights, 6 MB
# (the 2026-12-03 model).
DENSE_SHARE = 1 / 3


def ngrams(words: Sequence[str], max_ngram: int) -> list[str]:
    """Words followed by their space-joined n-grams up to `max_ngram` (scikit-learn's analyzer)."""
    grams = list(words)
    for n in range(2, max_ngram + 1):
        grams.extend(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
    return grams


@dataclass(frozen=True, eq=False)
class TfidfScorer:
    """Features as word-id n-grams, their idf, and coefficient rows: sparse (CSR: feature →
    labels) or, for the features listed in `dense_features`, dense (their sparse rows are empty).

    A feature is stored as the ids of its words (`grams`, padded with -1), and the features are
    sorted by `gram_keys`, a number that packs those ids. Scoring a batch then needs one dict
    lookup per word and a `searchsorted` for all n-grams at once, instead of building and
    hashing every n-gram string.
    """

    words: tuple[str, ...]
    grams: np.ndarray  # int32 [features, max_ngram]: word ids, -1 after the last word
    idf: np.ndarray  # float32 [features]
    indptr: np.ndarray  # int [features + 1]: row f's labels are label_ids[indptr[f]:indptr[f+1]]
    label_ids: np.ndarray  # unsigned int [sparse weights]
    values: np.ndarray  # float16 [sparse weights], as stored (products are computed in float64)
    dense_features: np.ndarray  # int32 [dense rows], ascending: the features stored densely
    dense: np.ndarray  # int16 [dense rows, labels]: weight = dense * dense_scale (in float32)
    dense_scale: np.ndarray  # float32 [dense rows]
    intercept: np.ndarray  # float32 [labels]

    def __post_init__(self) -> None:
        n_features, n_labels = len(self.grams), len(self.intercept)
        if self.grams.ndim != 2 or not 1 <= self.grams.shape[1] <= MAX_NGRAM:
            raise ValueError(f"grams must be [features, 1..{MAX_NGRAM}], got {self.grams.shape}")
        if self.idf.shape != (n_features,) or self.indptr.shape != (n_features + 1,):
            raise ValueError(
                f"idf {self.idf.shape} and indptr {self.indptr.shape} do not fit "
                f"{n_features} features"
            )
        if self.indptr[0] != 0 or np.any(np.diff(self.indptr) < 0):
            raise ValueError("indptr must start at 0 and never decrease")
        if self.label_ids.shape != self.values.shape or self.indptr[-1] != len(self.values):
            raise ValueError("label_ids, values and indptr disagree on the number of weights")
        if len(self.label_ids) and not 0 <= self.label_ids.min() <= self.label_ids.max() < n_labels:
            raise ValueError(f"label_ids must lie in [0, {n_labels})")
        dense_features = self.dense_features
        n_dense = len(dense_features)
        if (
            dense_features.ndim != 1
            or self.dense.shape != (n_dense, n_labels)
            or self.dense_scale.shape != (n_dense,)
        ):
            raise ValueError(
                f"dense {self.dense.shape} and dense_scale {self.dense_scale.shape} must hold "
                f"one row of {n_labels} labels for each of the {dense_features.shape} "
                "dense_features"
            )
        if len(dense_features) and (
            dense_features[0] < 0
            or dense_features[-1] >= n_features
            or np.any(np.diff(dense_features) <= 0)
        ):
            raise ValueError(f"dense_features must be ascending, distinct and in [0, {n_features})")
        if np.any(self.indptr[dense_features + 1] != self.indptr[dense_features]):
            raise ValueError("a feature stored densely also has sparse weights")
        arrays = (self.idf, self.values, self.dense_scale, self.intercept)
        if not all(map(all_finite, arrays)):
            raise ValueError("idf, coefficients and intercepts must be finite")
        index = dict(zip(self.words, range(len(self.words)), strict=True))
        if len(index) != len(self.words):
            raise ValueError("the vocabulary lists a word twice")
        keys = gram_keys(self.grams, len(self.words))
        if n_features and np.any(np.diff(keys) <= 0):
            raise ValueError("features must be distinct and sorted by their gram key")
        # Single words are found by word id directly (digit = id + 1; 0 stands for no word).
        unigram_feature = np.full(len(self.words) + 1, -1, dtype=np.int64)
        single = np.all(self.grams[:, 1:] < 0, axis=1)
        unigram_feature[self.grams[single, 0] + 1] = np.flatnonzero(single)
        dense_row = np.full(n_features, -1, dtype=np.int32)
        dense_row[dense_features] = np.arange(len(dense_features), dtype=np.int32)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_keys", keys)
        object.__setattr__(self, "_unigram_feature", unigram_feature)
        object.__setattr__(self, "_dense_row", dense_row)

    @property
    def max_ngram(self) -> int:
        return self.grams.shape[1]

    @property
    def n_labels(self) -> int:
        return len(self.intercept)

    @property
    def n_weights(self) -> int:
        """Kept (non-zero) coefficients, sparse and dense."""
        return int(self.values.size + np.count_nonzero(self.dense))

    @property
    def terms(self) -> tuple[str, ...]:
        """The features as scikit-learn names them (`"neural network"`), in stored order."""
        return tuple(" ".join(self.words[i] for i in row if i >= 0) for row in self.grams.tolist())

    @classmethod
    def from_dense(
        cls,
        terms: Sequence[str],
        max_ngram: int,
        idf: np.ndarray,
        coef: np.ndarray,
        intercept: np.ndarray,
        prune_below: float = 0.0,
        dense_share: float = DENSE_SHARE,
    ) -> TfidfScorer:
        """Build from scikit-learn's vocabulary (space-joined n-grams) and `[labels, features]`
        coefficients, dropping |w| < prune_below; features keeping weights for at least
        `dense_share` of the labels become int16 dense rows with a per-row scale, the others
        float16 sparse rows."""
        if not 1 <= max_ngram <= MAX_NGRAM:
            raise ValueError(f"max_ngram must lie in [1, {MAX_NGRAM}], got {max_ngram}")
        split = [term.split(" ") for term in terms]
        if any(not 1 <= len(parts) <= max_ngram or not all(parts) for parts in split):
            raise ValueError(f"every term must be 1 to {max_ngram} space-separated words")
        words = sorted({word for parts in split for word in parts})
        word_id = {word: i for i, word in enumerate(words)}
        grams = np.full((len(terms), max_ngram), -1, dtype=np.int32)
        for row, parts in zip(grams, split, strict=True):
            row[: len(parts)] = [word_id[word] for word in parts]
        order = np.argsort(gram_keys(grams, len(words)), kind="stable")
        by_feature = np.asarray(coef, dtype=np.float32).T[order]
        keep = (np.abs(by_feature) >= prune_below) & (by_feature != 0.0)
        kept = keep.sum(axis=1)
        is_dense = (kept > 0) & (kept >= dense_share * by_feature.shape[1])
        dense = np.where(keep[is_dense], by_feature[is_dense], 0.0)
        dense_scale = np.abs(dense).max(axis=1, initial=0.0) / np.iinfo(np.int16).max
        keep[is_dense] = False
        features, labels = np.nonzero(keep)  # row-major: grouped by feature, labels ascending
        indptr = np.zeros(len(terms) + 1, dtype=np.int32)
        np.cumsum(np.bincount(features, minlength=len(terms)), out=indptr[1:])
        intercept = np.asarray(intercept, dtype=np.float32)
        return cls(
            tuple(words),
            grams[order],
            np.asarray(idf, dtype=np.float32)[order],
            indptr,
            labels.astype(label_id_dtype(len(intercept))),
            by_feature[features, labels].astype(np.float16),
            np.flatnonzero(is_dense).astype(np.int32),
            np.rint(dense / dense_scale[:, None]).astype(np.int16),
            dense_scale.astype(np.float32),
            intercept,
        )

    def logits(self, documents: Sequence[Sequence[str]]) -> np.ndarray:
        """Per-label logits `[documents, labels]` for papers given as content-word lists."""
        word_id, ids = self._index.get, []  # type: ignore[attr-defined]
        for words in documents:
            ids.extend(map(word_id, words, repeat(-1, len(words))))
            ids.append(-1)
        lengths = np.fromiter(map(len, documents), dtype=np.int64, count=len(documents))
        return self.logits_of_word_ids(np.array(ids, dtype=np.int64), lengths, check=False)

    def logits_of_word_ids(
        self, word_ids: np.ndarray, lengths: np.ndarray, *, check: bool = True
    ) -> np.ndarray:
        """`logits` for papers given as indices into `words` (-1: a word that is not there),
        laid end to end, each paper's `lengths[i]` ids followed by one -1. `check=False` skips
        checking that layout, for callers that built it themselves: the checks cost a sixth
        of scoring one paper (2026-12-07).

        Scored `CHUNK` papers at a time: a chunk's arrays hold one entry per kept weight of
        each of its papers' features (about 10,000 a paper), so a whole split at once would
        need gigabytes. A paper scores the same in any chunk.
        """
        if check:
            word_ids, lengths = self._checked_layout(word_ids, lengths)
        if len(lengths) <= CHUNK:
            return self._chunk_logits(word_ids, lengths)
        ends = np.cumsum(lengths + 1)  # one past each paper's separator
        chunks = []
        for start in range(0, len(lengths), CHUNK):
            stop = min(start + CHUNK, len(lengths))
            first = ends[start - 1] if start else 0
            chunks.append(self._chunk_logits(word_ids[first : ends[stop - 1]], lengths[start:stop]))
        return np.concatenate(chunks)

    def _checked_layout(
        self, word_ids: np.ndarray, lengths: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """`logits_of_word_ids`' arguments as int64 arrays; ValueError unless laid out right."""
        word_ids, lengths = np.asarray(word_ids), np.asarray(lengths)
        if any(a.ndim != 1 or (a.size and a.dtype.kind not in "iu") for a in (word_ids, lengths)):
            raise ValueError("word_ids and lengths must be 1-d integer arrays")
        if len(lengths) and lengths.min() < 0:
            raise ValueError("lengths must not be negative")
        # Range first, on the ids as given: a uint64 2**64 - 1 must not pass as -1 once cast.
        if len(word_ids) and not -1 <= word_ids.min() <= word_ids.max() < len(self.words):
            raise ValueError(f"word ids must lie in [-1, {len(self.words)})")
        word_ids = word_ids.astype(np.int64, copy=False)  # n-gram keys need 64 bits
        lengths = lengths.astype(np.int64, copy=False)
        ends = np.cumsum(lengths + 1)
        if len(word_ids) != (ends[-1] if len(ends) else 0) or np.any(word_ids[ends - 1] != -1):
            raise ValueError("word_ids must hold each paper's ids and one -1 after each")
        return word_ids, lengths

    def _chunk_logits(self, word_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """`logits_of_word_ids` of one chunk, all at once: the -1 after each paper keeps any
        n-gram from spanning two of them."""
        n_docs, n_features, n_labels = len(lengths), len(self.grams), self.n_labels
        if n_features == 0:
            return np.tile(self.intercept, (n_docs, 1))
        digits = word_ids + 1  # 0: not a known word, or between documents
        owner = np.repeat(np.arange(n_docs), lengths + 1)
        base = len(self.words) + 1
        feature = self._unigram_feature[digits]  # type: ignore[attr-defined]
        hit = feature >= 0
        found_docs, found_features = [owner[hit]], [feature[hit]]
        keys, known = digits, digits > 0
        for n in range(2, self.max_ngram + 1):  # extend every (n-1)-gram by the next word
            keys = keys[:-1] * base + digits[n - 1 :]
            known = known[:-1] & (digits[n - 1 :] > 0)
            candidates = keys[known]
            feature = np.searchsorted(self._keys, candidates)  # type: ignore[attr-defined]
            feature[feature == n_features] = 0
            hit = self._keys[feature] == candidates  # type: ignore[attr-defined]
            found_docs.append(owner[: len(known)][known][hit])
            found_features.append(feature[hit])
        pairs, tf = np.unique(
            np.concatenate(found_docs) * n_features + np.concatenate(found_features),
            return_counts=True,
        )
        doc, feature = np.divmod(pairs, n_features)  # sorted by document
        weights = (1.0 + np.log(tf)) * self.idf[feature]
        norms = np.sqrt(np.bincount(doc, weights=weights * weights, minlength=n_docs))
        weights /= np.maximum(norms, 1e-12)[doc]
        out = np.zeros((n_docs, n_labels), dtype=np.float64)
        row = self._dense_row[feature]  # type: ignore[attr-defined]
        on_dense = row >= 0
        if on_dense.any():
            # Each document's dense rows, scaled by its weights and summed in feature order: the
            # same sum whatever else is in the batch.
            dense_rows = row[on_dense]
            rows = np.take(self.dense, dense_rows, axis=0).astype(np.float32)
            rows *= (weights[on_dense] * self.dense_scale[dense_rows]).astype(np.float32)[:, None]
            dense_doc = doc[on_dense]
            first = np.ones(len(dense_doc), dtype=bool)  # where each document's rows start
            np.not_equal(dense_doc[1:], dense_doc[:-1], out=first[1:])
            starts = np.flatnonzero(first)
            out[dense_doc[starts]] = np.add.reduceat(rows, starts, axis=0)
            on_sparse = ~on_dense
            doc, feature, weights = doc[on_sparse], feature[on_sparse], weights[on_sparse]
        out += self._sparse_logits(doc, feature, weights, n_docs)
        return (out + self.intercept).astype(np.float32)

    def _sparse_logits(
        self, doc: np.ndarray, feature: np.ndarray, weights: np.ndarray, n_docs: int
    ) -> np.ndarray:
        """The sparse rows' share of the logits, `[n_docs, labels]` in float64."""
        n_labels = self.n_labels
        starts = self.indptr[feature]
        counts = self.indptr[feature + 1] - starts
        # Positions of every kept weight of these features, without a Python loop.
        positions = np.repeat(starts - (np.cumsum(counts) - counts), counts)
        positions += np.arange(len(positions))
        cells = np.repeat(doc * n_labels, counts) + self.label_ids[positions]
        contributions = np.repeat(weights, counts) * self.values[positions]
        out = np.bincount(cells, weights=contributions, minlength=n_docs * n_labels)
        return out.reshape(n_docs, n_labels)

    def predict_proba(self, documents: Sequence[Sequence[str]]) -> np.ndarray:
        """Per-label probabilities, the logistic of `logits`."""
        return sigmoid(self.logits(documents))

    def to_files(self) -> tuple[dict[str, object], bytes]:
        """The JSON document (words and settings) and the npz bytes (arrays) to save.

        The npz is stored uncompressed: it loads with a copy rather than a decompression
        (cold start), and the deployment zip compresses it anyway.
        """
        document = {
            "format_version": FORMAT_VERSION,
            "features": "content words and their n-grams up to max_ngram, as word ids",
            "max_ngram": self.max_ngram,
            "sublinear_tf": True,
            "norm": "l2",
            "words": list(self.words),
        }
        buffer = io.BytesIO()
        np.savez(
            buffer,
            grams=self.grams.astype(np.int32),
            idf=self.idf.astype(np.float32),
            indptr=self.indptr.astype(np.int32),
            label_ids=self.label_ids.astype(label_id_dtype(self.n_labels)),
            values=self.values.astype(np.float16),
            dense_features=self.dense_features.astype(np.int32),
            dense=self.dense.astype(np.int16),
            dense_scale=self.dense_scale.astype(np.float32),
            intercept=self.intercept.astype(np.float32),
        )
        return document, buffer.getvalue()

    @classmethod
    def from_files(cls, document_bytes: bytes, weights_bytes: bytes) -> TfidfScorer:
        """Rebuild from `to_files`' output; raise ValueError naming what is wrong."""
        document = load_document(document_bytes, FORMAT_VERSION)
        words, max_ngram = document.get("words"), document.get("max_ngram")
        if not isinstance(words, list) or not set(map(type, words)) <= {str}:
            raise ValueError("words must be a list of strings")
        if document.get("sublinear_tf") is not True or document.get("norm") != "l2":
            raise ValueError("only sublinear tf with l2 normalisation is implemented")
        arrays = load_arrays(weights_bytes, ARRAYS)
        expected = {
            "grams": ("i", 2),
            "idf": ("f", 1),
            "indptr": ("iu", 1),
            "label_ids": ("u", 1),
            "values": ("f", 1),
            "dense_features": ("i", 1),
            "dense": ("i", 2),
            "dense_scale": ("f", 1),
            "intercept": ("f", 1),
        }
        for name, (kinds, ndim) in expected.items():
            if arrays[name].dtype.kind not in kinds or arrays[name].ndim != ndim:
                raise ValueError(f"{name} is {arrays[name].dtype} {arrays[name].shape}")
        if arrays["grams"].shape[1] != max_ngram:
            raise ValueError(
                f"grams has {arrays['grams'].shape[1]} columns, max_ngram is {max_ngram}"
            )
        return cls(tuple(words), **arrays)  # kept as stored: no copy at cold start


CHUNK = 256  # papers scored together (memory grows with it; 64 already amortises numpy's calls)
MAX_NGRAM = 3  # (words + 1) ** MAX_NGRAM must fit an int64 gram key


def gram_keys(grams: np.ndarray, n_words: int) -> np.ndarray:
    """One int64 per n-gram of word ids: its ids + 1 as digits in base `n_words + 1`.

    Every digit is at least 1, so n-grams of different lengths never share a key; a row that
    is not word ids followed only by -1 padding is refused.
    """
    if n_words + 1 >= 2 ** (63 // MAX_NGRAM):
        raise ValueError(f"{n_words} words are too many for int64 gram keys")
    if grams.size and (grams.min() < -1 or grams.max() >= n_words):
        raise ValueError(f"grams must hold word ids in [0, {n_words}) or -1")
    present = grams >= 0
    if len(grams) and not (present[:, 0].all() and np.all(present[:, :-1] >= present[:, 1:])):
        raise ValueError("each gram must start with a word and be padded with -1 only at the end")
    keys = np.zeros(len(grams), dtype=np.int64)
    for column in range(grams.shape[1]):
        digit = grams[:, column].astype(np.int64) + 1
        keys = np.where(present[:, column], keys * (n_words + 1) + digit, keys)
    return keys


def label_id_dtype(n_labels: int) -> type[np.unsignedinteger]:
    """The smallest unsigned type holding label ids below `n_labels` (uint8 up to 256 labels)."""
    return np.uint8 if n_labels <= 256 else np.uint16


def load_document(raw: bytes, format_version: int) -> dict:
    """A JSON object with the expected `format_version`; ValueError otherwise."""
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise ValueError(f"not valid JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format_version") != format_version:
        raise ValueError(f"expected an object with format_version {format_version}")
    return document


def load_arrays(raw: bytes, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The named arrays of an npz file's bytes, never unpickling; ValueError when malformed.

    Arrays stored uncompressed (`np.savez`) are read-only views of `raw` where their data is
    aligned, checked against the zip's CRC as numpy would: that spares a cold start copying
    the baseline's 16 MB twice. Compressed ones are read by numpy.
    """
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            missing = [name for name in names if name not in archive.files]
            if missing:
                raise ValueError(f"the arrays {', '.join(missing)} are missing")
            members = archive.zip.NameToInfo  # numpy's rule: the name itself, else name.npy
            stored = (
                stored_array(raw, members.get(name) or members[f"{name}.npy"]) for name in names
            )
            return {
                name: archive[name] if array is None else array
                for name, array in zip(names, stored, strict=True)
            }
    except ValueError as error:
        if "pickle" in str(error):
            raise ValueError("it holds pickled (object) data, which is never loaded") from None
        raise
    except Exception as error:  # zipfile, zlib and format errors differ across numpy versions
        raise ValueError(f"not a readable npz file ({type(error).__name__})") from None


def stored_array(raw: bytes, info: zipfile.ZipInfo) -> np.ndarray | None:
    """The `.npy` member `info` of the zip file `raw`: a read-only view of its bytes (a copy
    where they are not aligned for its type), or None when numpy should read it (compressed,
    or a header version other than 1.0)."""
    if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
        return None
    if info.flag_bits & 1:
        raise ValueError(f"{info.filename} is encrypted")
    local = info.header_offset  # the local file header: its name and extra field lengths
    if local < 0 or raw[local : local + 4] != b"PK\x03\x04":
        raise ValueError(f"{info.filename} has no local file header")
    name_length, extra_length = struct.unpack_from("<HH", raw, local + 26)
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    if raw[local + 30 : local + 30 + name_length] != info.orig_filename.encode(encoding):
        raise ValueError(f"{info.filename}'s local file header names another file")
    start = local + 30 + name_length + extra_length
    if zlib.crc32(memoryview(raw)[start : start + info.file_size]) != info.CRC:
        raise ValueError(f"{info.filename} fails its CRC check")
    header = io.BytesIO(raw[start : start + min(info.file_size, HEADER_LIMIT)])
    version = np.lib.format.read_magic(header)
    if version != (1, 0):
        return None
    shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(header)
    if dtype.hasobject:
        raise ValueError(f"{info.filename} holds pickled (object) data")
    count = math.prod(shape)
    offset = start + header.tell()
    if header.tell() + count * dtype.itemsize != info.file_size:
        raise ValueError(f"{info.filename} holds {info.file_size} bytes, not a {dtype} {shape}")
    array = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
    if offset % dtype.alignment:
        array = array.copy()  # numpy's loops are slower on unaligned data
    return array.reshape(shape, order="F" if fortran_order else "C")


HEADER_LIMIT = 65_536  # bytes read for a .npy header (numpy's own limit is 10,000)


def all_finite(array: np.ndarray) -> bool:
    """No NaN or infinity in `array`; float16 is tested on its exponent bits, which numpy does
    many times faster than `isfinite` on float16 (a cold-start cost)."""
    if array.dtype == np.float16:
        exponent = np.uint16(0x7C00)  # all ones: infinity or NaN
        return not np.any((array.view(np.uint16) & exponent) == exponent)
    return bool(np.all(np.isfinite(array)))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The logistic function in float32, without overflow warnings for large |logits|."""
    return (0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32)


def logit(probabilities: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Inverse of `sigmoid`, with probabilities clipped to [eps, 1 - eps] first."""
    clipped = np.clip(probabilities.astype(np.float64), eps, 1.0 - eps)
    return np.log(clipped / (1.0 - clipped)).astype(np.float32)
