"""The classifier: load and verify a model directory, score papers, pick labels.

A paper's score is the served system's: the BiLSTM (onnxruntime) and the TF-IDF baseline
(numpy, `tfidf.py`) each score it, and the combiner (`combiner.py`) merges the two. Everything
per-model (session, tokenizer, baseline arrays, label names, thresholds) is built once at
load, so a request only tokenizes, runs the graph, a sparse dot product and a small matmul.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnxruntime as ort

from lambda_handler.combiner import Combiner
from lambda_handler.labels import Label, LabelSet
from lambda_handler.manifest import (
    BASELINE_FILE,
    BASELINE_WEIGHTS_FILE,
    COMBINER_FILE,
    COMBINER_WEIGHTS_FILE,
    LABELS_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    YEAR_PRIOR_FILE,
    ModelError,
    read_model_dir,
)
from lambda_handler.text import OOV_ID, PAD_ID, Tokenizer
from lambda_handler.tfidf import TfidfScorer, sigmoid
from lambda_handler.year_prior import YearPrior

# Papers per onnxruntime run within a batch. Sorting a batch by length and running it in groups
# this small removes most padding (a batch of 32 abstracts padded to its longest is a third
# padding), and the LSTM runs fastest per paper at 3 to 6 rows (bench/results.md).
SUB_BATCH = 4


class Encoded(NamedTuple):
    """A paper as both models read it: all its content words and their vocabulary ids (the
    LSTM reads the first `max_length` of them, the baseline all)."""

    words: list[str]
    ids: list[int]


@dataclass(frozen=True)
class ModelInfo:
    """Name and version of the served model, and what it is made of, as the manifest says."""

    name: str
    version: str
    served: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, **dict(self.served)}


@dataclass(frozen=True, eq=False)
class Classifier:
    """A verified model: tokenizer, onnxruntime session, baseline, combiner and labels."""

    info: ModelInfo
    labels: tuple[Label, ...]
    low_confidence_below: float | None
    tokenizer: Tokenizer
    session: ort.InferenceSession
    input_name: str
    output_name: str
    baseline: TfidfScorer
    combiner: Combiner
    year_prior: YearPrior | None = None
    thresholds: np.ndarray = field(init=False, repr=False)
    _output_names: list[str] = field(init=False, repr=False)
    _baseline_word_of_id: np.ndarray | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        thresholds = np.array([label.threshold for label in self.labels], dtype=np.float32)
        object.__setattr__(self, "thresholds", thresholds)
        object.__setattr__(self, "_output_names", [self.output_name])
        object.__setattr__(
            self, "_baseline_word_of_id", word_id_table(self.tokenizer, self.baseline)
        )

    @classmethod
    def load(cls, model_dir: str | Path, threads: int = 1) -> Classifier:
        """Load `model_dir`, verifying every file against manifest.json; raise ModelError."""
        manifest, blobs = read_model_dir(Path(model_dir))
        label_set = parse_labels(blobs[LABELS_FILE])
        tokenizer = parse_tokenizer(blobs[TOKENIZER_FILE])
        session = open_session(blobs[MODEL_FILE], threads)
        try:
            baseline, combiner, year_prior = parse_components(blobs)
        except ComponentError as error:
            raise ModelError(f"{'/'.join(error.files)}: {error}") from None
        classifier = cls(
            info=ModelInfo(manifest.name, manifest.version, tuple(manifest.served.items())),
            labels=label_set.labels,
            low_confidence_below=label_set.low_confidence_below,
            tokenizer=tokenizer,
            session=session,
            input_name=manifest.input_name,
            output_name=manifest.output_name,
            baseline=baseline,
            combiner=combiner,
            year_prior=year_prior,
        )
        classifier._check_components()
        classifier._check_graph()
        return classifier

    def encode(self, title: str, abstract: str) -> Encoded | None:
        """A paper's words and token ids, or None when its abstract has no content words."""
        # words(title, abstract) == words(title, "") + words("", abstract): the joining newline
        # is never part of a token, so each part is tokenized once and the abstract judged alone.
        abstract_words = self.tokenizer.words("", abstract)
        if not abstract_words:
            return None
        title_words = self.tokenizer.words(title, "") if title else []
        all_words = title_words + abstract_words
        return Encoded(all_words, self.tokenizer.all_ids(all_words))

    def predict(
        self, papers: Sequence[Encoded], years: Sequence[int | None] | None = None
    ) -> np.ndarray:
        """The served system's scores `[n, n_labels]`, in input order; each paper's year
        (None: not known) moves them where the model has a year prior that covers it."""
        if years is not None and len(years) != len(papers):
            raise ValueError(f"{len(years)} years for {len(papers)} papers")
        lstm = (
            self.predict_lstm([paper.ids for paper in papers]) if self.combiner.uses_lstm else None
        )
        baseline = self.predict_baseline(papers) if self.combiner.uses_baseline else None
        prior = self.year_prior
        offsets = None if prior is None or years is None else prior.offsets(years)
        return self.combiner.combine(lstm, baseline, offsets)

    def predict_baseline(self, papers: Sequence[Encoded]) -> np.ndarray:
        """The baseline's scores `[n, n_labels]`: from the papers' vocabulary ids, gathered into
        the baseline's word ids, which spares a second dictionary lookup per word; from their
        words when the baseline knows a word the vocabulary lacks."""
        table = self._baseline_word_of_id
        if table is None:
            return self.baseline.predict_proba([paper.words for paper in papers])
        ids: list[int] = []
        for paper in papers:
            ids.extend(paper.ids)
            ids.append(PAD_ID)  # the table maps it to -1: the separator after each paper
        lengths = np.fromiter((len(paper.ids) for paper in papers), dtype=np.int64)
        word_ids = table[np.array(ids, dtype=np.intp)]  # int64, in range by construction
        return sigmoid(self.baseline.logits_of_word_ids(word_ids, lengths, check=False))

    def predict_lstm(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """The LSTM's scores `[n, n_labels]` in input order, from the first `max_length` ids of
        each sequence (as in training): one paper runs unpadded; a batch runs sorted by length
        in groups of at most `SUB_BATCH` papers, each pre-padded to its own longest."""
        length = self.tokenizer.max_length
        sequences = [sequence[:length] for sequence in sequences]
        if max(map(len, sequences), default=0) == 0:
            raise ValueError("every sequence must hold at least one token id")
        if len(sequences) <= SUB_BATCH:
            return self._run(sequences)
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        scores = np.empty((len(sequences), len(self.labels)), dtype=np.float32)
        for start in range(0, len(order), SUB_BATCH):
            rows = order[start : start + SUB_BATCH]
            scores[rows] = self._run([sequences[i] for i in rows])
        return scores

    def _run(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """One onnxruntime run: a single paper unpadded, several pre-padded to their longest."""
        if len(sequences) == 1:
            tokens = np.array(sequences, dtype=np.int32)
        else:
            longest = max(1, *map(len, sequences))
            tokens = np.full((len(sequences), longest), PAD_ID, dtype=np.int32)
            for row, sequence in zip(tokens, sequences, strict=True):
                if sequence:
                    row[longest - len(sequence) :] = sequence
        return self.session.run(self._output_names, {self.input_name: tokens})[0]

    def choose(self, scores: np.ndarray, top_k: int, threshold: float | None = None) -> np.ndarray:
        """Label indices for one paper: score ≥ threshold, best first, top one always, ≤ top_k."""
        limit = self.thresholds if threshold is None else threshold
        keep = scores >= limit
        top = scores.argmax()
        if np.isnan(scores[top]):  # argmax finds a NaN first; the best number comes first
            top = np.argsort(-scores, kind="stable")[0]
        keep[top] = True
        chosen = np.flatnonzero(keep)  # sorting only these (ties by index) takes 40% less time
        return chosen[np.argsort(-scores[chosen], kind="stable")][:top_k]

    def is_low_confidence(self, scores: np.ndarray) -> bool:
        """Whether a paper's top score is below the validation-chosen low-confidence line."""
        below = self.low_confidence_below
        return below is not None and float(scores.max()) < below

    def _check_components(self) -> None:
        """Refuse a baseline or combiner whose labels disagree with labels.json."""
        codes = tuple(label.code for label in self.labels)
        if self.combiner.labels != codes:
            raise ModelError(
                f"{COMBINER_FILE} lists {len(self.combiner.labels)} labels that differ from the "
                f"{len(codes)} of {LABELS_FILE} (or their order)"
            )
        if self.year_prior is not None and self.year_prior.labels != codes:
            raise ModelError(
                f"{YEAR_PRIOR_FILE} lists {len(self.year_prior.labels)} labels that differ from "
                f"the {len(codes)} of {LABELS_FILE} (or their order)"
            )
        if self.baseline.n_labels != len(codes):
            raise ModelError(
                f"{BASELINE_WEIGHTS_FILE} scores {self.baseline.n_labels} labels; "
                f"{LABELS_FILE} lists {len(codes)}"
            )

    def _check_graph(self) -> None:
        """Refuse a graph whose inputs/outputs differ from the manifest or from labels.json."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        input_names = [node.name for node in inputs]
        if input_names != [self.input_name]:
            raise ModelError(
                f"model.onnx inputs are {input_names}, manifest.json io.input is "
                f"{self.input_name!r}"
            )
        if inputs[0].type != "tensor(int32)" or len(inputs[0].shape) != 2:
            raise ModelError(
                f"model.onnx input {self.input_name!r} is {inputs[0].type} with shape "
                f"{inputs[0].shape}; expected int32 [batch, time]"
            )
        output_names = [node.name for node in outputs]
        if self.output_name not in output_names:
            raise ModelError(
                f"model.onnx outputs are {output_names}, manifest.json io.output is "
                f"{self.output_name!r}"
            )
        # A real run of one paper and of a padded batch, using the largest id the tokenizer can
        # emit: catches an embedding smaller than the vocabulary and warms the session up.
        largest = self.tokenizer.size - 1
        n_labels = len(self.labels)
        for probe in ([[OOV_ID, largest]], [[largest, OOV_ID, OOV_ID], [OOV_ID]]):
            try:
                scores = self.predict_lstm(probe)
            except Exception as error:
                message = f"model.onnx failed a test prediction: {_first_line(error)}"
                raise ModelError(message) from None
            if scores.dtype != np.float32 or scores.shape != (len(probe), n_labels):
                raise ModelError(
                    f"model.onnx gives {scores.dtype} scores of shape {scores.shape} for "
                    f"{len(probe)} paper(s); expected float32 ({len(probe)}, {n_labels}) "
                    f"for the {n_labels} labels in labels.json"
                )
            if not np.all((scores >= 0.0) & (scores <= 1.0)):
                raise ModelError("model.onnx gives scores outside [0, 1] (or NaN)")


class Components(NamedTuple):
    """The scorers beside the LSTM: the baseline, the combiner and the optional year prior."""

    baseline: TfidfScorer
    combiner: Combiner
    year_prior: YearPrior | None


class ComponentError(ValueError):
    """A component whose files do not parse; `files` names them, the message says why."""

    def __init__(self, files: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.files = files


def parse_components(blobs: Mapping[str, bytes]) -> Components:
    """The components from their files' bytes by name, as a model directory and a training
    run's artifacts both hold them (combiner.npz and year_prior.json only where present)."""
    try:
        baseline = TfidfScorer.from_files(blobs[BASELINE_FILE], blobs[BASELINE_WEIGHTS_FILE])
    except ValueError as error:
        raise ComponentError((BASELINE_FILE, BASELINE_WEIGHTS_FILE), str(error)) from None
    weights = blobs.get(COMBINER_WEIGHTS_FILE)
    try:
        combiner = Combiner.from_files(blobs[COMBINER_FILE], weights)
    except ValueError as error:
        files = (COMBINER_FILE,) if weights is None else (COMBINER_FILE, COMBINER_WEIGHTS_FILE)
        raise ComponentError(files, str(error)) from None
    year_prior = None
    if YEAR_PRIOR_FILE in blobs:
        try:
            year_prior = YearPrior.from_bytes(blobs[YEAR_PRIOR_FILE])
        except ValueError as error:
            raise ComponentError((YEAR_PRIOR_FILE,), str(error)) from None
    return Components(baseline, combiner, year_prior)


def word_id_table(tokenizer: Tokenizer, baseline: TfidfScorer) -> np.ndarray | None:
    """The baseline's word id of each vocabulary id (-1 for padding, OOV and words it does not
    use), or None when some word of the baseline is not in the vocabulary (its OOV id would
    lose it)."""
    ids = np.array(tokenizer.all_ids(baseline.words), dtype=np.intp)
    if np.any(ids == OOV_ID):
        return None
    table = np.full(tokenizer.size, -1, dtype=np.int64)
    table[ids] = np.arange(len(ids))
    return table


def parse_labels(raw: bytes) -> LabelSet:
    """Labels in model output order, and the answer rules, from labels.json; ModelError if bad."""
    try:
        return LabelSet.from_bytes(raw)
    except ValueError as error:
        raise ModelError(f"{LABELS_FILE} {error}") from None


def parse_tokenizer(raw: bytes) -> Tokenizer:
    """The shared tokenizer from tokenizer.json's bytes; raise ModelError when invalid."""
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return Tokenizer.from_dict(data)
    except (ValueError, TypeError, RecursionError) as error:
        raise ModelError(f"tokenizer.json is invalid: {_first_line(error)}") from None


def open_session(model: bytes, threads: int) -> ort.InferenceSession:
    """A CPU onnxruntime session with explicit thread counts (Lambda bills every thread)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as error:
        raise ModelError(
            f"model.onnx cannot be loaded by onnxruntime: {_first_line(error)}"
        ) from None


def _first_line(error: BaseException, limit: int = 300) -> str:
    """A short, single-line description of an exception for messages and logs."""
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:limit]
