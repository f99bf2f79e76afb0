"""The "what the profile shows" section of bench/results.md, worded from this run's figures."""

from __future__ import annotations

from lambda_handler.model import SUB_BATCH

SHIPPED_LEVEL = "graph optimization ORT_ENABLE_ALL"


def text(results: dict) -> str:
    """Markdown bullets explaining where the time goes and what each option changes."""
    serving, options = results["serving"], results["options"]
    ops, layouts, sessions = options["op_ms"], options["layouts"], options["sessions"]
    size = options["batch"]
    total = sum(ops.values())
    lstm_share = sum(ms for op, ms in ops.items() if op.endswith("LSTM")) / total
    padding = options["padding"]
    padded_share = 1 - padding["real_tokens"] / padding["padded_tokens"]
    as_sent = layouts["padded to the longest (as sent)"]
    shipped = layouts[f"sorted by length, sub-batches of {SUB_BATCH}"]
    same_thread = [rate for name, rate in sessions.items() if "threads" not in name]
    low, high = min(same_thread), max(same_thread)
    spread = (high - low) / sessions[SHIPPED_LEVEL]
    single, raw, encode = serving["single_ms"], serving["single_raw_ms"], serving["encode_ms"]
    rest = single["p50"] - raw["p50"] - encode["p50"]
    return f"""## What the profile shows

- **Batches:** the LSTM ops take {lstm_share:.0%} of a batch's time; transposes, casts, the
  roll of the token ids, mask arithmetic, pooling and the dense layer share the rest. A
  batch of {size} abstracts padded to its longest member is {padded_share:.0%} padding, and
  the LSTMs run every padding step. `Classifier.predict` (lambda_handler/model.py) therefore
  sorts a batch by length and runs it in groups of at most `SUB_BATCH` = {SUB_BATCH}, each
  pre-padded to its own longest: {shipped:,.0f} abstracts/s against {as_sent:,.0f} padded as
  sent (raw call, table above). Groups this small also suit the LSTM kernel, which is fastest
  per paper at a few rows per run on this CPU. The fp32 BiLSTM is padding-invariant
  (train/lstm.py); the int8 graph quantizes each run's activations with that run's range, so
  its scores move slightly with the grouping (tests/test_train_run.py bounds it on the sample).
- **Session options:** with one thread, every graph optimization level and
  `session.intra_op.allow_spinning=0` land between {low:,.0f} and {high:,.0f} abstracts/s
  (shipped `ORT_ENABLE_ALL`: {sessions[SHIPPED_LEVEL]:,.0f}), a spread of {spread:.0%}:
  onnxruntime's optimizer neither speeds up the LSTM kernel nor removes the small ops.
  Two intra-op threads give {sessions["2 threads (intra_op)"]:,.0f} and two threads with
  `ORT_PARALLEL` {sessions["2 threads, ORT_PARALLEL"]:,.0f}: a second thread only helps when a
  second core is idle, and the function at 1,769 MB has one vCPU, so
  `ORT_NUM_THREADS` stays 1. A function given two vCPUs (`MemorySize` 3,538 MB or more) with
  `ORT_NUM_THREADS=2` runs a batch of {size}, sorted into sub-batches of {SUB_BATCH}, at
  {options["two_threads_sub_batched"]:,.0f} abstracts/s (raw call; on this virtual machine
  the second thread's gain varies from run to run; as written on 2026-11-25, between about
  1.1x and 1.7x).
- **One abstract:** the handler's p50 of {single["p50"]:.3f} ms is the model run
  ({raw["p50"]:.3f} ms, unpadded) plus tokenization in Python
  ({encode["p50"]:.3f} ms: the token regex and stopwords; NFKD normalisation only for
  non-ASCII text) plus {rest:.3f} ms of JSON parsing, validation, the decision rule, the
  response and the log line.
- **Graph:** the export converts `train.lstm.inference`, which rolls the int token ids (not
  the embeddings) into the forward LSTM's post-padded copy and looks the embeddings up
  directly. As written on 2026-11-25, from the CS-only fp32 model: a hand-built graph of the
  same weights, one bidirectional `LSTM` with `sequence_lens`, was 5-12% faster per batch
  (docs/experiments/graph_alternatives.md), too little to replace tf2onnx.
"""
