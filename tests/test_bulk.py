"""Bulk classification: the Distributed Map batch the function answers (bulk.py) and the local
run over files and S3 objects (bulk_run.py), with the test model from conftest.py."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TOPICS, serving_v2_event, write_kaggle_csv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambda_handler import bulk_run
from lambda_handler.api import ApiError
from lambda_handler.bulk import (
    MAX_BULK_TOP_K,
    InvalidBatchOptions,
    is_batch_event,
    parse_options,
)
from lambda_handler.service import ModelUnavailable, Service
from lambda_handler.settings import Settings
from lambda_handler.validation import MAX_ABSTRACT_CHARS, MAX_ID_CHARS

REPO = Path(__file__).resolve().parents[1]
PAPERS = [
    {"id": f"paper-{n}", "title": f"On {code}", "abstract": words}
    for n, (code, words) in enumerate(sorted(TOPICS.items()))
]


def batch(*records: object, **options: object) -> dict:
    items = [{"index": n, "record": record} for n, record in enumerate(records)]
    return {"Items": items, "BatchInput": options}


def test_a_batch_gets_the_apis_answers_one_result_per_item_in_order(serving_service: Service):
    answer = serving_service.handle(batch(*PAPERS, top_k=2), None)
    api = serving_service.handle(
        serving_v2_event("POST", "/classify", {"documents": PAPERS, "top_k": 2}), None
    )
    expected = json.loads(api["body"])["results"]
    results = answer["results"]
    assert [r["index"] for r in results] == list(range(len(PAPERS)))
    assert [{k: v for k, v in r.items() if k != "index"} for r in results] == expected


def test_bad_records_become_error_results_and_never_fail_the_batch(serving_service: Service):
    good = PAPERS[0]
    records = [
        good,
        {"id": 7, "abstract": ""},
        {"id": "long", "abstract": "pixels " * (MAX_ABSTRACT_CHARS // 7 + 1)},
        {"id": "stop", "abstract": "the of and 2024"},
        {"title": "no abstract"},
        "not an object",
        {"abstract": ["a", "list"]},
        {"titles": "Kaggle row", "summaries": TOPICS["cs.CL"], "terms": "['cs.CL']"},
    ]
    event = batch(*records)
    event["Items"].append(42)  # not even an item
    results = serving_service.handle(event, None)["results"]
    assert len(results) == len(records) + 1
    codes = [r.get("error") for r in results]
    assert codes == [
        None,
        "empty_abstract",
        "abstract_too_long",
        "no_content_words",
        "invalid_request",
        "invalid_request",
        "invalid_request",
        None,
        "invalid_request",
    ]
    assert [r["id"] for r in results[:3]] == ["paper-0", 7, "long"]
    twin = batch({"title": "Kaggle row", "abstract": TOPICS["cs.CL"]})  # the same paper as JSONL
    assert results[7]["labels"] == serving_service.handle(twin, None)["results"][0]["labels"]
    assert results[8]["index"] == 8  # a bare item is numbered by its position


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"top_k": 0}, "top_k must be an integer from 1 to 6"),
        ({"top_k": 2.5}, "top_k must be an integer from 1 to 6"),
        ({"threshold": 2}, "threshold must be a number from 0 to 1"),
    ],
)
def test_bad_batch_options_fail_the_batch_so_the_run_stops(
    serving_service: Service, options: dict, message: str
):
    # every batch would fail alike: the run must fail, not succeed with an error per record
    with pytest.raises(InvalidBatchOptions, match=message):
        serving_service.handle(batch(*PAPERS, **options), None)


def test_bulk_top_k_stays_small_enough_for_a_batch_answer_to_fit_step_functions():
    assert parse_options(MAX_BULK_TOP_K, None, 152) == (MAX_BULK_TOP_K, None)
    with pytest.raises(ApiError, match=f"from 1 to {MAX_BULK_TOP_K}"):
        parse_options(MAX_BULK_TOP_K + 1, None, 152)


def test_the_widest_batch_answer_fits_the_256_kib_task_result_limit(serving_service: Service):
    # 64 records, the longest ids, every label kept (the fixture model has 6 of the 20 allowed):
    # scale the label part to 20 labels and the answer must still fit
    records = [{**PAPERS[i % len(PAPERS)], "id": "x" * MAX_ID_CHARS} for i in range(64)]
    answer = serving_service.handle(batch(*records, top_k=6, threshold=0), None)
    labels = sum(len(json.dumps(r["labels"])) for r in answer["results"])
    rest = len(json.dumps(answer)) - labels
    assert rest + labels * MAX_BULK_TOP_K / 6 < 256 * 1024 - 4 * 1024  # room for the envelope


def test_an_id_the_runtime_could_not_write_or_too_long_fails_its_record_only(
    serving_service: Service,
):
    records = [{**PAPERS[0], "id": "\udc80x"}, {**PAPERS[1], "id": "y" * 257}, PAPERS[2]]
    # Ids of another type are refused too: echoed back as null, they would lose the record's
    # identity while it was still classified.
    records += [{**PAPERS[0], "id": value} for value in (1.5, ["x"], True, {"a": 1})]
    records.append({**PAPERS[1], "id": None})  # no id, as if the key were missing
    answer = serving_service.handle(batch(*records), None)
    json.dumps(answer, ensure_ascii=False).encode("utf-8")  # as the python3.13 runtime writes it
    results = answer["results"]
    assert [(r["id"], r.get("error")) for r in results] == [
        (None, "invalid_request"), (None, "invalid_request"), (PAPERS[2]["id"], None),
        *[(None, "invalid_request")] * 4, (None, None),
    ]  # fmt: skip
    assert "at most 256 characters" in results[0]["message"]


def test_an_unavailable_model_fails_the_batch_so_step_functions_retries_it(tmp_path):
    service = Service.from_settings(Settings(model_dir=tmp_path / "no-model"))
    with pytest.raises(ModelUnavailable, match="the model is unavailable"):
        service.handle(batch(*PAPERS), None)
    # Lambda reports the exception's class name as errorType, which the state machine retries
    # (tests/test_infra_bulk.py holds its Retry to ModelUnavailable.__name__).


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.none() | st.integers() | st.text(max_size=30) | st.dictionaries(
    st.sampled_from(["id", "title", "abstract", "titles", "summaries", "x"]),
    st.none() | st.booleans() | st.integers() | st.text(max_size=60) | st.just(TOPICS["cs.LG"]),
), max_size=20))  # fmt: skip
def test_items_in_equal_results_out_whatever_the_records(serving_service: Service, records):
    results = serving_service.handle(batch(*records), None)["results"]
    assert [r["index"] for r in results] == list(range(len(records)))
    assert all(("labels" in r) != ("error" in r) for r in results)


def test_only_itembatcher_events_take_the_bulk_path():
    assert is_batch_event({"Items": []}) and is_batch_event({"Items": [], "BatchInput": {}})
    assert not is_batch_event({"abstract": "x", "Items": []})
    assert not is_batch_event({"documents": []}) and not is_batch_event([])


# --- the local run ------------------------------------------------------------------------------


def write_jsonl(path: Path, lines: list[bytes]) -> Path:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wb") as handle:
        handle.write(b"".join(line + b"\n" for line in lines))
    return path


def jsonl_lines(n: int) -> list[bytes]:
    return [json.dumps({**PAPERS[i % len(PAPERS)], "id": f"r{i}"}).encode() for i in range(n)]


def results(output: Path) -> list[dict]:
    found = []
    for part in sorted(output.glob("part-*.jsonl")):
        found += [json.loads(line) for line in part.read_text(encoding="utf-8").splitlines()]
    return found


def bulk(*args: object, model: Path) -> int:
    return bulk_run.main([*map(str, args), "--model-dir", str(model)])


def test_a_jsonl_file_with_malformed_lines(tmp_path, serving_model_dir, capsys):
    lines = jsonl_lines(10)
    lines[2] = b'{"id": "cut", "abstract": '
    lines[4] = b'{"id": "latin-1", "abstract": "caf\xe9 pixels"}'
    lines[6] = b'{"id": "no-abstract"}'
    lines.insert(8, b"   ")  # blank: no record
    source = write_jsonl(tmp_path / "in.jsonl.gz", lines)
    assert (
        bulk(
            source,
            tmp_path / "out",
            "--batch-size",
            "3",
            "--part-batches",
            "2",
            model=serving_model_dir,
        )
        == 0
    )
    found = results(tmp_path / "out")
    assert [r["index"] for r in found] == list(range(10))
    errors = {r["line"]: r["error"] for r in found if "error" in r}
    assert errors == {3: "invalid_json", 5: "invalid_json", 7: "invalid_request"}
    assert "line 5 is not UTF-8" in found[4]["message"]
    assert [r["line"] for r in found][-2:] == [10, 11]  # the blank line 9 is skipped
    summary = json.loads((tmp_path / "out" / "_summary.json").read_text())
    assert (summary["read"], summary["classified"], summary["failed"]) == (10, 7, 3)
    assert sorted(p.name for p in (tmp_path / "out").glob("part-*")) == [
        "part-0000000000.jsonl", "part-0000000006.jsonl"
    ]  # fmt: skip
    assert "10 papers read: 7 classified, 3 failed; " in capsys.readouterr().err


def test_the_local_run_answers_as_the_function_does(tmp_path, serving_model_dir, serving_service):
    source = write_jsonl(tmp_path / "in.jsonl", jsonl_lines(8))
    assert (
        bulk(source, tmp_path / "out", "--batch-size", "4", "--top-k", "2", model=serving_model_dir)
        == 0
    )
    records = [json.loads(line) for line in jsonl_lines(8)]
    expected = []
    for start in (0, 4):
        event = {"Items": [{"index": i, "record": records[i]} for i in range(start, start + 4)],
                 "BatchInput": {"top_k": 2}}  # fmt: skip
        expected += serving_service.handle(event, None)["results"]
    assert [
        {k: v for k, v in r.items() if k != "line"} for r in results(tmp_path / "out")
    ] == expected


def test_a_kaggle_csv_gz(tmp_path, serving_model_dir):
    rows = [(p["title"], p["abstract"], "['cs.LG']") for p in PAPERS] + [("Empty", " ", "[]")]
    plain = write_kaggle_csv(tmp_path / "in.csv", rows, extra_columns=True)
    source = tmp_path / "in.csv.gz"
    source.write_bytes(gzip.compress(plain.read_bytes()))
    assert bulk(source, tmp_path / "out", model=serving_model_dir) == 0
    found = results(tmp_path / "out")
    assert [r.get("error") for r in found] == [None] * len(PAPERS) + ["empty_abstract"]
    assert found[0]["line"] == 2 and found[0]["id"] is None  # line 1 is the header


def test_resumes_after_an_interruption_skipping_the_written_parts(
    tmp_path, serving_model_dir, monkeypatch, capsys
):
    source = write_jsonl(tmp_path / "in.jsonl", jsonl_lines(20))
    out = tmp_path / "out"
    arguments = (source, out, "--batch-size", "2", "--part-batches", "2")
    real_run_part, calls = bulk_run.run_part, []

    def interrupted(plan, part):
        calls.append(part[0].index)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as Ctrl-C or SIGTERM would, between parts
        return real_run_part(plan, part)

    monkeypatch.setattr(bulk_run, "run_part", interrupted)
    assert bulk(*arguments, model=serving_model_dir) == 130
    assert sorted(p.name for p in out.glob("part-*")) == [
        "part-0000000000.jsonl",
        "part-0000000004.jsonl",
    ]
    (out / ".part-0000000008.jsonl.abc.tmp").write_text("half")  # a worker killed mid-write
    monkeypatch.setattr(bulk_run, "run_part", real_run_part)
    capsys.readouterr()
    assert bulk(*arguments, model=serving_model_dir) == 0
    assert f", 8 skipped (already in {out}); " in capsys.readouterr().err
    summary = json.loads((out / "_summary.json").read_text())
    assert (summary["read"], summary["skipped"], summary["parts_written"]) == (20, 8, 3)
    assert not list(out.glob(".*.tmp"))
    resumed = results(out)
    fresh = tmp_path / "fresh"
    assert (
        bulk(source, fresh, "--batch-size", "2", "--part-batches", "2", model=serving_model_dir)
        == 0
    )
    assert resumed == results(fresh) and len(resumed) == 20


def test_a_rerun_with_other_settings_is_refused(tmp_path, serving_model_dir, capsys):
    source = write_jsonl(tmp_path / "in.jsonl", jsonl_lines(3))
    assert bulk(source, tmp_path / "out", model=serving_model_dir) == 0
    assert bulk(source, tmp_path / "out", "--top-k", "1", model=serving_model_dir) == 2
    assert "other settings (top_k)" in capsys.readouterr().err


def test_two_workers_write_what_one_writes(tmp_path, serving_model_dir):
    source = write_jsonl(tmp_path / "in.jsonl", jsonl_lines(40))
    options = ("--batch-size", "4", "--part-batches", "2")
    assert bulk(source, tmp_path / "one", *options, model=serving_model_dir) == 0
    assert bulk(source, tmp_path / "two", *options, "--workers", "2", model=serving_model_dir) == 0
    assert results(tmp_path / "one") == results(tmp_path / "two")


@pytest.mark.parametrize(
    ("make_input", "output", "message"),
    [
        (lambda d: d / "missing.jsonl", "out", "cannot read"),
        (lambda d: write_jsonl(d / "in.txt", jsonl_lines(2)), "out", "expected a .jsonl or .csv"),
        (lambda d: write_kaggle_csv(d / "in.csv", [("t", "a", "[]")]), "out", ""),
        (lambda d: write_jsonl(d / "in.jsonl", jsonl_lines(2)), "blocker/out", "cannot write"),
    ],
    ids=["missing", "unknown-format", "csv-ok", "unwritable"],
)
def test_whole_run_problems_stop_with_one_line_before_any_work(
    tmp_path, serving_model_dir, capsys, make_input, output, message
):
    (tmp_path / "blocker").write_text("a file where a directory should be")
    code = bulk(make_input(tmp_path), tmp_path / output, model=serving_model_dir)
    err = capsys.readouterr().err.strip().splitlines()
    if not message:
        assert code == 0
        return
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not list(tmp_path.rglob("part-*"))


def test_a_lone_surrogate_in_an_id_fails_its_record_not_the_run(tmp_path, serving_model_dir):
    # valid JSON ("\\udc80"), but no UTF-8 text: that record fails, the others are classified
    lines = jsonl_lines(3)
    lines[1] = b'{"id": "\\udc80x", "abstract": "graph neural networks for molecules"}'
    assert (
        bulk(write_jsonl(tmp_path / "in.jsonl", lines), tmp_path / "out", model=serving_model_dir)
        == 0
    )
    found = results(tmp_path / "out")
    assert [(r["id"], r.get("error")) for r in found] == [
        ("r0", None), (None, "invalid_request"), ("r2", None),
    ]  # fmt: skip


def test_a_broken_csv_row_is_an_error_result_never_merged_or_cut(tmp_path, serving_model_dir):
    source = tmp_path / "in.csv"
    source.write_bytes(
        b"\xef\xbb\xbftitle,abstract\r\n"  # a byte-order mark: the title column still counts
        b"Graphs,Graph neural networks for molecules\r\n"
        b"Extra,Graph neural networks, for molecules\r\n"
        b'"Stray,Reinforcement learning\r\nNext,Robot control\r\n"Closed",Translation\r\n'
        b"Last,Images of galaxies\r\n"
    )
    assert bulk(source, tmp_path / "out", model=serving_model_dir) == 0
    found = results(tmp_path / "out")
    assert [r["line"] for r in found] == [2, 3, 4, 7]
    assert [r.get("error") for r in found] == [None, "invalid_request", "invalid_request", None]
    assert "1 more fields than the header's 2" in found[1]["message"]
    without_bom = results_of(
        tmp_path, "title,abstract\nGraphs,Graph neural networks for molecules\n", serving_model_dir
    )
    assert found[0] == without_bom[0]  # the title was read despite the byte-order mark


def results_of(tmp_path: Path, text: str, model: Path) -> list[dict]:
    source, out = tmp_path / "plain.csv", tmp_path / "plain-out"
    source.write_text(text, encoding="utf-8")
    assert bulk(source, out, model=model) == 0
    return results(out)


def test_a_jsonl_byte_order_mark_is_skipped(tmp_path, serving_model_dir):
    lines = jsonl_lines(2)
    lines[0] = b"\xef\xbb\xbf" + lines[0]
    assert (
        bulk(write_jsonl(tmp_path / "in.jsonl", lines), tmp_path / "out", model=serving_model_dir)
        == 0
    )
    assert [r.get("error") for r in results(tmp_path / "out")] == [None, None]


@pytest.mark.parametrize("damage", ["not gzip", "truncated", "corrupt block"])
def test_a_damaged_gzip_input_stops_with_one_line_keeping_whole_parts(
    tmp_path, serving_model_dir, capsys, damage
):
    packed = gzip.compress(b"".join(line + b"\n" for line in jsonl_lines(300)))
    data = {
        "not gzip": b"this is not gzip at all\n" * 20,
        "truncated": packed[: len(packed) * 2 // 3],
        "corrupt block": packed[:40] + bytes(b ^ 0xFF for b in packed[40:80]) + packed[80:],
    }[damage]
    source = tmp_path / "in.jsonl.gz"
    source.write_bytes(data)
    out = tmp_path / "out"
    code = bulk(source, out, "--batch-size", "10", "--part-batches", "1", model=serving_model_dir)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and "cannot be read past byte" in err[-1]
    for part in out.glob("part-*.jsonl"):  # whatever was written is whole
        assert len(part.read_text().splitlines()) == 10


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (("--top-k", "0"), "--top-k must be an integer from 1 to 6"),
        (("--threshold", "2"), "--threshold must be a number from 0 to 1"),
        (("--threshold", "nan"), "--threshold must be a number from 0 to 1"),
    ],
)
def test_bad_options_stop_the_run_before_any_work(
    tmp_path, serving_model_dir, capsys, option, message
):
    source = write_jsonl(tmp_path / "in.jsonl", jsonl_lines(2))
    assert bulk(source, tmp_path / "out", *option, model=serving_model_dir) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not (tmp_path / "out").exists()


def test_an_unreadable_run_file_is_one_line_not_a_traceback(tmp_path, serving_model_dir, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "_run.json").write_text('{"input": ', encoding="utf-8")
    source = write_jsonl(tmp_path / "in.jsonl", jsonl_lines(2))
    assert bulk(source, tmp_path / "out", model=serving_model_dir) == 2
    assert "_run.json is not readable JSON" in capsys.readouterr().err


def test_a_csv_without_an_abstract_column_is_refused(tmp_path, serving_model_dir, capsys):
    source = tmp_path / "in.csv"
    source.write_text("title,body\nA,B\n", encoding="utf-8")
    assert bulk(source, tmp_path / "out", model=serving_model_dir) == 2
    assert "no abstract column" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_reads_an_s3_object(s3, bucket, tmp_path, serving_model_dir, capsys):
    body = gzip.compress(b"".join(line + b"\n" for line in jsonl_lines(5)))
    s3.put_object(Bucket=bucket, Key="bulk/input/papers.jsonl.gz", Body=body)
    uri = f"s3://{bucket}/bulk/input/papers.jsonl.gz"
    assert bulk(uri, tmp_path / "out", model=serving_model_dir) == 0
    assert [r["id"] for r in results(tmp_path / "out")] == [f"r{i}" for i in range(5)]
    assert (
        bulk(f"s3://{bucket}/bulk/input/nothing.jsonl", tmp_path / "o2", model=serving_model_dir)
        == 2
    )
    assert "cannot read s3://" in capsys.readouterr().err.splitlines()[-1]


def test_python_m_lambda_handler_bulk_runs_the_local_run(tmp_path, serving_model_dir):
    source = write_jsonl(tmp_path / "in.jsonl", jsonl_lines(3))
    done = subprocess.run(
        [sys.executable, "-m", "lambda_handler.bulk", str(source), str(tmp_path / "out"),
         "--model-dir", str(serving_model_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "3 papers read: 3 classified" in done.stderr
    assert len(results(tmp_path / "out")) == 3


def test_field_names_are_read_in_any_case_and_with_their_kin(serving_service: Service):
    record = {"Title": "Kaggle row", "Summary": TOPICS["cs.CL"]}
    twin = {"title": "Kaggle row", "abstract": TOPICS["cs.CL"]}
    answers = serving_service.handle(batch(record, twin), None)["results"]
    assert "error" not in answers[0] and answers[0]["labels"] == answers[1]["labels"]


def test_a_container_whose_model_did_not_load_tries_again_on_the_next_batch(
    tmp_path, serving_model_dir
):
    import shutil

    model_dir = tmp_path / "model"
    service = Service.from_settings(Settings(model_dir=model_dir))  # not there yet: a failure
    with pytest.raises(ModelUnavailable):
        service.handle(batch(*PAPERS), None)
    shutil.copytree(serving_model_dir, model_dir)  # the cause has passed
    results = service.handle(batch(*PAPERS), None)["results"]
    assert [r.get("error") for r in results] == [None] * len(PAPERS)


def test_an_integer_id_longer_than_the_limit_fails_its_record():
    from lambda_handler.bulk import record_id

    assert record_id({"id": 10**255}) == 10**255 and record_id({"id": 10**256}) is None
    assert record_id({"id": True}) is None and record_id({"id": 2.5}) is None


def test_a_record_with_two_spellings_of_one_field_fails_its_record_only(serving_service: Service):
    # Which of the two was meant cannot be told: never a silent pick.
    record = {"abstract": TOPICS["cs.CL"], "ABSTRACT": TOPICS["cs.CV"]}
    answers = serving_service.handle(batch(record, PAPERS[0]), None)["results"]
    assert answers[0]["error"] == "invalid_request"
    assert "two 'abstract' fields that differ only in case" in answers[0]["message"]
    assert "error" not in answers[1]
