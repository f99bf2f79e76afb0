"""Turn bench/measure.py's figures into the targets table, bench/results.md and a PNG chart."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.machine import describe
from lambda_handler.files import write_bytes_atomic

Results = dict[str, object]


@dataclass(frozen=True)
class Target:
    """A figure the benchmark must reach: `figure(results) <= limit` (or >= when `at_least`)."""

    name: str
    limit: float
    unit: str
    figure: Callable[[Results], float | None]
    at_least: bool = False

    def judge(self, results: Results) -> tuple[float | None, str]:
        """(figure, "pass" / "miss" / "n/a")."""
        value = self.figure(results)
        if value is None:
            return None, "n/a"
        met = value >= self.limit if self.at_least else value <= self.limit
        return value, "pass" if met else "**miss**"


def keras_speedup(results: Results) -> float | None:
    """Keras `model(x)` p50 over the ONNX handler's p50, for one abstract."""
    if "keras" not in results:
        return None
    return results["keras"]["single_ms"]["call"]["p50"] / results["serving"]["single_ms"]["p50"]


def serving(*keys: str) -> Callable[[Results], float]:
    """A picker of `results["serving"][keys...]`."""
    return lambda results: dig(results["serving"], *keys)


TARGETS = (
    Target("warm p50, one abstract, 1 thread", 1.0, "ms", serving("single_ms", "p50")),
    Target("warm p99, one abstract, 1 thread", 3.0, "ms", serving("single_ms", "p99")),
    Target("cold start (median of fresh processes)", 300, "ms", serving("cold", "median_ms")),
    Target(
        "batch of 32 through the handler",
        2000,
        "abstracts/s",
        serving("batches", "32", "handler"),
        at_least=True,
    ),
    Target("unzipped package", 130, "MB", serving("package_mb")),
    Target("speed-up over Keras `model(x)`, one abstract", 50, "x", keras_speedup, at_least=True),
)


def dig(data: object, *keys: str) -> float | None:
    """`data[k1][k2]...`, or None when `data` is None (e.g. Keras was skipped)."""
    for key in keys:
        if data is None:
            return None
        data = data[key]
    return data


def number(value: float | None, digits: int = 2) -> str:
    """A figure for a table: thousands separated, `digits` decimals below 100."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def targets_table(results: Results) -> str:
    rows = []
    for target in TARGETS:
        value, verdict = target.judge(results)
        sign = "≥" if target.at_least else "≤"
        goal = f"{sign} {target.limit:,g} {target.unit}"
        rows.append([target.name, goal, f"{number(value)} {target.unit}", verdict])
    return table(["target", "goal", "measured", ""], rows)


KERAS_WAYS = {
    "call": "Keras `model(x)`",
    "predict": "Keras `model.predict(x)`",
    "function": "Keras `tf.function`",
}


def side_by_side(results: Results) -> str:
    """ONNX function and raw call against Keras three ways, with the speed-up ratios."""
    onnx, keras = results["serving"], results.get("keras")
    # label, decimals, lower is better, ONNX handler, ONNX raw call, {Keras way: figure}
    rows: list[tuple[str, int, bool, float, float | None, dict[str, float | None]]] = [
        ("cold start, median (ms)", 0, True, onnx["cold"]["median_ms"], None,
         {"call": dig(keras, "cold", "median_ms")}),
        ("cold start, max (ms)", 0, True, onnx["cold"]["max_ms"], None,
         {"call": dig(keras, "cold", "max_ms")}),
    ]  # fmt: skip
    for stat in ("p50", "p95", "p99"):
        rows.append(
            (f"one abstract, {stat} (ms)", 3, True, onnx["single_ms"][stat],
             onnx["single_raw_ms"][stat],
             {way: dig(keras, "single_ms", way, stat) for way in KERAS_WAYS})
        )  # fmt: skip
    for size, ways in onnx["batches"].items():
        rows.append(
            (f"batch of {size} (abstracts/s)", 0, False, ways["handler"], ways["raw"],
             {way: dig(keras, "batches", size, way) for way in KERAS_WAYS})
        )  # fmt: skip
    rows.append(("peak RSS (MB)", 0, True, onnx["peak_rss_mb"], None,
                 {"call": dig(keras, "peak_rss_mb")}))  # fmt: skip
    rows.append(("unzipped package (MB)", 1, True, onnx["package_mb"], None, {}))

    def speedup(onnx_value: float, other: float | None, lower_is_better: bool) -> str:
        if other is None:
            return ""
        ratio = other / onnx_value if lower_is_better else onnx_value / other
        return f"{ratio:.1f}x" if ratio < 10 else f"{ratio:,.0f}x"

    cells = []
    for label, digits, lower, handler, raw, others in rows:
        figures = [number(handler, digits), number(raw, digits) if raw is not None else ""]
        for way in KERAS_WAYS:
            value = others.get(way)
            figures.append(number(value, digits) if value is not None else "")
        figures += [speedup(handler, others.get(way), lower) for way in ("call", "function")]
        cells.append([label, *figures])
    if keras is None:
        cells = [[*row[:3], "skipped", "skipped", "skipped", "", ""] for row in cells]
    header = [
        "", "ONNX function (handler)", "ONNX raw call", *KERAS_WAYS.values(),
        "ONNX speed-up vs `model(x)`", "vs `tf.function`",
    ]  # fmt: skip
    return table(header, cells)


def cold_phases(results: Results) -> str:
    names = {
        "interpreter_ms": "process start → first line of the driver (interpreter start-up)",
        "harness_ms": "driver's own standard-library imports",
        "import_and_load_ms": "import `lambda_handler.app` (imports, model fetch, verify, load)",
        "first_request_ms": "first request through the handler",
        "total_ms": "**cold start** (process start → first answer)",
    }
    columns = [("ONNX function", results["serving"]["cold"])]
    if "keras" in results:
        columns.append(("Keras", results["keras"]["cold"]))
    rows = [
        [label, *(number(cold["phases_median_ms"].get(key), 1) for _, cold in columns)]
        for key, label in names.items()
    ]
    return table(["phase (median)", *(name for name, _ in columns)], rows)


def options_tables(options: Results) -> str:
    """Raw batch throughput per layout and per session option, and the op profile."""
    size = options["batch"]
    padding = options["padding"]
    share = 1 - padding["real_tokens"] / padding["padded_tokens"]
    layouts = table(
        [f"batch of {size}, layout (shipped session)", "abstracts/s"],
        [[name, number(rate)] for name, rate in options["layouts"].items()],
    )
    sessions = table(
        [f"batch of {size} padded to its longest, session option", "abstracts/s"],
        [[name, number(rate)] for name, rate in options["sessions"].items()],
    )
    total, shown = sum(options["op_ms"].values()), list(options["op_ms"].items())[:8]
    rest = total - sum(ms for _, ms in shown)
    rows = [[op, number(ms, 2), f"{ms / total:.1%}"] for op, ms in shown]
    rows.append(
        [
            f"{len(options['op_ms']) - len(shown)} other operator types",
            number(rest, 2),
            f"{rest / total:.1%}",
        ]
    )
    ops = table(["operator", "ms per batch", "share"], rows)
    return (
        f"Batches of {size} real abstracts as a client sends them, padded to their longest "
        f"member, are {share:.0%} padding tokens.\n\n{layouts}\n\n{sessions}\n\n"
        f"onnxruntime profiler (`SessionOptions.enable_profiling`), batches of {size} padded to "
        f"their longest:\n\n{ops}"
    )


def setup(results: Results, context: dict[str, str]) -> str:
    serving, before, after = results["serving"], results["machine_before"], results["machine_after"]
    tokens, versions = serving["tokens"], serving["versions"]
    lines = [
        f"- model: {context['model']}",
        f"- papers: {context['papers']}: {tokens['n']:,} abstracts, tokens per paper p50 "
        f"{tokens['p50']:.0f}, p95 {tokens['p95']:.0f}, max {tokens['max']:.0f}",
        f"- machine: {describe(before, after)}",
        f"- function: {context['function']}; Python {versions['python']} (`-I -S`), onnxruntime "
        f"{versions['onnxruntime']}, numpy {versions['numpy']}, "
        f"ORT_NUM_THREADS={serving['threads']}",
    ]
    if "keras" in results:
        keras = results["keras"]
        threads = keras["threads"]
        lines.append(
            f"- Keras: {context['keras']}; TensorFlow {keras['versions']['tensorflow']}, Keras "
            f"{keras['versions']['keras']}, intra/inter-op threads {threads['intra_op']}/"
            f"{threads['inter_op']} (0 = TensorFlow's default: all cores)"
        )
    else:
        lines.append(f"- Keras: skipped ({context['keras']})")
    return "\n".join(lines)


def markdown(results: Results, context: dict[str, str]) -> str:
    """The whole of bench/results.md."""
    serving = results["serving"]
    return f"""# Benchmark results

Written by `python bench/run.py` ({context["date"]}); rerun it rather than editing this file.
{context.get("note", "")}

## Setup

{setup(results, context)}

## Targets

{targets_table(results)}

## Side by side

{side_by_side(results)}

The ONNX figures are measured on the `sam build` output run by `python -I -S` with only the
function directory and the standard library on the module path (bench/probe.py), so onnxruntime
and numpy are the versions Lambda runs. "Handler" is `lambda_handler.app.handler` on API Gateway
HTTP API (v2) events, with JSON in and out and its INFO log line per request (written to
/dev/null); "raw call" is `Classifier.predict` on already tokenized papers. One-abstract figures
are over {serving["single_ms"]["n"]:,} requests cycling through distinct abstracts, after
{context["warmup"]} warm-up requests; batch figures are papers per second over at least
{context["min_seconds"]} s of repeated batches of consecutive abstracts from the file (the
handler and the raw call sort a batch by length into sub-batches, see below).

Keras runs the same token ids in this virtualenv with the thread count in Setup (by default
one, like the function), batches pre-padded to their longest, three ways: `model(x)` (eager),
`model.predict(x)`, and the export's `tf.function` with a dynamic `[batch, time]` signature
(export/convert.py; traced once, the fastest way to serve the model with TensorFlow);
{context["keras_requests"]} one-abstract runs each. Its cold start is a fresh
process importing TensorFlow, loading the `.keras` file and tokenizer.json and running
`model(x)` once. Peak RSS is `ru_maxrss` of the serving process after every figure above
(after loading the ONNX model: {serving["rss_after_load_mb"]:.0f} MB); for Keras, after
`model(x)` and `model.predict(x)`, before the `tf.function` runs. The package size is the
unzipped build{context["package_note"]}.

## Cold start

{cold_phases(results)}

Each of {serving["cold"]["n"]} fresh processes is started by the benchmark, which passes its
start time on the system-wide monotonic clock; the driver reads the same clock as its first
statement, after importing the handler and after the first answer. So the cold start covers
exec, interpreter start-up (`-I -S`, no site-packages), the imports of numpy and onnxruntime,
reading and verifying the model files against manifest.json, creating the onnxruntime session
and its two test predictions, and one v2 request. It does not cover Lambda's own sandbox and
runtime-client start-up, nor fetching the package or model from storage (the files are in the
page cache after the first run). For reference, `python -I -S -c pass` takes
{serving["interpreter_only_ms"]:.0f} ms here (start-up and exit).

## Where batch time goes

{options_tables(results["options"])}

{context.get("findings", "")}
"""


def chart_png(results: Results) -> bytes:
    """Four panels: one-abstract latency, batch throughput, cold start, peak RSS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    serving, keras = results["serving"], results.get("keras")
    figure, axes = plt.subplots(2, 2, figsize=(11, 8))
    stats = ["p50", "p95", "p99"]
    series = {"ONNX handler": [serving["single_ms"][s] for s in stats]}
    for way, name in KERAS_WAYS.items() if keras else ():
        series[name.replace("`", "")] = [keras["single_ms"][way][s] for s in stats]
    bars(axes[0][0], stats, series, "one abstract: latency (ms, log)", log=True)
    sizes = list(serving["batches"])
    series = {
        "ONNX handler": [serving["batches"][s]["handler"] for s in sizes],
        "ONNX raw call": [serving["batches"][s]["raw"] for s in sizes],
    }
    for way, name in KERAS_WAYS.items() if keras else ():
        series[name.replace("`", "")] = [keras["batches"][s][way] for s in sizes]
    bars(axes[0][1], sizes, series, "batch throughput (abstracts/s, log) by batch size", log=True)
    cold = {"ONNX handler": serving["cold"]}
    if keras:
        cold["Keras model(x)"] = keras["cold"]
    bars(
        axes[1][0],
        ["median", "max"],
        {name: [c["median_ms"], c["max_ms"]] for name, c in cold.items()},
        "cold start (ms)",
    )
    rss = {"ONNX handler": [serving["peak_rss_mb"]]}
    if keras:
        rss["Keras model(x)"] = [keras["peak_rss_mb"]]
    bars(axes[1][1], ["peak RSS"], rss, "peak RSS of the serving process (MB)")
    figure.suptitle("arxiv-classifier: ONNX Lambda function vs the same model in Keras")
    labels: dict[str, object] = {}
    for axis in axes.flat:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            labels.setdefault(label, handle)
    figure.legend(labels.values(), labels.keys(), loc="lower center", ncol=4, fontsize=8)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


COLORS = {
    "ONNX handler": "tab:blue", "ONNX raw call": "tab:cyan", "Keras model(x)": "tab:orange",
    "Keras model.predict(x)": "tab:red", "Keras tf.function": "tab:purple",
}  # fmt: skip


def bars(axis, groups: list[str], series: dict[str, list[float]], title: str, log=False) -> None:
    """Grouped bars, one colour per series across panels, with their values on top."""
    width = 0.8 / len(series)
    for index, (name, values) in enumerate(series.items()):
        positions = [g + (index - (len(series) - 1) / 2) * width for g in range(len(groups))]
        drawn = axis.bar(positions, values, width, label=name, color=COLORS.get(name))
        axis.bar_label(drawn, labels=[number(v, 1) for v in values], fontsize=7)
    axis.set_xticks(range(len(groups)), groups)
    axis.set_title(title, fontsize=10)
    axis.margins(y=0.15)
    if log:
        axis.set_yscale("log")


def write(results: Results, context: dict[str, str], out_dir: Path) -> tuple[Path, Path]:
    """Write results.md and results.png atomically; return their paths."""
    text_path, chart_path = out_dir / "results.md", out_dir / "results.png"
    write_bytes_atomic(text_path, markdown(results, context).encode("utf-8"))
    write_bytes_atomic(chart_path, chart_png(results))
    return text_path, chart_path
