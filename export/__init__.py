"""Export the trained Keras LSTM to an ONNX model directory that the Lambda function serves.

`export/run.py` is the command line; the modules below each do one job:
`artifacts` reads what `train/run.py` wrote, `convert` turns the Keras model into ONNX,
`graph` checks that the ONNX graph is servable, `parity` compares ONNX Runtime with Keras,
`manifest` describes and verifies a model directory, `upload` copies one to S3 and `pipeline`
ties the export together (publishing atomically with `lambda_handler.files.staged_directory`).
"""


class ExportError(Exception):
    """An export or upload that cannot go on; the message is one line meant for the user."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when empty), for one-line errors."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
