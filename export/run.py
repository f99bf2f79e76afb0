"""Export the trained LSTM to a model directory, and optionally upload a model directory to S3.

    python export/run.py                                  # artifacts/ -> lambda_handler/model/
    python export/run.py --upload s3://bucket/prefix      # check the prefix, export, upload
    python export/run.py --skip-export --upload s3://bucket/prefix --out lambda_handler/model

Exits 1 with a one-line message when the export or upload cannot go on. A failed export
leaves the output directory holding the previous model; a failed upload leaves it holding the
new one, and the S3 prefix without a model (or with its previous one, untouched).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export import ExportError
from export.artifacts import load_artifacts
from export.graph import MIN_OPSET
from export.parity import BATCH_SIZE
from export.reference import REFERENCE_FILE
from export.upload import check_destination, parse_s3_uri, s3_client, upload_model_dir
from lambda_handler.files import OutputFolderError, check_writable_folder
from lambda_handler.signals import interrupt_on_signals

logger = logging.getLogger("export")
REPO = Path(__file__).resolve().parents[1]


def positive_int(text: str) -> int:
    """argparse type for counts that must be at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; `--skip-export` only makes sense with `--upload`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # The same defaults as train/run.py's, wherever the command is run from.
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=REPO / "artifacts",
        help="train/run.py output (./artifacts)",
    )
    parser.add_argument(
        "--reports",
        type=Path,
        default=REPO / "reports",
        help=f"holds metrics.json; gets {REFERENCE_FILE} (./reports)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "lambda_handler" / "model",
        help="model directory to write (./lambda_handler/model)",
    )
    parser.add_argument("--upload", metavar="S3_URI", help="upload --out to s3://bucket/prefix")
    parser.add_argument(
        "--skip-export", action="store_true", help="only upload the existing --out directory"
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="upload over another model at that prefix (it is unavailable until the upload ends)",
    )
    parser.add_argument("--opset", type=int, default=MIN_OPSET, help=f"ONNX opset (>= {MIN_OPSET})")
    parser.add_argument(
        "--batch-size", type=positive_int, default=BATCH_SIZE, help="parity-gate batch size"
    )
    parser.add_argument(
        "--precision",
        choices=("int8", "fp32"),
        default="int8",
        help="LSTM as served: int8 weights and a float16 embedding table (gated), or all fp32",
    )
    args = parser.parse_args(argv)
    if args.skip_export and not args.upload:
        parser.error("--skip-export needs --upload")
    if args.replace and not args.upload:
        parser.error("--replace needs --upload")
    if args.opset < MIN_OPSET:
        parser.error(f"--opset must be at least {MIN_OPSET}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the export and/or the upload; return the process exit code."""
    args = parse_args(argv)
    interrupt_on_signals()  # Ctrl-C and kill end it cleanly, also as a background job
    logging.basicConfig(level=logging.WARNING, format="export: %(message)s")
    logging.getLogger("export").setLevel(logging.INFO)  # the libraries' INFO lines stay quiet
    try:
        location = parse_s3_uri(args.upload) if args.upload else None
        client = None  # one S3 client for the check before the export and the upload after it
        if not args.skip_export:
            if location is not None:
                client = s3_client()
                check_destination(location, client, replace=args.replace)
            run_export(args)
        if location is not None:
            keys = upload_model_dir(args.out, location, client, replace=args.replace)
            logger.info("uploaded %d files to %s, manifest last", len(keys), location)
    except (ExportError, OutputFolderError) as error:
        print(f"export: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "export: interrupted: nothing is half-written (a model directory is swapped in "
            "whole; an upload sends its manifest last)",
            file=sys.stderr,
        )
        return 130
    return 0


def run_export(args: argparse.Namespace) -> None:
    """Check the artifacts, then export; TensorFlow is imported only now, as it takes seconds."""
    artifacts = load_artifacts(args.artifacts, args.reports)
    # The reference is written after the new model is swapped in: a reports folder that cannot
    # take it must stop the export before, not leave the new model beside the old reference.
    check_writable_folder(args.reports)
    from train.quiet_tensorflow import import_tensorflow

    import_tensorflow()
    from export.pipeline import export_model

    result = export_model(
        artifacts,
        args.out,
        opset=args.opset,
        batch_size=args.batch_size,
        precision=args.precision,
    )
    logger.info("wrote %s (model version %s)", result.out, result.version)
    reference_path = args.reports / REFERENCE_FILE
    result.reference.save(reference_path)
    logger.info(
        "wrote %s (%d test papers and their served scores, for the package test)",
        reference_path,
        len(result.reference.papers),
    )


if __name__ == "__main__":
    sys.exit(main())
