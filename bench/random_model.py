"""Export a random-weight BiLSTM of any size as a model directory, with its Keras model beside it.

    python bench/random_model.py OUT [--units 96] [--embedding-dim 128] [--vocab-size 20000]

Writes OUT/model/ (through the real export: conversion, graph checks, parity gate, manifest) and
OUT/lstm.keras. For developing the benchmark before a trained model exists, and for measuring
the speed of other architectures; the weights are random, so its labels mean nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.papers import Paper, default_papers_path, read_papers

N_LABELS = 57
VOCAB_SIZE = 20_000
PARITY_PAPERS = 256


def export_random_model(
    out: Path,
    papers: list[Paper],
    *,
    units: int,
    embedding_dim: int,
    vocab_size: int = VOCAB_SIZE,
    n_labels: int = N_LABELS,
    seed: int = 0,
) -> Path:
    """Write OUT/lstm.keras and OUT/model/ for a seeded random BiLSTM; return the model dir."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from export import artifacts
    from export.pipeline import export_model
    from lambda_handler.text import Tokenizer, english_stopwords, words
    from train import lstm
    from train.categories import CATEGORY_NAMES

    stopwords = english_stopwords()
    tokenizer = Tokenizer.fit(
        (words(paper.title, paper.abstract, stopwords) for paper in papers), vocab_size, stopwords
    )
    keras.utils.set_random_seed(seed)
    config = lstm.LSTMConfig(units=units, embedding_dim=embedding_dim, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    keras_path = out / "lstm.keras"
    # The embedding keeps `vocab_size` rows even when the papers have fewer distinct words.
    lstm.build_model(max(vocab_size, tokenizer.size), n_labels, config).save(keras_path)
    codes = list(CATEGORY_NAMES)[:n_labels]
    run = artifacts.Artifacts(
        model_path=keras_path,
        tokenizer=tokenizer,
        labels=tuple(
            artifacts.Label(code, CATEGORY_NAMES[code], threshold=0.5, support=0) for code in codes
        ),
        papers=tuple(artifacts.Paper(p.title, p.abstract) for p in papers[:PARITY_PAPERS]),
        training_data={"sha256": "0" * 64, "rows": {"note": "random weights, not trained"}},
        metrics={"baseline": {}, "lstm": {"note": "random weights, not trained"}},
    )
    return export_model(run, out / "model").out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for model/ and lstm.keras")
    parser.add_argument("--units", type=int, default=96, help="LSTM units per direction (96)")
    parser.add_argument("--embedding-dim", type=int, default=128, help="embedding width (128)")
    parser.add_argument("--vocab-size", type=int, default=VOCAB_SIZE, help="embedding rows")
    parser.add_argument(
        "--papers", type=Path, help="CSV/JSONL of papers for the vocabulary and parity gate"
    )
    args = parser.parse_args(argv)
    papers = read_papers(args.papers or default_papers_path())
    model_dir = export_random_model(
        args.out,
        papers,
        units=args.units,
        embedding_dim=args.embedding_dim,
        vocab_size=args.vocab_size,
    )
    print(f"wrote {model_dir} and {args.out / 'lstm.keras'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
