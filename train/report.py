"""Write the run's results: `metrics.json`, a readable `report.md` and PNG plots."""

from __future__ import annotations

import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from export.artifacts import METRICS_FILE
from lambda_handler.files import json_bytes

SUMMARY_METRICS = (
    ("micro_f1", "micro-F1"),
    ("macro_f1", "macro-F1"),
    ("samples_f1", "samples-F1"),
    ("micro_precision", "micro precision"),
    ("micro_recall", "micro recall"),
    ("p_at_1", "P@1"),
    ("p_at_3", "P@3"),
    ("mean_labels_predicted", "labels per paper (predicted)"),
)


def png(figure: plt.Figure) -> bytes:
    """A figure rendered to PNG (and closed)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


LOSS_NAMES = {"softmax": "softmax cross-entropy", "sigmoid": "binary cross-entropy"}


def plot_training(history: dict[str, list[float]], output: str) -> bytes:
    """Training loss (named by the LSTM's `output` kind) and validation micro-F1 per epoch."""
    figure, (loss_axis, f1_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = np.arange(1, len(history["loss"]) + 1)
    loss_axis.plot(epochs, history["loss"], marker="o")
    title = f"LSTM training loss ({LOSS_NAMES[output]})"
    loss_axis.set(title=title, xlabel="epoch", ylabel="loss")
    f1_axis.plot(epochs, history["val_micro_f1"], marker="o", color="tab:green")
    f1_axis.set(title="LSTM validation micro-F1 (best global threshold)", xlabel="epoch")
    for axis in (loss_axis, f1_axis):
        axis.grid(alpha=0.3)
        axis.set_xticks(epochs)
    return png(figure)


def plot_per_label(models: dict[str, dict]) -> bytes:
    """Per-label test F1 of every model side by side, labels sorted by support."""
    first = next(iter(models.values()))["per_label"]
    labels = sorted(first, key=lambda label: -first[label]["support"])
    positions = np.arange(len(labels))
    width = 0.8 / len(models)
    figure, axis = plt.subplots(figsize=(max(8, 0.28 * len(labels)), 4.2))
    for i, (name, metrics) in enumerate(models.items()):
        f1 = [metrics["per_label"][label]["f1"] for label in labels]
        axis.bar(positions + i * width, f1, width, label=name)
    axis.set_xticks(positions + width * (len(models) - 1) / 2, labels, rotation=90, fontsize=7)
    axis.set(
        ylabel="test F1", ylim=(0, 1), title="Per-label F1 on the test split (labels by support)"
    )
    axis.legend()
    axis.grid(axis="y", alpha=0.3)
    return png(figure)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def scores_row(name: str, scores: dict) -> list[str]:
    """A table row of a subset's figures ("-" where the subset has no papers)."""
    return [
        name,
        f"{scores['papers']:,}",
        *(share_or_dash(scores[key], ".4f") for key in ("micro_f1", "macro_f1", "p_at_1")),
    ]


def data_section(data: dict) -> list[str]:
    lines = ["## Data", ""]
    for entry in data["files"]:
        lines.append(
            f"- `{entry['path']}` (sha256 `{entry['sha256'][:16]}…`): "
            + ", ".join(
                f"{key.replace('_', ' ')} {value:,}" for key, value in entry["counts"].items()
            )
        )
    lines += [
        "",
        *table(
            ["step", "count"],
            [[key.replace("_", " "), f"{value:,}"] for key, value in data["counts"].items()],
        ),
        "",
    ]
    folded = ", ".join(f"{pair} ({n:,})" for pair, n in data["codes_folded"].items()) or "none"
    unknown = ", ".join(f"{c} ({n})" for c, n in data["unknown_arxiv_codes_dropped"].items())
    rare = ", ".join(f"{c} ({n})" for c, n in data.get("labels_dropped", {}).items())
    lines += [
        "Codes folded into one label (an alias, a closed archive or another spelling → the "
        "canonical code; rows read, before duplicates merge): " + folded + ".",
        *(  # runs before 2026-12-07 did not record them
            [
                "Labels dropped for too few training papers (training papers): "
                + (rare or "none")
                + "."
            ]
            if "labels_dropped" in data
            else []
        ),
        "Codes shaped like arXiv categories that the taxonomy does not know, dropped: "
        + (unknown or "none")
        + f". Other (ACM, MSC, junk) codes dropped: "
        f"{data['non_arxiv_codes_dropped']:,}.",
        "",
    ]
    return lines


def share_or_dash(value: float | None, spec: str) -> str:
    """`value` formatted, or "-" when there is none (0.0 is a value)."""
    return "-" if value is None else format(value, spec)


def low_confidence_section(low: dict) -> list[str]:
    """The low-confidence line: whether it is offered, and how it splits validation and test."""
    below = low["top_score_below"]
    lines = ["## Low-confidence answers", ""]
    if below is None:
        lines += [
            f"Not offered: on validation the top score separates right from wrong top labels "
            f"with AUROC {low['validation']['auroc']:.3f}, below the bar.",
            "",
        ]
        return lines
    lines += [
        f"An answer is flagged `low_confidence` when its top score is below **{below}**, "
        "chosen on validation's out-of-fold served scores.",
        "",
    ]
    rows = []
    for split in ("validation", "test"):
        figures = low[split]
        rows.append(
            [
                split,
                f"{figures['papers']:,}",
                f"{figures['auroc']:.3f}",
                f"{figures['flagged_share']:.1%}",
                share_or_dash(figures["precision_flagged"], ".3f"),
                share_or_dash(figures["precision_rest"], ".3f"),
            ]
        )
    header = ["split", "papers", "AUROC", "flagged", "P@1 flagged", "P@1 rest"]
    return [*lines, *table(header, rows), ""]


def breakdown_section(breakdown: dict, unparsable_dates: int = 0) -> list[str]:
    header = ["papers", "count", "micro-F1", "macro-F1", "P@1"]
    rows = [scores_row("outside cs/stat (primary archive)", breakdown["outside_cs_stat"])]
    if "cs_papers_cs_labels" in breakdown:
        rows.append(scores_row("cs papers, cs labels only", breakdown["cs_papers_cs_labels"]))
    for name, scores in breakdown.get("by_period", {}).items():
        rows.append(scores_row(f"dated {name}", scores))
    lines = [
        "## Served system by field and by time (test split)",
        "",
        *table(header, rows),
        "",
        "A subset's macro-F1 averages the labels its papers carry (the overall one, every "
        "kept label).",
        "",
    ]
    if "undated_papers" in breakdown:
        lines += [
            f"Undated test papers (no `date` column or an unparsable one): "
            f"{breakdown['undated_papers']:,}. Periods without test papers are left out.",
            "",
        ]
    elif unparsable_dates:
        lines += [
            "No scores by period: no test paper has a date that parses "
            f"({unparsable_dates:,} of the input's dates are empty or do not parse; an ISO "
            "date such as 2019-05-01, or a year such as 2019, is expected).",
            "",
        ]
    if "by_file" in breakdown:
        lines += [
            "### By input file",
            "",
            "Each file's test papers, on all labels and on the labels a model trained on that "
            "file alone would have (≥ min-label-count of its training papers). A paper's split "
            "depends only on its text and the seed, so such a model, trained with this seed, "
            "holds out these same papers: the second figure compares with its test micro-F1.",
            "",
        ]
        rows = []
        for name, scores in breakdown["by_file"].items():
            own = scores.get("own_labels")
            rows.append(
                [
                    *scores_row(name, scores),
                    f"{own['micro_f1']:.4f} ({own['labels']} labels, {own['papers']:,} papers)"
                    if own
                    else "-",
                ]
            )
        lines += [
            *table(["file", "papers", "micro-F1", "macro-F1", "P@1", "micro-F1, own labels"], rows),
            "",
        ]
    lines += ["### By primary archive", ""]
    lines += table(
        ["archive", "papers", "micro-F1", "macro-F1", "P@1", "OOV tokens"],
        [
            [*scores_row(name, scores)[:5], f"{scores['oov_rate']:.1%}"]
            for name, scores in breakdown["by_archive"].items()
        ],
    )
    lines += ["", "### Most common wrong top labels", ""]
    lines += table(
        ["primary category", "predicted top label", "papers"],
        [[m["primary"], m["predicted"], str(m["papers"])] for m in breakdown["top_label_mistakes"]],
    )
    return [*lines, ""]


def markdown(results: dict) -> str:
    """The human-readable report."""
    models = results["models"]
    names = list(models)
    served = models["served"]
    lines = ["# Training report", "", *data_section(results["data"])]
    lines += ["## Test-split metrics", ""]
    lines += table(
        ["metric", *names],
        [
            [title, *(f"{models[n]['test'][key]:.4f}" for n in names)]
            for key, title in SUMMARY_METRICS
        ],
    )
    lines += [
        "",
        "P@k is the share of the top k labels that are the paper's (so P@3 is at most the mean "
        "number of labels a paper has, divided by 3); P@1 is the share of papers whose top "
        "label is one of theirs.",
        "",
        f"The served system is **{served['combiner']}**, chosen on validation.",
        "",
        *year_prior_words(served.get("without_years")),
        "## Combiners (chosen on validation)",
        "",
        "Validation figures are cross-fitted: on each of five validation folds the combiner and a "
        "global threshold are fitted on the other four. Test figures use the combiner refitted on "
        "all validation papers with its validation threshold, for reference only.",
        "",
    ]
    keys = (
        "val_micro_f1",
        "val_macro_f1",
        "val_p_at_1",
        "test_micro_f1",
        "test_macro_f1",
        "test_p_at_1",
    )
    lines += table(
        [
            "combiner",
            "val micro-F1",
            "val macro-F1",
            "val P@1",
            "test micro-F1",
            "test macro-F1",
            "test P@1",
        ],
        [
            [
                ("**" + row["name"] + "**") if row["chosen"] else row["name"],
                *(f"{row[key]:.4f}" for key in keys),
            ]
            for row in served["combiners"]
        ],
    )
    storage = results["baseline_storage"]
    lines += [
        "",
        f"Baseline as stored: {storage['weights_kept']:,} of {storage['weights_dense']:,} "
        f"weights kept ({storage['kept_fraction']:.1%}; {storage['dense_rows']:,} features as "
        "dense int16 rows, the others as sparse float16 ones); against scikit-learn's "
        f"`predict_proba` on {storage['papers']:,} test papers: max |Δprob| "
        f"{storage['max_abs_diff']:.4f}, mean {storage['mean_abs_diff']:.5f}, same top label "
        f"for {storage['top_label_agreement']:.2%}.",
        "",
        *breakdown_section(
            served["breakdown"], results["data"]["counts"].get("rows_unparsable_date", 0)
        ),
        *low_confidence_section(served["low_confidence"]),
    ]
    lines += ["## Decision rules (thresholds chosen on validation)", ""]
    lines += [
        "Each rule's validation scores are cross-fitted: thresholds tuned on four folds of the "
        "validation split, scored on the fifth (for the served system, on its out-of-fold "
        "combined scores). The chosen rule has the best macro-F1 among rules whose micro-F1 is "
        "within 0.001 of the single global threshold's; its thresholds are then refitted on the "
        "whole validation split. Test scores of every rule are for reference only.",
        "",
    ]
    scores = ("val_micro_f1", "val_macro_f1", "test_micro_f1", "test_macro_f1")
    for name in names:
        lines += [f"### {name} (chosen: {models[name]['rule']})", ""]
        lines += table(
            ["rule", "val micro-F1", "val macro-F1", "test micro-F1", "test macro-F1"],
            [[rule["name"], *(f"{rule[k]:.4f}" for k in scores)] for rule in models[name]["rules"]],
        )
        lines.append("")
    lines += ["## Per-label test metrics", ""]
    per_label = models[names[0]]["test"]["per_label"]
    lines += table(
        ["label", "support", *(f"{n} P / R / F1" for n in names)],
        [
            [
                label,
                str(per_label[label]["support"]),
                *(
                    "{precision:.2f} / {recall:.2f} / {f1:.2f}".format(
                        **models[n]["test"]["per_label"][label]
                    )
                    for n in names
                ),
            ]
            for label in sorted(per_label, key=lambda lb: -per_label[lb]["support"])
        ],
    )
    lines += [
        "",
        "![training curves](training_curves.png)",
        "",
        "![per-label F1](per_label_f1.png)",
        "",
        "## Run",
        "",
        f"Seconds: {results['run']['seconds']} (after reading the data), of which "
        + ", ".join(
            f"{stage} {seconds}" for stage, seconds in results["run"]["stage_seconds"].items()
        ),
        "",
        "```json",
        json.dumps(results["run"]["settings"], indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


WEAK_P_AT_1 = 0.6
WEAK_ARCHIVE_MIN_PAPERS = 200  # below this, an archive's P@1 is too uncertain to explain


def doubtful_answers(low: dict | None) -> list[str]:
    """The model card's lines on the `low_confidence` flag, from the test figures."""
    if not low:
        return []
    if low["top_score_below"] is None:
        return ["## Doubtful answers", "", "The model does not flag doubtful answers.", ""]
    test = low["test"]
    flagged, rest = test["precision_flagged"], test["precision_rest"]
    if flagged is None or rest is None:  # no test paper, or every one, was flagged
        split = "none" if flagged is None else "all"
        detail = f"{split} of the test papers were flagged."
    else:
        detail = (
            f"{test['flagged_share']:.0%} of test papers, whose top label was right "
            f"{flagged:.0%} of the time, against {rest:.0%} for the others."
        )
    return [
        "## Doubtful answers",
        "",
        f"An answer whose top score is below {low['top_score_below']} is flagged "
        f"`low_confidence`: {detail}",
        "",
    ]


def weak_archive_reasons(archives: dict[str, dict], weak: list[str]) -> list[str]:
    """For each weak archive with enough test papers to judge, where its wrong top labels went."""
    lines = []
    for name in weak:
        scores = archives[name]
        wrong = scores["wrong_top"]
        if scores["papers"] < WEAK_ARCHIVE_MIN_PAPERS or not wrong["papers"]:
            continue
        commonest = ", ".join(f"{m['label']} ({m['papers']})" for m in wrong["commonest"])
        elsewhere = wrong["in_other_archives"] / wrong["papers"]
        lines.append(
            f"- **{name}** ({scores['papers']:,} test papers, P@1 {scores['p_at_1']:.3f}): "
            f"{wrong['papers']:,} wrong top labels, {elsewhere:.0%} of them in another archive; "
            f"the commonest {commonest}."
        )
    if not lines:
        return []
    lead = (
        f"Where the wrong top labels went, for those with {WEAK_ARCHIVE_MIN_PAPERS}+ test papers:"
    )
    return [lead, "", *lines, ""]


def threshold_words(served: dict) -> str:
    """How the served labels are decided, in the words the model card uses."""
    if served["rule"] == "global":
        return f"one threshold for every label ({served['thresholds'][0]:g}), chosen on validation."
    return f"per-label thresholds chosen on validation (rule: {served['rule']})."


def model_card(results: dict) -> str:
    """A short model card, generated from the run's own figures: data, fields, weak spots, use."""
    served = results["models"]["served"]
    test, breakdown = served["test"], served["breakdown"]
    data = results["data"]
    files = ", ".join(
        f"`{Path(f['path']).name}` ({f['counts']['rows_read']:,} rows"
        + (f", {f['counts']['papers_kept']:,} papers kept" if "papers_kept" in f["counts"] else "")
        + ")"
        for f in data["files"]
    )
    archives = breakdown["by_archive"]
    weak = [name for name, scores in archives.items() if scores["p_at_1"] < WEAK_P_AT_1]
    lines = [
        "# Model card: arxiv-classifier",
        "",
        "Generated by `train/run.py` from this run's figures (test split, served system).",
        "",
        "## Data",
        "",
        f"Trained on {files}: {data['counts']['train']:,} training, {data['counts']['val']:,} "
        f"validation and {data['counts']['test']:,} test papers after deduplication, "
        f"{data['counts']['labels_kept']} arXiv categories with at least "
        f"{results['run']['settings']['min_label_count']} training papers. arXiv's alias pairs "
        "are folded into one code each (see the training report).",
        "",
        "## What it does",
        "",
        f"Suggests arXiv categories for a title and abstract: the **{served['combiner']}** of a "
        f"TF-IDF + logistic-regression model and a BiLSTM, with {threshold_words(served)} "
        "The top label is always returned.",
        "",
        "## Quality (held-out test papers)",
        "",
        *table(
            ["papers", "count", "micro-F1", "macro-F1", "P@1"],
            [
                scores_row("all", {**test, "papers": test["papers"]}),
                scores_row("outside cs/stat", breakdown["outside_cs_stat"]),
                *(scores_row(f"dated {k}", v) for k, v in breakdown.get("by_period", {}).items()),
            ],
        ),
        "",
        "By primary archive (P@1 counts the top label right when it is any of the paper's; "
        "macro-F1 averages the labels each row's papers carry):",
        "",
        *table(
            ["archive", "papers", "micro-F1", "macro-F1", "P@1"],
            [scores_row(name, scores) for name, scores in archives.items()],
        ),
        "",
        "## Known weak fields",
        "",
        (
            f"Top-label precision below {WEAK_P_AT_1:.0%}: " + ", ".join(weak) + ". "
            if weak
            else f"No archive has a top-label precision below {WEAK_P_AT_1:.0%}. "
        )
        + "Archives with few test papers have uncertain figures; categories rare in training "
        "are predicted seldom (per-label F1 in the training report).",
        "",
        *weak_archive_reasons(archives, weak),
        *doubtful_answers(served.get("low_confidence")),
        "## Intended use",
        "",
        "Suggesting categories to a person who decides: a submission form, a library "
        "cataloguing a back list, a reader exploring a field. Not for deciding alone where a "
        "paper is listed, and not for text that is not a scientific abstract in English."
        + drift_words(breakdown.get("by_period", {})),
        "",
        *year_prior_words(served.get("without_years")),
    ]
    return "\n".join(lines)


def year_prior_words(without: dict | None) -> list[str]:
    """What the papers' years add: the served figures above use each dated test paper's year,
    as the function does when a caller sends `date`; these are the same papers without."""
    if without is None:
        return []
    outside = without["outside_cs_stat"]
    return [
        "The served scores use each paper's year where it is known, up to the last year the "
        "year prior covers (`year_prior.json`; the API's optional `date`). Without any year, "
        "as for a caller that sends none, the same test papers score micro-F1 "
        f"{without['micro_f1']:.4f}, macro-F1 {without['macro_f1']:.4f} and P@1 "
        f"{without['p_at_1']:.4f}, and outside cs/stat P@1 "
        + ("n/a" if outside["p_at_1"] is None else f"{outside['p_at_1']:.4f}")
        + ". Papers after those years, or undated, score the same either way.",
        "",
    ]


def drift_words(periods: dict[str, dict]) -> str:
    """A sentence comparing the oldest and the newest dated test papers, when the run has
    both and the older ones score lower."""
    if len(periods) < 2:
        return ""
    (old_name, old), *_, (new_name, new) = periods.items()
    if old["p_at_1"] >= new["p_at_1"]:
        return ""
    return (
        f" Papers dated {old_name} score lower than those dated {new_name} (P@1 "
        f"{old['p_at_1']:.2f} against {new['p_at_1']:.2f}); the periods differ in their mix of "
        "fields and in arXiv's categories as well as in time."
    )


def render_reports(results: dict) -> dict[str, bytes]:
    """metrics.json, report.md, model_card.md and the two plots, by file name. Rendered before
    the run replaces its artifacts, so that a report that cannot be drawn stops the run while
    the previous artifacts and reports still agree (lambda_handler.files.write_files_atomic
    then writes them together)."""
    test_metrics = {name: model["test"] for name, model in results["models"].items()}
    output = results["run"]["settings"]["lstm"]["output"]
    return {
        "training_curves.png": plot_training(results["lstm_history"], output),
        "per_label_f1.png": plot_per_label(test_metrics),
        METRICS_FILE: json_bytes(results),
        "report.md": markdown(results).encode("utf-8"),
        "model_card.md": model_card(results).encode("utf-8"),
    }
