"""Training's evaluation helpers: the low-confidence line, the breakdown by file, the plots."""

from datetime import date

import numpy as np
import pytest

from train import confidence, report
from train.evaluate import by_field_and_time
from train.report import weak_archive_reasons


def top_label_papers(right: list[bool], top_scores: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Two-label papers whose label 0 scores `top_scores` and is true exactly when `right`."""
    scores = np.array([[score, 0.01] for score in top_scores], dtype=np.float32)
    targets = np.array([[1, 0] if ok else [0, 1] for ok in right], dtype=np.float32)
    return targets, scores


def test_low_confidence_line_is_the_highest_under_which_top_labels_are_mostly_wrong():
    # Cumulative top-label precision from the lowest top score up: 0, 1/2, 1/3, 1/4, 1/5, 2/6
    # (the last one at most 40%), then 3/7: the line goes between 0.5 and 0.7.
    right = [False, True, False, False, False, True, True, True]
    top = [0.10, 0.15, 0.20, 0.25, 0.30, 0.50, 0.70, 0.90]
    targets, scores = top_label_papers(right, top)
    chosen = confidence.choose(targets, scores)
    assert chosen["top_score_below"] == pytest.approx(0.6)
    figures = chosen["validation"]
    assert figures["flagged_share"] == 0.75 and figures["precision_flagged"] == 0.3333
    assert figures["precision_rest"] == 1.0 and figures["auroc"] > confidence.MIN_AUROC


def test_no_line_is_offered_when_the_top_score_does_not_separate_right_from_wrong():
    right = [True, False] * 20
    top = list(np.linspace(0.1, 0.9, 40))
    chosen = confidence.choose(*top_label_papers(right, top))
    assert chosen["top_score_below"] is None
    assert chosen["validation"]["auroc"] < confidence.MIN_AUROC
    assert chosen["validation"]["flagged_share"] == 0.0


def test_tied_top_scores_are_flagged_together():
    # Flagging the first 0.4 paper alone (precision 0) would need a line inside a tie; with all
    # three 0.4 papers the precision is 2/4, too high: only the 0.2 paper is flagged.
    right = [False, False, True, True, True, True]
    top = [0.2, 0.4, 0.4, 0.4, 0.8, 0.9]
    chosen = confidence.choose(*top_label_papers(right, top))
    assert chosen["top_score_below"] == pytest.approx(0.3)


def test_each_input_file_is_scored_on_all_labels_and_on_its_own_labels():
    targets = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1]], dtype=np.float32)
    scores = np.array(
        [[0.9, 0.1, 0.1], [0.2, 0.8, 0.1], [0.1, 0.7, 0.6], [0.8, 0.1, 0.2]], dtype=np.float32
    )
    predicted = scores >= 0.5
    sources = ["cs.csv", "cs.csv", "broad.csv", "broad.csv"]
    own = {"cs.csv": np.array([True, True, False]), "broad.csv": np.array([True, True, True])}
    breakdown = by_field_and_time(
        targets,
        scores,
        predicted,
        ["cs.CV", "cs.LG", "hep-th"],
        ["cs.CV", "cs.LG", "hep-th", "cs.CV"],
        [None] * 4,
        np.zeros(4),
        sources,
        own,
    )
    by_file = breakdown["by_file"]
    assert by_file["cs.csv"]["papers"] == 2 and by_file["cs.csv"]["micro_f1"] == 1.0
    assert by_file["cs.csv"]["own_labels"]["labels"] == 2
    # broad.csv: paper 2 gets cs.LG (wrong) and hep-th (right); paper 3 cs.CV (right) and
    # misses hep-th: tp 2, fp 1, fn 1.
    assert by_file["broad.csv"]["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert by_file["broad.csv"]["own_labels"]["labels"] == 3

    def files(sources, file_labels):
        return by_field_and_time(
            targets,
            scores,
            predicted,
            ["cs.CV", "cs.LG", "hep-th"],
            ["cs.CV"] * 4,
            [None] * 4,
            np.zeros(4),
            sources,
            file_labels,
        )["by_file"]

    # A paper with none of a file's own labels would not be in that file's own test split.
    hep_only = files(["cs.csv", "cs.csv", "cs.csv", "broad.csv"], own)["cs.csv"]
    assert hep_only["papers"] == 3 and hep_only["own_labels"]["papers"] == 2
    assert hep_only["own_labels"]["micro_f1"] == 1.0  # paper 2's cs.LG is not held against it
    # A file none of whose test papers carries one of its own labels has no own-label score.
    theory = files(
        ["cs.csv", "cs.csv", "theory.csv", "cs.csv"],
        {**own, "theory.csv": np.array([True, False, False])},
    )["theory.csv"]
    assert theory["papers"] == 1 and "own_labels" not in theory
    single = by_field_and_time(
        targets, scores, predicted, ["a", "b", "c"], ["a"] * 4, [None] * 4, np.zeros(4), ["x"] * 4
    )
    assert "by_file" not in single  # one file: nothing to compare


def test_each_archive_says_where_its_wrong_top_labels_went():
    labels = ["cs.LG", "math.ST", "stat.ML", "stat.ME"]
    targets = np.array([[0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0]], np.float32)
    scores = np.array(  # top labels: cs.LG (wrong), stat.ML (wrong), stat.ML (right), math.ST
        [[0.9, 0.1, 0.2, 0.1], [0.1, 0.2, 0.8, 0.3], [0.1, 0.1, 0.9, 0.1], [0.1, 0.9, 0.1, 0.1]],
        np.float32,
    )
    primaries = ["stat.ML", "stat.ME", "stat.ML", "math.ST"]
    breakdown = by_field_and_time(
        targets, scores, scores >= 0.5, labels, primaries, [None] * 4, np.zeros(4)
    )
    assert breakdown["by_archive"]["stat"]["wrong_top"] == {
        "papers": 2,
        "in_other_archives": 1,
        "commonest": [{"label": "cs.LG", "papers": 1}, {"label": "stat.ML", "papers": 1}],
    }
    assert breakdown["by_archive"]["math"]["wrong_top"]["papers"] == 0
    archives = {
        "stat": {**breakdown["by_archive"]["stat"], "papers": 318},
        "math": {**breakdown["by_archive"]["math"], "papers": 150},
    }
    (lead, _, line, _) = weak_archive_reasons(archives, ["stat", "math"])
    assert lead.startswith("Where the wrong top labels went, for those with 200+ test papers")
    assert line == (
        "- **stat** (318 test papers, P@1 0.333): 2 wrong top labels, 50% of them in another "
        "archive; the commonest cs.LG (1), stat.ML (1)."
    )
    assert weak_archive_reasons({"math": archives["math"]}, ["math"]) == []  # too few papers


@pytest.mark.parametrize(
    ("output", "loss"), [("softmax", "softmax cross-entropy"), ("sigmoid", "binary cross-entropy")]
)
def test_training_plot_names_the_loss_the_lstm_was_trained_with(
    tmp_path, monkeypatch, output, loss
):
    figures = []
    monkeypatch.setattr(report, "png", lambda figure: figures.append(figure) or b"")
    report.plot_training({"loss": [2.0, 1.5], "val_micro_f1": [0.5, 0.6]}, output)
    assert figures[0].axes[0].get_title() == f"LSTM training loss ({loss})"


def test_the_model_card_says_whether_one_threshold_or_per_label_ones_decide():
    served = {"rule": "global", "thresholds": [0.29, 0.29, 0.29]}
    assert report.threshold_words(served) == (
        "one threshold for every label (0.29), chosen on validation."
    )
    served = {"rule": "shrunk, prior 30", "thresholds": [0.2, 0.35, 0.29]}
    assert "per-label thresholds chosen on validation (rule: shrunk, prior 30)" in (
        report.threshold_words(served)
    )


def test_every_dated_paper_falls_in_a_period():
    # 2021-2024 and 2027 papers used to fall in no period, or in "2025-26"
    years = [2001, 2010, 2022, 2025, 2026, 2027, 2031]
    n = len(years)
    targets = np.eye(2, dtype=np.float32)[[i % 2 for i in range(n)]]
    breakdown = by_field_and_time(
        targets, targets, targets.astype(bool), ["a", "b"], ["a"] * n,
        [date(year, 6, 1) for year in years], np.zeros(n), ["x"] * n,
    )  # fmt: skip
    papers = {name: scores["papers"] for name, scores in breakdown["by_period"].items()}
    assert papers == {
        "before 2007": 1, "2007-2019": 1, "2020-2024": 1, "2025-26": 2, "2027 and later": 2,
    }  # fmt: skip
    assert breakdown["undated_papers"] == 0


def test_the_reports_say_when_no_test_paper_or_every_one_is_flagged():
    low = {"top_score_below": 0.58, "test": {"flagged_share": 0.0, "precision_flagged": None,
           "precision_rest": 0.9}}  # fmt: skip
    assert "none of the test papers were flagged." in report.doubtful_answers(low)[2]
    everyone = {**low, "test": {"flagged_share": 1.0, "precision_flagged": 0.4,
                                "precision_rest": None}}  # fmt: skip
    assert "all of the test papers were flagged." in report.doubtful_answers(everyone)[2]
    assert report.share_or_dash(0.0, ".3f") == "0.000" and report.share_or_dash(None, ".3f") == "-"


def test_an_empty_subset_has_no_scores_rather_than_zeros():
    targets = np.array([[1, 0], [0, 1]], dtype=np.float32)  # two cs papers only
    breakdown = by_field_and_time(
        targets, targets * 0.9, targets.astype(bool), ["cs.CV", "cs.LG"], ["cs.CV", "cs.LG"],
        [None, None], np.zeros(2),
    )  # fmt: skip
    outside = breakdown["outside_cs_stat"]
    assert outside == {"papers": 0, "micro_f1": None, "macro_f1": None, "p_at_1": None}
    assert report.scores_row("outside cs/stat", outside) == ["outside cs/stat", "0", "-", "-", "-"]


def test_the_model_card_speaks_of_drift_only_when_older_papers_score_lower():
    periods = {"before 2007": {"p_at_1": 0.62}, "2007-2019": {"p_at_1": 0.7}}
    periods["2025-26"] = {"p_at_1": 0.93}
    assert report.drift_words(periods) == (
        " Papers dated before 2007 score lower than those dated 2025-26 (P@1 0.62 against "
        "0.93); the periods differ in their mix of fields and in arXiv's categories as well as "
        "in time."
    )
    assert report.drift_words({"before 2007": {"p_at_1": 1.0}, "2025-26": {"p_at_1": 0.9}}) == ""
    assert report.drift_words({"2025-26": {"p_at_1": 0.9}}) == ""


def test_the_report_says_why_it_has_no_scores_by_period():
    targets = np.array([[1, 0], [0, 1]], dtype=np.float32)
    breakdown = by_field_and_time(
        targets, targets * 0.9, targets.astype(bool), ["cs.CV", "hep-th"], ["cs.CV", "hep-th"],
        [None, None], np.zeros(2),
    )  # fmt: skip
    assert not any("period" in line for line in report.breakdown_section(breakdown))
    lines = report.breakdown_section(breakdown, unparsable_dates=300)
    assert any(line.startswith("No scores by period") and "300" in line for line in lines)


def test_archives_are_listed_by_papers_then_name_whatever_the_hash_seed():
    """Archives with as many papers came in set order, which each process's hash seed changes
    (two runs of the same model listed nucl-ex, hep-lat and hep-ex in different orders)."""
    primaries = ["q-fin.ST", "nucl-ex", "hep-lat", "cs.LG", "hep-ex", "astro-ph.GA", "cs.CV"]
    n = len(primaries)
    targets = np.ones((n, 1), np.float32)
    breakdown = by_field_and_time(
        targets, targets, targets >= 0.5, ["x"], primaries, [None] * n, np.zeros(n)
    )
    assert list(breakdown["by_archive"]) == [
        "cs",
        "astro-ph",
        "hep-ex",
        "hep-lat",
        "nucl-ex",
        "q-fin",
    ]


def test_cs_papers_on_cs_labels_leave_out_a_cs_paper_without_a_kept_cs_label():
    # Paper 2's primary is cs.DL, a label too rare to keep: it carries only math.NT, so it has
    # no cs label to be scored on and must not count as a CS paper's miss.
    labels = ["cs.CV", "cs.LG", "math.NT"]
    targets = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    scores = np.array([[0.9, 0.1, 0.0], [0.1, 0.8, 0.1], [0.7, 0.1, 0.2]], dtype=np.float32)
    predicted = scores >= 0.5
    breakdown = by_field_and_time(
        targets, scores, predicted, labels, ["cs.CV", "cs.LG", "cs.DL"], [None] * 3, np.zeros(3)
    )
    cs = breakdown["cs_papers_cs_labels"]
    assert cs["papers"] == 2 and cs["p_at_1"] == 1.0 and cs["micro_f1"] == 1.0
    assert breakdown["by_archive"]["cs"]["papers"] == 3  # still a cs paper by its primary
