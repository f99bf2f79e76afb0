"""Write the run's results: `metrics.json`, a readable `report.md` and PNG plots."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from lambda_handler.files import write_bytes_atomic, write_json_atomic

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


def save_figure(figure: plt.Figure, path: Path) -> None:
    """Render a figure to PNG and write it atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    write_bytes_atomic(path, buffer.getvalue())


def plot_training(history: dict[str, list[float]], path: Path) -> None:
    """Training loss and validation micro-F1 per epoch."""
    figure, (loss_axis, f1_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = np.arange(1, len(history["loss"]) + 1)
    loss_axis.plot(epochs, history["loss"], marker="o")
    loss_axis.set(title="LSTM training loss (binary cross-entropy)", xlabel="epoch", ylabel="loss")
    f1_axis.plot(epochs, history["val_micro_f1"], marker="o", color="tab:green")
    f1_axis.set(title="LSTM validation micro-F1 (best global threshold)", xlabel="epoch")
    for axis in (loss_axis, f1_axis):
        axis.grid(alpha=0.3)
        axis.set_xticks(epochs)
    save_figure(figure, path)


def plot_per_label(models: dict[str, dict], path: Path) -> None:
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
    save_figure(figure, path)


def markdown(results: dict) -> str:
    """The human-readable report."""
    models = results["models"]
    names = list(models)
    lines = [
        "# Training report",
        "",
        f"Data: `{results['data']['path']}` (sha256 `{results['data']['sha256'][:16]}…`)",
        "",
    ]
    lines += ["## Data", "", "| step | count |", "|---|---|"]
    lines += [
        f"| {key.replace('_', ' ')} | {value:,} |"
        for key, value in results["data"]["counts"].items()
    ]
    lines += [
        "",
        "## Test-split metrics",
        "",
        "| metric | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for key, title in SUMMARY_METRICS:
        lines.append(
            f"| {title} | " + " | ".join(f"{models[n]['test'][key]:.4f}" for n in names) + " |"
        )
    lines += ["", "## Decision rules (thresholds chosen on validation)", ""]
    lines += [
        "Each rule's validation scores are cross-fitted: thresholds tuned on four folds of the "
        "validation split, scored on the fifth. The chosen rule has the best macro-F1 among rules "
        "whose micro-F1 is within 0.001 of the single global threshold's; its thresholds are then "
        "refitted on the whole validation split. Test scores of every rule are shown for reference "
        "only; they played no part in the choice.",
        "",
    ]
    for name in names:
        rules = models[name]["rules"]
        lines += [
            f"### {name} (chosen: {models[name]['rule']})",
            "",
            "| rule | val micro-F1 | val macro-F1 | test micro-F1 | test macro-F1 |",
            "|---|---|---|---|---|",
        ]
        scores = ("val_micro_f1", "val_macro_f1", "test_micro_f1", "test_macro_f1")
        lines += [
            f"| {rule['name']} | " + " | ".join(f"{rule[key]:.4f}" for key in scores) + " |"
            for rule in rules
        ]
        lines.append("")
    lines += [
        "## Per-label test metrics",
        "",
        "| label | support | " + " | ".join(f"{n} P / R / F1" for n in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    per_label = models[names[0]]["test"]["per_label"]
    for label in sorted(per_label, key=lambda lb: -per_label[lb]["support"]):
        cells = [
            "{precision:.2f} / {recall:.2f} / {f1:.2f}".format(
                **models[n]["test"]["per_label"][label]
            )
            for n in names
        ]
        lines.append(f"| {label} | {per_label[label]['support']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "![training curves](training_curves.png)",
        "",
        "![per-label F1](per_label_f1.png)",
        "",
    ]
    lines += [
        "## Run",
        "",
        f"Seconds: {results['run']['seconds']}",
        "",
        "```json",
        str(results["run"]["settings"]),
        "```",
        "",
    ]
    return "\n".join(lines)


def write_reports(results: dict, history: dict[str, list[float]], directory: Path) -> None:
    """Write metrics.json, report.md and the two plots into `directory`."""
    test_metrics = {name: model["test"] for name, model in results["models"].items()}
    plot_training(history, directory / "training_curves.png")
    plot_per_label(test_metrics, directory / "per_label_f1.png")
    write_json_atomic(directory / "metrics.json", results)
    write_bytes_atomic(directory / "report.md", markdown(results).encode("utf-8"))
