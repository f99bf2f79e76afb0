"""The training run: data → both models → combiner → decision rules → artifacts, reports."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from export.artifacts import (
    COMBINER_FILE,
    COMBINER_WEIGHTS_FILE,
    DATA_FILE,
    LABELS_FILE,
    PREDICTIONS_FILE,
    TEST_SPLIT_FILE,
    YEAR_PRIOR_FILE,
)
from lambda_handler.files import (
    staged_directory,
    write_bytes_atomic,
    write_files_atomic,
    write_json_atomic,
)
from lambda_handler.labels import Label, LabelSet, float32_decimal
from lambda_handler.text import OOV_ID, shipped_stopwords, words
from lambda_handler.year_prior import EARLIEST_DATE
from train import baseline, confidence, data, ensemble, lstm, thresholds, year_prior
from train.categories import ALIASES, LEGACY, archive, category_name
from train.evaluate import (
    by_field_and_time,
    evaluate,
    outside_cs_stat,
    precision_at_k,
    subset_scores,
)
from train.report import render_reports

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Settings:
    """Everything a run depends on besides the data file."""

    seed: int = 42
    min_label_count: int = 20
    vocab_size: int = 40_000  # math and physics need their own words (OOV rates in the report)
    max_length: int = 200
    # The year prior (train/year_prior.py) learns from dated training papers up to this year,
    # each year's label shares shrunk toward the overall ones by this many pseudo-papers.
    year_prior_until: int = 2019
    year_prior_smoothing: float = 20.0
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
                "output",
            )
            if getattr(args, key) is not None
        }
        baseline_config = baseline.BaselineConfig()
        if args.baseline_max_features is not None:
            baseline_config = replace(baseline_config, max_features=args.baseline_max_features)
        return cls(
            seed=args.seed,
            min_label_count=args.min_label_count,
            year_prior_until=(
                cls.year_prior_until if args.year_prior_until is None else args.year_prior_until
            ),
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
    val_scores: np.ndarray,
    test_scores: np.ndarray,
    labels: list[str],
    seed: int,
) -> dict[str, object]:
    """Choose a decision rule on validation; score it, and the others for reference, on test."""
    rule, chosen_thresholds, scores = thresholds.choose_rule(targets["val"], val_scores, seed)
    rules = []
    for candidate, score in zip(thresholds.RULES, scores, strict=True):
        predicted = thresholds.predict_sets(test_scores, candidate.fit(targets["val"], val_scores))
        rules.append(
            {
                "name": candidate.name,
                "val_micro_f1": score.micro_f1,
                "val_macro_f1": score.macro_f1,
                "test_micro_f1": thresholds.micro_f1(targets["test"], predicted),
                "test_macro_f1": thresholds.macro_f1(targets["test"], predicted),
            }
        )
    predicted = thresholds.predict_sets(test_scores, chosen_thresholds)
    test = evaluate(targets["test"], test_scores, predicted, labels)
    log(
        f"{name}: rule '{rule.name}' → test micro-F1 {test['micro_f1']:.4f}, macro-F1 "
        f"{test['macro_f1']:.4f}, P@1 {test['p_at_1']:.4f}"
    )
    return {
        "rule": rule.name,
        "thresholds": [float32_decimal(t) for t in chosen_thresholds],
        "rules": rules,
        "test": test,
        "_predicted": predicted,
    }


def served_label_set(labels: list[str], result: dict, support: np.ndarray) -> LabelSet:
    """labels.json's content: each label's name, archive, served threshold and training
    support, the decision rule, and the low-confidence line with its validation figures."""
    low = result["low_confidence"]
    return LabelSet(
        tuple(
            Label(code, category_name(code), float(threshold), archive(code), int(count))
            for code, threshold, count in zip(labels, result["thresholds"], support, strict=True)
        ),
        decision_rule={"name": result["rule"], "always_top_label": True},
        low_confidence_below=low["top_score_below"],
        low_confidence={"rule": confidence.RULE, "validation": low["validation"]},
    )


def own_labels_by_file(
    train: list[data.Paper], targets: np.ndarray, min_label_count: int
) -> dict[str, np.ndarray]:
    """Per input file, the labels with ≥ min_label_count of its own training papers: the
    labels a model trained on that file alone would have."""
    sources = np.array([paper.source for paper in train])
    return {
        name: targets[sources == name].sum(axis=0) >= min_label_count
        for name in sorted(set(sources))
    }


def jsonl_gz(papers: list[data.Paper]) -> bytes:
    """Papers as gzipped JSON lines, byte-for-byte reproducible (no timestamp in the header)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as out:
        for paper in papers:
            line = {
                "title": paper.title,
                "abstract": paper.abstract,
                "labels": list(paper.labels),
                "primary": paper.primary,
                "date": paper.date.isoformat() if paper.date else None,
            }
            out.write((json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))
    return buffer.getvalue()


def years_of(papers: list[data.Paper]) -> list[int | None]:
    """Each paper's year, None where its date is unknown: what the year prior reads."""
    return [paper.date.year if paper.date else None for paper in papers]


def without_years(
    scores: np.ndarray, targets: np.ndarray, chosen: np.ndarray, primaries: list[str]
) -> dict[str, object]:
    """The served system's test figures when no paper's year is given, as for a caller that
    sends none: what the year prior adds is the difference."""
    predicted = thresholds.predict_sets(scores, chosen)
    outside = outside_cs_stat(primaries)
    return {
        "micro_f1": thresholds.micro_f1(targets, predicted),
        "macro_f1": thresholds.macro_f1(targets, predicted),
        "p_at_1": precision_at_k(targets, scores, 1),
        "outside_cs_stat": subset_scores(targets, scores, predicted, outside),
    }


def run_id(scores: dict[str, np.ndarray]) -> str:
    """A fingerprint of a run's scores, which differ between runs on other data, settings or
    code. `data.json` and `reports/metrics.json` both carry it, so that the export refuses an
    artifacts folder paired with another run's reports (`--artifacts` and `--reports` are
    written separately and can be pointed at different runs)."""
    digest = hashlib.sha256()
    for name in sorted(scores):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(scores[name]).tobytes())
    return digest.hexdigest()[:16]


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def combiner_table(
    choice: ensemble.Choice,
    targets: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    offsets: np.ndarray | None,
) -> list[dict[str, object]]:
    """Every compared combiner: cross-fitted validation figures and (for reference) test ones
    with its validation-fitted global threshold."""
    rows = []
    for score, combiner, oof in zip(
        choice.scores, choice.fitted, choice.all_out_of_fold, strict=True
    ):
        scores = combiner.combine(test["lstm"], test["baseline"], offsets)
        threshold = thresholds.best_global_threshold(targets["val"], oof)
        predicted = thresholds.predict_sets(scores, threshold)
        rows.append(
            {
                "name": score.name,
                "val_micro_f1": score.micro_f1,
                "val_macro_f1": score.macro_f1,
                "val_p_at_1": score.p_at_1,
                "test_micro_f1": thresholds.micro_f1(targets["test"], predicted),
                "test_macro_f1": thresholds.macro_f1(targets["test"], predicted),
                "test_p_at_1": precision_at_k(targets["test"], scores, 1),
                "chosen": score.name == choice.candidate.name,
            }
        )
    return rows


def describe_data(paths: list[Path], splits: data.Splits) -> dict[str, object]:
    """Checksums (taken when each file was read) and counts of every input file, and of the
    run as a whole."""
    return {
        "files": [
            {
                "path": str(path),
                "sha256": splits.checksums[str(path)][0],
                "bytes": splits.checksums[str(path)][1],
                "counts": splits.files[str(path)],
            }
            for path in paths
        ],
        "counts": splits.counts,
        "non_arxiv_codes_dropped": sum(splits.dropped_codes.values()),
        "unknown_arxiv_codes_dropped": dict(splits.unknown_codes.most_common()),
        "codes_folded": dict(splits.folded_codes.most_common()),
        "labels_dropped": dict(splits.dropped_labels.most_common()),
        "alias_pairs": ALIASES,
        "legacy_archives": LEGACY,
    }


def run(paths: list[Path], splits: data.Splits, settings: Settings) -> dict[str, object]:
    """Train and evaluate both models and their combination on `splits` (read from `paths`);
    write artifacts and reports."""
    started = time.time()
    for name, counts in splits.files.items():
        log(f"  {name}: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in counts.items()))
        if counts["rows_unparsable_terms"]:
            rows = data.describe_rows(splits.unparsable_rows[name], counts["rows_unparsable_terms"])
            log(
                f"  warning: {name}: {counts['rows_unparsable_terms']:,} rows left out: their "
                f"'terms' is not a list of codes such as ['cs.LG'], or fields are missing ({rows})"
            )
        if counts["rows_unparsable_date"]:
            log(
                f"  warning: {name}: {counts['rows_unparsable_date']:,} dates are empty, do not "
                f"parse or lie outside {EARLIEST_DATE.year}..tomorrow (an ISO date such as "
                "2019-05-01, or a year such as 2019, is expected); "
                "those papers are left out of the report's scores by period"
            )
    for key, value in splits.counts.items():
        log(f"  {key.replace('_', ' ')}: {value:,}")
    dropped = ", ".join(f"{code} x{count}" for code, count in splits.dropped_codes.most_common(8))
    log(f"  non-arXiv codes dropped: {sum(splits.dropped_codes.values()):,} ({dropped or 'none'})")
    unknown = ", ".join(f"{c} x{n}" for c, n in splits.unknown_codes.most_common(8))
    log(f"  arXiv-style codes the taxonomy does not know, dropped: {unknown or 'none'}")
    folded = ", ".join(f"{c} x{n}" for c, n in splits.folded_codes.most_common())
    log(f"  codes folded into their canonical one: {folded or 'none'}")
    papers = {name: getattr(splits, name) for name in SPLITS}
    targets = {name: data.multi_hot(papers[name], splits.labels) for name in SPLITS}

    stopwords = shipped_stopwords()
    documents = {
        name: [words(p.title, p.abstract, stopwords) for p in papers[name]] for name in SPLITS
    }
    models = {
        "baseline": baseline.BaselineModel(settings.baseline),
        "lstm": lstm.LSTMModel(
            settings.lstm,
            settings.vocab_size,
            settings.max_length,
            stopwords,
            verbose=2 if settings.verbose else 0,
        ),
    }
    val_scores: dict[str, np.ndarray] = {}
    test_scores: dict[str, np.ndarray] = {}
    stage_seconds = {"tokenizing": round(time.time() - started, 1)}
    for name, model in models.items():
        log(f"{name}: fitting ({getattr(model, 'config', '')})")
        fit_started = time.time()
        model.fit(documents["train"], targets["train"], (documents["val"], targets["val"]))
        val_scores[name] = model.predict_proba(documents["val"])
        test_scores[name] = model.predict_proba(documents["test"])
        stage_seconds[name] = round(time.time() - fit_started, 1)
        log(f"{name}: fitted and scored in {stage_seconds[name]:.0f} s")
    evaluation_started = time.time()
    tokenizer = models["lstm"].tokenizer
    assert tokenizer is not None
    log(f"Tokenizer: {tokenizer.size:,} ids")
    fidelity = models["baseline"].fidelity(documents["test"])
    log(
        f"baseline as stored: {fidelity['kept_fraction']:.1%} of weights kept, max |Δprob| "
        f"{fidelity['max_abs_diff']:.4f} against scikit-learn on the test split"
    )

    results_by_model = {
        name: choose_and_score(
            name, targets, val_scores[name], test_scores[name], splits.labels, settings.seed
        )
        for name in models
    }
    labels = tuple(splits.labels)
    prior = year_prior.fit(
        labels,
        targets["train"],
        years_of(papers["train"]),
        settings.year_prior_until,
        settings.year_prior_smoothing,
    )
    offsets = {
        name: None if prior is None else prior.offsets(years_of(papers[name]))
        for name in ("val", "test")
    }
    if prior is not None:
        log(f"year prior: {prior.first_year}..{prior.last_year}")
    choice = ensemble.choose_combiner(
        labels,
        val_scores["lstm"],
        val_scores["baseline"],
        targets["val"],
        settings.seed,
        offsets=offsets["val"],
    )
    served_test = choice.combiner.combine(
        test_scores["lstm"], test_scores["baseline"], offsets["test"]
    )
    log(f"combiner chosen on validation: {choice.candidate.name}")
    served = choose_and_score(
        "served", targets, choice.out_of_fold, served_test, splits.labels, settings.seed
    )
    served["combiner"] = choice.candidate.name
    served["combiners"] = combiner_table(choice, targets, test_scores, offsets["test"])
    if prior is not None:
        served["without_years"] = without_years(
            choice.combiner.combine(test_scores["lstm"], test_scores["baseline"]),
            targets["test"],
            np.asarray(served["thresholds"], dtype=np.float32),
            [p.primary for p in papers["test"]],
        )
        log(f"served without the papers' years: {served['without_years']}")
    results_by_model["served"] = served
    oov = np.array(
        [
            np.mean([i == OOV_ID for i in ids]) if ids else 0.0
            for ids in models["lstm"].sequences(documents["test"])
        ]
    )
    served["breakdown"] = by_field_and_time(
        targets["test"],
        served_test,
        served.pop("_predicted"),
        splits.labels,
        [p.primary for p in papers["test"]],
        [p.date for p in papers["test"]],
        oov,
        [p.source for p in papers["test"]],
        own_labels_by_file(papers["train"], targets["train"], settings.min_label_count),
    )
    low_confidence = confidence.choose(targets["val"], choice.out_of_fold)
    low_confidence["test"] = confidence.describe(
        targets["test"], served_test, low_confidence["top_score_below"]
    )
    served["low_confidence"] = low_confidence
    log(
        f"low confidence below a top score of {low_confidence['top_score_below']}: "
        f"{low_confidence['test']}"
    )
    for name in models:
        results_by_model[name].pop("_predicted")

    support = targets["train"].sum(axis=0)
    scores = {
        "lstm_val": val_scores["lstm"],
        "baseline_val": val_scores["baseline"],
        "lstm_test": test_scores["lstm"],
        "baseline_test": test_scores["baseline"],
        "served_test": served_test,
    }
    data_info = {**describe_data(paths, splits), "run_id": run_id(scores)}
    combiner_document, combiner_arrays = choice.combiner.to_files()

    stage_seconds["combiner, rules and evaluation"] = round(time.time() - evaluation_started, 1)
    results = {
        "data": data_info,
        "models": results_by_model,
        "baseline_storage": fidelity,
        "lstm_history": models["lstm"].history,
        "run": {
            "seconds": round(time.time() - started, 1),
            "stage_seconds": stage_seconds,
            "settings": settings.to_dict(),
            "python": sys.version.split()[0],
        },
    }
    reports = render_reports(results)
    with staged_directory(settings.artifacts, marker=DATA_FILE) as staging:
        for model in models.values():
            model.save(staging)
        write_json_atomic(
            staging / LABELS_FILE, served_label_set(splits.labels, served, support).to_document()
        )
        write_json_atomic(staging / COMBINER_FILE, combiner_document)
        if combiner_arrays is not None:
            write_bytes_atomic(staging / COMBINER_WEIGHTS_FILE, combiner_arrays)
        if prior is not None:
            write_json_atomic(staging / YEAR_PRIOR_FILE, prior.to_document())
        write_bytes_atomic(staging / TEST_SPLIT_FILE, jsonl_gz(papers["test"]))
        write_bytes_atomic(staging / PREDICTIONS_FILE, npz_bytes(**scores))
        write_json_atomic(staging / DATA_FILE, data_info)
    write_files_atomic(settings.reports, reports)
    seconds = results["run"]["seconds"]
    log(f"Artifacts in {settings.artifacts}, reports in {settings.reports} ({seconds} s)")
    return results
