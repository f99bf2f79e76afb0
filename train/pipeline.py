"""The training run: data → tokenizer → baseline and LSTM → decision rules → artifacts, reports."""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from lambda_handler.files import (
    sha256_file,
    staged_directory,
    write_bytes_atomic,
    write_json_atomic,
)
from lambda_handler.text import Tokenizer, english_stopwords, words
from train import baseline, data, lstm, thresholds
from train.categories import category_name
from train.evaluate import evaluate
from train.report import write_reports

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Settings:
    """Everything a run depends on besides the data file."""

    seed: int = 42
    min_label_count: int = 20
    vocab_size: int = 20_000
    max_length: int = 200
    lstm: lstm.LSTMConfig = field(default_factory=lstm.LSTMConfig)
    baseline: baseline.BaselineConfig = field(default_factory=baseline.BaselineConfig)
    artifacts: Path = Path("artifacts")
    reports: Path = Path("reports")
    verbose: int = 1

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        """Settings from `train/run.py`'s parsed arguments; unset options keep their defaults."""
        lstm_overrides = {
            key: getattr(args, key)
            for key in (
                "epochs",
                "units",
                "embedding_dim",
                "batch_size",
                "learning_rate",
                "dropout",
                "spatial_dropout",
            )
            if getattr(args, key) is not None
        }
        baseline_config = baseline.BaselineConfig()
        if args.baseline_max_features is not None:
            baseline_config = replace(baseline_config, max_features=args.baseline_max_features)
        return cls(
            seed=args.seed,
            min_label_count=args.min_label_count,
            vocab_size=args.vocab_size,
            max_length=args.max_length,
            lstm=replace(lstm.LSTMConfig(), seed=args.seed, **lstm_overrides),
            baseline=baseline_config,
            artifacts=args.artifacts,
            reports=args.reports,
            verbose=0 if args.quiet else 1,
        )

    def to_dict(self) -> dict[str, object]:
        settings = asdict(self)
        settings.update(artifacts=str(self.artifacts), reports=str(self.reports))
        return settings


def log(message: str) -> None:
    print(message, flush=True)


def choose_and_score(
    name: str,
    targets: dict[str, np.ndarray],
    probabilities: dict[str, np.ndarray],
    labels: list[str],
    seed: int,
) -> dict[str, object]:
    """Choose a decision rule on validation; score it, and the others for reference, on test."""
    rule, chosen_thresholds, scores = thresholds.choose_rule(
        targets["val"], probabilities["val"], seed
    )
    rules = []
    for candidate, score in zip(thresholds.RULES, scores, strict=True):
        predicted = thresholds.predict_sets(
            probabilities["test"], candidate.fit(targets["val"], probabilities["val"])
        )
        rules.append(
            {
                "name": candidate.name,
                "val_micro_f1": score.micro_f1,
                "val_macro_f1": score.macro_f1,
                "test_micro_f1": thresholds.micro_f1(targets["test"], predicted),
                "test_macro_f1": thresholds.macro_f1(targets["test"], predicted),
            }
        )
    predicted = thresholds.predict_sets(probabilities["test"], chosen_thresholds)
    test = evaluate(targets["test"], probabilities["test"], predicted, labels)
    log(
        f"{name}: rule '{rule.name}' → test micro-F1 {test['micro_f1']:.4f}, macro-F1 "
        f"{test['macro_f1']:.4f}, P@1 {test['p_at_1']:.4f}"
    )
    return {
        "rule": rule.name,
        "thresholds": [float(t) for t in chosen_thresholds],
        "rules": rules,
        "test": test,
    }


def labels_document(
    model: str, labels: list[str], result: dict, support: np.ndarray
) -> dict[str, object]:
    """The labels JSON: code, name, threshold and training support, in model output order."""
    return {
        "format_version": 1,
        "model": model,
        "decision_rule": {"name": result["rule"], "always_top_label": True},
        "labels": [
            {
                "code": code,
                "name": category_name(code),
                "threshold": threshold,
                "support": int(count),
            }
            for code, threshold, count in zip(labels, result["thresholds"], support, strict=True)
        ],
    }


def jsonl_gz(papers: list[data.Paper]) -> bytes:
    """Papers as gzipped JSON lines, byte-for-byte reproducible (no timestamp in the header)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as out:
        for paper in papers:
            line = {"title": paper.title, "abstract": paper.abstract, "labels": list(paper.labels)}
            out.write((json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))
    return buffer.getvalue()


def run(path: Path, splits: data.Splits, settings: Settings) -> dict[str, object]:
    """Train and evaluate both models on `splits` (read from `path`); write artifacts, reports."""
    started = time.time()
    for key, value in splits.counts.items():
        log(f"  {key.replace('_', ' ')}: {value:,}")
    dropped = ", ".join(f"{code} x{count}" for code, count in splits.dropped_codes.most_common(8))
    log(f"  non-arXiv codes dropped: {sum(splits.dropped_codes.values()):,} ({dropped or 'none'})")
    papers = {name: getattr(splits, name) for name in SPLITS}
    targets = {name: data.multi_hot(papers[name], splits.labels) for name in SPLITS}

    stopwords = english_stopwords()
    documents = {
        name: [words(p.title, p.abstract, stopwords) for p in papers[name]] for name in SPLITS
    }
    tokenizer = Tokenizer.fit(
        documents["train"], settings.vocab_size, stopwords, settings.max_length
    )
    sequences = {name: [tokenizer.ids(doc) for doc in documents[name]] for name in SPLITS}
    mean_length = np.mean([len(sequence) for sequence in sequences["train"]])
    log(f"Tokenizer: {tokenizer.size:,} ids; {mean_length:.0f} tokens per paper")

    log("Baseline: TF-IDF + one-vs-rest logistic regression")
    fitted_baseline = baseline.fit(documents["train"], targets["train"], settings.baseline)
    baseline_probabilities = {
        name: fitted_baseline.predict_proba(documents[name]) for name in ("val", "test")
    }

    log(f"LSTM: {settings.lstm}")
    model, history = lstm.train(
        sequences["train"],
        targets["train"],
        sequences["val"],
        targets["val"],
        tokenizer.size,
        settings.lstm,
        thresholds.best_global_micro_f1,
        verbose=2 if settings.verbose else 0,
    )
    lstm_probabilities = {name: lstm.predict(model, sequences[name]) for name in ("val", "test")}

    results_by_model = {
        "baseline": choose_and_score(
            "baseline", targets, baseline_probabilities, splits.labels, settings.seed
        ),
        "lstm": choose_and_score("lstm", targets, lstm_probabilities, splits.labels, settings.seed),
    }
    support = targets["train"].sum(axis=0)
    data_info = {
        "path": str(path),
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "counts": splits.counts,
        "non_arxiv_codes_dropped": sum(splits.dropped_codes.values()),
    }

    with staged_directory(settings.artifacts) as staging:
        model.save(staging / "lstm.keras")
        tokenizer.save(staging / "tokenizer.json")
        write_json_atomic(
            staging / "labels.json",
            labels_document("lstm", splits.labels, results_by_model["lstm"], support),
        )
        fitted_baseline.save(staging / "baseline")
        write_json_atomic(
            staging / "baseline" / "labels.json",
            labels_document("baseline", splits.labels, results_by_model["baseline"], support),
        )
        write_bytes_atomic(staging / "test_split.jsonl.gz", jsonl_gz(papers["test"]))
        write_json_atomic(staging / "data.json", data_info)

    results = {
        "data": data_info,
        "models": results_by_model,
        "lstm_history": history,
        "run": {
            "seconds": round(time.time() - started, 1),
            "settings": settings.to_dict(),
            "python": sys.version.split()[0],
        },
    }
    write_reports(results, history, settings.reports)
    seconds = results["run"]["seconds"]
    log(f"Artifacts in {settings.artifacts}, reports in {settings.reports} ({seconds} s)")
    return results
