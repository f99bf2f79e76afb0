"""`python -m lambda_handler`: classify a title and abstract, or a CSV/JSONL file, locally."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SERVING_SENTENCES

from lambda_handler import logs
from lambda_handler.__main__ import main

REPO = Path(__file__).resolve().parents[1]
TITLE = "Image segmentation"
ABSTRACT = "We train convolutional neural networks for object detection in images."


@pytest.fixture(autouse=True)
def restore_log_level():
    yield
    logs.configure("INFO")  # the CLI silences the service's logs


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def api_labels(serving_service, title: str, abstract: str, **options) -> list[dict]:
    answer = serving_service.handle({"title": title, "abstract": abstract, **options})
    return json.loads(answer["body"])["results"][0]["labels"]


def test_title_and_abstract_print_a_table(capsys, serving_model_dir, serving_service):
    code, out, err = run(capsys, "--model-dir", str(serving_model_dir), TITLE, ABSTRACT)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["label", "score", "name"]
    expected = api_labels(serving_service, TITLE, ABSTRACT)
    assert len(lines) == 1 + len(expected)
    for line, item in zip(lines[1:], expected, strict=True):
        assert line.split()[:2] == [item["label"], f"{item['score']:.3f}"]
        assert line.endswith(item["name"])


def test_json_output_and_options(capsys, serving_model_dir, serving_service):
    code, out, _ = run(
        capsys, "--model-dir", str(serving_model_dir), "--json", "--top-k", "3", "--threshold", "0",
        TITLE, ABSTRACT,
    )  # fmt: skip
    assert code == 0
    answer = serving_service.handle(
        {"title": TITLE, "abstract": ABSTRACT, "top_k": 3, "threshold": 0}
    )
    assert json.loads(out) == json.loads(answer["body"])["results"][0]  # labels, low_confidence
    assert len(json.loads(out)["labels"]) == 3


def test_table_says_when_an_answer_has_low_confidence(capsys, serving_model_dir):
    # The fixture's first sentence scores below its low-confidence line, the second above.
    flagged, confident = SERVING_SENTENCES[0], SERVING_SENTENCES[1]
    for abstract, expected in ((flagged, True), (confident, False)):
        code, out, _ = run(capsys, "--model-dir", str(serving_model_dir), "", abstract)
        assert code == 0 and ("(low confidence" in out) is expected


def test_model_dir_from_environment(capsys, serving_model_dir, monkeypatch):
    monkeypatch.setenv("MODEL_DIR", str(serving_model_dir))
    monkeypatch.delenv("MODEL_S3_URI", raising=False)
    assert run(capsys, "--json", "", ABSTRACT)[0] == 0


def test_kaggle_csv_file(capsys, tmp_path, serving_model_dir, serving_service):
    path = tmp_path / "arxiv_data.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["titles", "summaries", "terms"])
        writer.writerow(
            ["Robots", "Reinforcement learning agents for robot grasping.", "['cs.RO']"]
        )
        writer.writerow([TITLE, ABSTRACT, "['cs.CV']"])
    code, out, err = run(
        capsys, "--model-dir", str(serving_model_dir), "--json", "--file", str(path)
    )
    assert (code, err) == (0, "")
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in records] == ["2", "3"]  # CSV row numbers, the header being row 1
    assert records[1]["labels"] == api_labels(serving_service, TITLE, ABSTRACT)
    code, out, _ = run(capsys, "--model-dir", str(serving_model_dir), "--file", str(path))
    assert code == 0 and out.startswith("2: Robots\n") and f"3: {TITLE}\n" in out


def test_jsonl_gz_file_with_ids_and_bad_lines(capsys, tmp_path, serving_model_dir):
    lines = [
        json.dumps({"id": "a", "title": TITLE, "abstract": ABSTRACT}),
        "",
        "{broken",
        json.dumps({"id": "c", "abstract": "the of and"}),
        json.dumps({"title": "t", "abstract": "robot agents", "labels": ["cs.RO"]}),
        json.dumps({"abstract": "robot agents", "Abstract ": "image pixels"}),
        '{"abstract": "robot agents", "abstract": "the"}',  # as the API: refused, not last-wins
        '{"abstract": "robot agents", "top_k": NaN}',
    ]
    path = tmp_path / "papers.jsonl.gz"
    path.write_bytes(gzip.compress("\n".join(lines).encode()))
    code, out, err = run(
        capsys, "--model-dir", str(serving_model_dir), "--json", "--file", str(path)
    )
    assert code == 1
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["a", "5"]
    errors = err.splitlines()
    assert len(errors) == 5
    assert errors[0] == (
        "error: line 3: not valid JSON: Expecting property name enclosed in double quotes at "
        "column 2"
    )
    assert errors[1].startswith("error: line 4: abstract has no content words")
    assert errors[2].startswith("error: line 6: the record has two 'abstract' fields")
    assert errors[3] == (
        "error: line 7: not valid JSON: the key 'abstract' appears twice in one object"
    )
    assert errors[4] == "error: line 8: not valid JSON: NaN is not a JSON number"


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--file", "/nonexistent/papers.csv"], 2, "error: cannot read /nonexistent/papers.csv"),
        (["--model-dir", "/nonexistent", "t", "a"], 1, "error: model unavailable: no model"),
    ],
)
def test_one_line_errors_and_their_exit_status(capsys, serving_model_dir, args, status, message):
    if "--model-dir" not in args:
        args = ["--model-dir", str(serving_model_dir), *args]
    code, out, err = run(capsys, *args)
    assert (code, out) == (status, "")
    assert err.startswith(message) and err.count("\n") == 1


def test_csv_without_an_abstract_column(capsys, tmp_path, serving_model_dir):
    path = tmp_path / "x.csv"
    path.write_text("name,text\na,b\n")
    code, _, err = run(capsys, "--model-dir", str(serving_model_dir), "--file", str(path))
    assert code == 2 and "needs an abstract column" in err and "found name, text" in err


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        (
            'title,abstract\n"Paper A: a study,Graph neural networks for molecules\n'
            "Paper B,Reinforcement learning for robot control\n"
            '"Paper C",Transformers for machine translation\n',
            "row 2: not valid CSV",
        ),
        ("title,abstract\n", "holds no papers (only a header)"),
        ("title,abstract\nA,b,c\n", "row 2: 1 more fields than the header's 2"),
        ("title,abstract,id\nA,b\n", "row 2: 1 fewer fields than the header's 3"),
    ],
    ids=["stray-quote", "header-only", "extra-field", "missing-field"],
)
def test_a_broken_csv_stops_before_any_paper_with_one_line(
    capsys, tmp_path, serving_model_dir, contents, message
):
    path = tmp_path / "s.csv"
    path.write_text(contents)
    code, out, err = run(capsys, "--model-dir", str(serving_model_dir), "--file", str(path))
    assert (code, out) == (2, "")  # nothing merged, nothing printed
    assert err == f"error: {path} {message}" + err.split(message, 1)[1]
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--top-k", "0"], "--top-k must be a positive integer, got 0"),
        (["--top-k", "999"], "--top-k must be at most the model's 6 labels, got 999"),
        (["--threshold", "1.5"], "--threshold must be a number from 0 to 1, got 1.5"),
    ],
)
def test_bad_options_are_one_usage_error_before_any_file_is_read(
    capsys, serving_model_dir, args, message
):
    with pytest.raises(SystemExit) as stopped:
        main(["--model-dir", str(serving_model_dir), *args, "--file", "/nonexistent.csv"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count(message) == 1 and "nonexistent" not in err


def test_usage_errors_exit_2(capsys):
    for args in ([], ["only a title"], ["--file", "x.csv", "title", "abstract"]):
        with pytest.raises(SystemExit) as stopped:
            main(args)
        assert stopped.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_module_entry_point_runs(serving_model_dir):
    env = {**os.environ, "PYTHONPATH": str(REPO), "MODEL_DIR": str(serving_model_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "lambda_handler", "--json", TITLE, ABSTRACT],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["labels"][0]["label"] == "cs.CV"


@pytest.mark.parametrize("json_lines", [False, True])
def test_a_lone_surrogate_in_an_id_or_title_is_printed_escaped(
    tmp_path, serving_model_dir, json_lines
):
    # valid JSON in; a strict UTF-8 pipe out, as a real terminal or file would get
    path = tmp_path / "papers.jsonl"
    path.write_text(
        '{"id": "\\udc80x", "title": "T\\udc81", "abstract": "graph neural networks"}\n'
        + json.dumps({"id": "b", "abstract": ABSTRACT})
        + "\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONIOENCODING": "utf-8:strict"}
    command = [sys.executable, "-m", "lambda_handler", "--model-dir", str(serving_model_dir)]
    done = subprocess.run(
        [*command, "--file", str(path), *(["--json"] if json_lines else [])],
        cwd=REPO, env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode("utf-8")
    if json_lines:
        assert [json.loads(line)["id"] for line in out.splitlines()] == ["\udc80x", "b"]
    else:
        assert "\\udc80x: T\\udc81" in out and "b: " in out


def test_deeply_nested_json_lines_and_a_corrupt_gzip_block_are_one_line_each(
    capsys, tmp_path, serving_model_dir
):
    nested = tmp_path / "nested.jsonl"
    nested.write_text("[" * 100_000 + "\n" + json.dumps({"abstract": ABSTRACT}) + "\n")
    code, out, err = run(capsys, "--model-dir", str(serving_model_dir), "--file", str(nested))
    assert (
        code == 1 and err == "error: line 1: not valid JSON: nested too deeply\n" and "cs." in out
    )
    packed = gzip.compress(("title,abstract\n" + f"T,{ABSTRACT}\n" * 200).encode())
    corrupt = tmp_path / "corrupt.csv.gz"
    corrupt.write_bytes(packed[:20] + bytes(b ^ 0xFF for b in packed[20:60]) + packed[60:])
    code, out, err = run(capsys, "--model-dir", str(serving_model_dir), "--file", str(corrupt))
    assert (code, out) == (2, "") and err.startswith(f"error: {corrupt} is not valid gzip")
    assert err.count("\n") == 1


def test_an_empty_jsonl_file_and_capitalised_columns(capsys, tmp_path, serving_model_dir):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    code, out, err = run(capsys, "--model-dir", str(serving_model_dir), "--file", str(empty))
    assert (code, out, err) == (2, "", f"error: {empty} holds no papers\n")
    capitalised = tmp_path / "papers.jsonl"
    capitalised.write_text(json.dumps({"Title": TITLE, "Abstract": ABSTRACT}) + "\n")
    code, out, _ = run(capsys, "--model-dir", str(serving_model_dir), "--file", str(capitalised))
    assert code == 0 and "cs." in out
