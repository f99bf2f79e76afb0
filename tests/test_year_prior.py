"""The year prior: fitting it (train/year_prior.py), storing it, and serving a paper's `date`.

The fixture model directory holds a year prior for SERVING_YEARS (conftest), strong enough to
change a paper's top label, so these tests can tell a year that was used from one that was not.
"""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from conftest import SERVING_YEARS, serving_year_prior, write_serving_manifest

from lambda_handler import bulk
from lambda_handler.__main__ import main as cli_main
from lambda_handler.combiner import Combiner
from lambda_handler.model import Classifier
from lambda_handler.service import Service
from lambda_handler.settings import Settings
from lambda_handler.tfidf import logit, sigmoid
from lambda_handler.year_prior import YearPrior, parse_paper_date
from train import year_prior
from train.ensemble import fit_stacked

ABSTRACT = "We train convolutional neural networks for object detection in images."
YEAR = SERVING_YEARS[0] + 1


def prior_of(labels=("a", "b"), first=2000, shifts=((0.5, -1.0), (0.0, 2.0))) -> YearPrior:
    return YearPrior(labels, first, np.array(shifts, dtype=np.float32))


# --- the stored table ----------------------------------------------------------------------------


def test_offsets_are_the_years_rows_and_zero_for_other_papers():
    prior = prior_of()
    offsets = prior.offsets([2001, None, 1999, 2000, 2002])
    assert offsets is not None and offsets.dtype == np.float32
    np.testing.assert_array_equal(offsets, [[0, 2], [0, 0], [0, 0], [0.5, -1], [0, 0]])
    assert prior.offsets([None, 2002, 1999]) is None  # nothing to add: callers skip the addition
    assert (prior.first_year, prior.last_year) == (2000, 2001)


def test_the_document_reads_back_to_the_same_float32_table():
    shifts = np.random.default_rng(0).normal(0, 3, (4, 3)).astype(np.float32)
    prior = YearPrior(("a", "b", "c"), 1995, shifts)
    again = YearPrior.from_bytes(json.dumps(prior.to_document()).encode())
    assert again.labels == prior.labels and again.first_year == 1995 and again.last_year == 1998
    assert again.shifts.tobytes() == shifts.tobytes()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: "{", "not valid JSON"),
        (lambda d: {**d, "format_version": 2}, "format_version 1"),
        (lambda d: {**d, "labels": "a b"}, "labels must be a list of label codes"),
        (lambda d: {**d, "first_year": 2003}, "first ≤ last"),
        (lambda d: {**d, "last_year": 2002.0}, "must be integers"),
        (lambda d: {**d, "last_year": 2002}, "one row per year 2000..2002 (3), got shape (2, 2)"),
        (lambda d: {**d, "shifts": [[0, "x"], [1, 2]]}, "a table of numbers"),
        (lambda d: {**d, "shifts": [[0, 1], [1]]}, "a table of numbers"),
        (lambda d: {**d, "shifts": [[0, float("nan")], [1, 2]]}, "finite"),
        (lambda d: {**d, "shifts": [[0, 1, 2], [1, 2, 3]]}, "do not fit 2 labels"),
    ],
)
def test_a_broken_document_is_refused_with_what_is_wrong(change, message):
    changed = change(prior_of().to_document())
    raw = changed if isinstance(changed, str) else json.dumps(changed)
    with pytest.raises(ValueError, match=re.escape(message)):
        YearPrior.from_bytes(raw.encode())


# --- fitting -------------------------------------------------------------------------------------


def test_fit_shifts_a_label_toward_the_years_it_lives_in():
    # Label 0 only in 2000 (like bare astro-ph before 2009), label 1 on half the papers of
    # every year.
    years = [2000] * 40 + [2005] * 40 + [None] * 20 + [2025] * 50
    targets = np.zeros((len(years), 2), dtype=np.float32)
    targets[:40, 0] = 1
    targets[::2, 1] = 1
    prior = year_prior.fit(("old", "half"), targets, years, until=2019, smoothing=1.0)
    assert prior is not None and (prior.first_year, prior.last_year) == (2000, 2019)
    row_2000, row_2005 = prior.shifts[0], prior.shifts[5]
    assert row_2000[0] > 0.5 and row_2005[0] < -2  # in its years it gains, after them it loses
    assert abs(row_2000[1]) < 0.05  # a label as common in every year learns nothing from it
    assert np.all(prior.shifts[1:5] == prior.shifts[1]) and np.all(prior.shifts[1] == 0)  # empty


def test_smoothing_pulls_a_year_of_few_papers_toward_no_shift():
    years = [2000] * 3 + [2010] * 200
    targets = np.zeros((len(years), 2), dtype=np.float32)
    targets[:3, 0] = 1
    targets[3:, 1] = 1
    weak = year_prior.fit(("a", "b"), targets, years, until=2019, smoothing=1000.0)
    strong = year_prior.fit(("a", "b"), targets, years, until=2019, smoothing=1.0)
    assert weak is not None and strong is not None
    assert 0 < weak.shifts[0, 0] < 0.2 < strong.shifts[0, 0]


def test_fit_ignores_papers_after_until_and_gives_none_without_dated_papers():
    targets = np.ones((4, 1), dtype=np.float32)
    assert year_prior.fit(("a",), targets, [None, None, 2025, 2026], 2019, 20.0) is None
    prior = year_prior.fit(("a",), targets, [2018, None, 2025, 2026], 2019, 20.0)
    assert prior is not None and (prior.first_year, prior.last_year) == (2018, 2019)


# --- combining and the stacked fit -------------------------------------------------------------


def test_offsets_are_added_to_each_combiners_logits():
    rng = np.random.default_rng(1)
    lstm, baseline = rng.uniform(0.01, 0.99, (2, 5, 3)).astype(np.float32)
    offsets = rng.normal(0, 2, (5, 3)).astype(np.float32)
    weights = rng.normal(0, 0.5, (6, 3)).astype(np.float32)
    bias = rng.normal(0, 0.5, 3).astype(np.float32)
    stacked = Combiner("stacked", ("a", "b", "c"), 0.5, weights, bias)
    features = np.concatenate([logit(lstm), logit(baseline)], axis=1)
    np.testing.assert_allclose(
        stacked.combine(lstm, baseline, offsets),
        sigmoid(features @ weights + bias + offsets),
        atol=1e-6,
    )
    mean = Combiner("mean", ("a", "b", "c"), 0.25)
    np.testing.assert_allclose(
        mean.combine(lstm, baseline, offsets),
        sigmoid(logit(0.25 * lstm + 0.75 * baseline) + offsets),
        atol=1e-6,
    )
    for combiner in (stacked, mean):
        # Rows without an offset score exactly as with none, whatever their batch-mates have.
        plain = combiner.combine(lstm, baseline)
        assert combiner.combine(lstm, baseline, np.zeros_like(offsets)).tobytes() == plain.tobytes()
        mixed = offsets.copy()
        mixed[[1, 3]] = 0.0
        assert combiner.combine(lstm, baseline, mixed)[[1, 3]].tobytes() == plain[[1, 3]].tobytes()


def test_predict_refuses_years_that_do_not_match_the_papers(classifier):
    papers = [classifier.encode("", ABSTRACT), classifier.encode("", "robots")]
    with pytest.raises(ValueError, match="1 years for 2 papers"):
        classifier.predict(papers, [YEAR])


def test_the_stacked_layer_learns_on_top_of_the_offsets():
    """A constant offset per label is absorbed by the bias, so the fitted logits with the
    offset equal those fitted without it: the offset is part of the objective."""
    rng = np.random.default_rng(2)
    features = rng.normal(-2, 1.5, (400, 4)).astype(np.float32)
    targets = (rng.uniform(size=(400, 2)) < sigmoid(features[:, :2])).astype(np.float32)
    offsets = np.tile(np.array([1.5, -2.0], dtype=np.float32), (400, 1))
    weights, bias = fit_stacked(features, targets, 0.1)
    weights_off, bias_off = fit_stacked(features, targets, 0.1, offsets=offsets)
    np.testing.assert_allclose(weights_off, weights, atol=2e-3)
    np.testing.assert_allclose(bias_off, bias - [1.5, -2.0], atol=5e-3)


# --- serving -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier(serving_model_dir) -> Classifier:
    return Classifier.load(serving_model_dir)


def test_the_function_adds_the_years_offsets_and_nothing_else(classifier):
    assert classifier.year_prior is not None
    papers = [classifier.encode("Image segmentation", ABSTRACT), classifier.encode("", "robots")]
    undated = classifier.predict(papers)
    dated = classifier.predict(papers, [YEAR, None])
    expected = sigmoid(logit(undated[0]) + serving_year_prior().shifts[YEAR - SERVING_YEARS[0]])
    np.testing.assert_allclose(dated[0], expected, atol=2e-5)
    assert dated[0].argmax() != undated[0].argmax()  # the fixture's prior changes its answer
    assert dated[1].tobytes() == undated[1].tobytes()
    later = classifier.predict(papers, [SERVING_YEARS[1] + 1, SERVING_YEARS[0] - 1])
    assert later.tobytes() == undated.tobytes()


def classify(service: Service, body: dict) -> tuple[int, dict]:
    answer = service.handle(body)
    return answer["statusCode"], json.loads(answer["body"])


def test_the_api_reads_each_papers_date(serving_service, classifier):
    date = f"{YEAR}-06-30"
    status, dated = classify(serving_service, {"abstract": ABSTRACT, "date": date, "top_k": 6})
    assert status == 200
    _, undated = classify(serving_service, {"abstract": ABSTRACT, "top_k": 6})
    _, null = classify(serving_service, {"abstract": ABSTRACT, "date": None, "top_k": 6})
    assert null == undated != dated
    scores = classifier.predict([classifier.encode("", ABSTRACT)], [YEAR])[0]
    top = dated["results"][0]["labels"][0]
    assert top["label"] == classifier.labels[int(scores.argmax())].code
    status, batch = classify(
        serving_service,
        {"documents": [{"abstract": ABSTRACT, "date": date}, {"abstract": ABSTRACT}], "top_k": 6},
    )
    assert status == 200
    assert batch["results"] == [dated["results"][0], undated["results"][0]]


@pytest.mark.parametrize(
    "date",
    [
        "2019-02-29",
        "2019-W01",
        "2019-13",
        "2019-5",
        "201905",
        "2019/05/01",
        "May 2019",
        "",
        2019,
        ["2019-05-01"],
        (datetime.now(UTC).date() + timedelta(days=2)).isoformat(),
    ],
)
def test_a_bad_date_is_a_400_naming_the_field(serving_service, date):
    status, body = classify(serving_service, {"abstract": ABSTRACT, "date": date})
    assert status == 400 and body["error"] == "invalid_date"
    assert body["message"].startswith("date must be the paper's date as a string: an ISO date")
    status, body = classify(
        serving_service,
        {"documents": [{"abstract": ABSTRACT}, {"abstract": ABSTRACT, "date": date}]},
    )
    assert status == 400 and body["error"] == "invalid_date"
    assert body["message"].startswith("documents[1].date must be")


@pytest.mark.parametrize("reduced", [f"{YEAR}", f" {YEAR}-06 "])
def test_a_year_or_a_month_reads_as_its_first_day(serving_service, reduced):
    """A catalogue that holds only the year (or month) gets the dated answer for that year."""
    _, day = classify(serving_service, {"abstract": ABSTRACT, "date": f"{YEAR}-01-01"})
    status, body = classify(serving_service, {"abstract": ABSTRACT, "date": reduced})
    _, undated = classify(serving_service, {"abstract": ABSTRACT})
    assert status == 200 and body == day != undated


def test_a_year_is_a_date_up_to_tomorrow():
    """This year is a paper's year; next year's only on 31 December, when its 1 January is
    tomorrow (UTC) somewhere."""
    today = datetime.now(UTC).date()
    assert parse_paper_date(str(today.year)) == today.replace(month=1, day=1)
    next_year = parse_paper_date(str(today.year + 1))
    assert (next_year is not None) == ((today + timedelta(days=1)).year > today.year)


def test_tomorrow_is_accepted_for_a_paper_listed_in_another_time_zone(serving_service):
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    status, _ = classify(serving_service, {"abstract": ABSTRACT, "date": tomorrow})
    assert status == 200


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("labels", "year_prior.json lists 6 labels that differ from the 6 of labels.json"),
        ("rows", "year_prior.json: shifts must have one row per year"),
        ("tampered", "year_prior.json sha256"),
    ],
)
def test_a_broken_year_prior_is_refused_at_load(make_serving_model_dir, breakage, message):
    model_dir = make_serving_model_dir()
    path = model_dir / "year_prior.json"
    document = json.loads(path.read_text())
    if breakage == "labels":
        document["labels"] = document["labels"][::-1]
    elif breakage == "rows":
        document["shifts"] = document["shifts"][:-1]
    if breakage == "tampered":  # one digit changed, the size kept
        raw = path.read_bytes()
        at = raw.index(b"1", raw.index(b'"shifts"'))
        path.write_bytes(raw[:at] + b"2" + raw[at + 1 :])
    else:
        path.write_text(json.dumps(document))
        write_serving_manifest(model_dir)
    service = Service.from_settings(Settings(model_dir=model_dir))
    assert service.classifier is None and message in str(service.failure)
    status, body = classify(service, {"abstract": ABSTRACT, "date": "2002-01-01"})
    assert status == 503 and body["error"] == "model_unavailable"


def test_a_model_without_a_year_prior_accepts_dates_and_ignores_them(make_serving_model_dir):
    model_dir = make_serving_model_dir()
    (model_dir / "year_prior.json").unlink()
    write_serving_manifest(model_dir)
    service = Service.from_settings(Settings(model_dir=model_dir))
    assert service.classifier is not None and service.classifier.year_prior is None
    dated = classify(service, {"abstract": ABSTRACT, "date": f"{YEAR}-01-01"})
    assert dated == classify(service, {"abstract": ABSTRACT})


def test_bulk_records_and_cli_csv_rows_use_their_date_column(
    classifier, serving_service, serving_model_dir, tmp_path, capsys
):
    """The all-fields CSV's `date` column (and a JSON record's `date`) is the paper's date in
    bulk runs and the CLI too; a bad one fails that record alone."""
    date = f"{YEAR}-03-01"
    records = [
        {"abstract": ABSTRACT, "date": date},
        {"abstract": ABSTRACT},
        {"abstract": ABSTRACT, "Date": "yesterday"},
        {"abstract": ABSTRACT, "date": " "},  # an empty CSV cell is no date
        {"abstract": ABSTRACT, "date": f"{date}T10:00:00Z"},  # a date and time: its date
    ]
    results = bulk.classify(classifier, list(enumerate(records)), 6, None)
    _, dated = classify(serving_service, {"abstract": ABSTRACT, "date": date, "top_k": 6})
    _, undated = classify(serving_service, {"abstract": ABSTRACT, "top_k": 6})
    assert results[0]["labels"] == dated["results"][0]["labels"]
    assert results[1]["labels"] == results[3]["labels"] == undated["results"][0]["labels"]
    assert results[4]["labels"] == dated["results"][0]["labels"]
    assert results[2]["error"] == "invalid_date" and "labels" not in results[2]
    path = tmp_path / "broad.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["titles", "summaries", "terms", "id", "date"])
        writer.writerow(["", ABSTRACT, "['cs.CV']", "0704.0001", date])
        writer.writerow(["", ABSTRACT, "['cs.CV']", "0704.0002", " "])
    capsys.readouterr()
    code = cli_main(
        ["--model-dir", str(serving_model_dir), "--json", "--top-k", "6", "--file", str(path)]
    )
    out = capsys.readouterr().out
    assert code == 0
    answers = [json.loads(line) for line in out.splitlines()]
    assert [answer["labels"] for answer in answers] == [
        dated["results"][0]["labels"],
        undated["results"][0]["labels"],
    ]
