"""train/compare.py: two runs scored on the test papers and labels they share, with intervals."""

import gzip
import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from lambda_handler.labels import Label, LabelSet
from train import compare


def write_run(folder, papers, codes, scores, threshold=0.5):
    """A training run's outputs that compare.py reads: test split, labels and served scores."""
    folder.mkdir()
    lines = [
        json.dumps({"title": t, "abstract": a, "labels": list(y), "primary": y[0], "date": None})
        for t, a, y in papers
    ]
    (folder / "test_split.jsonl.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
    labels = LabelSet(tuple(Label(code, code, threshold, code.split(".")[0]) for code in codes))
    (folder / "labels.json").write_text(json.dumps(labels.to_document()))
    served = np.asarray(scores, dtype=np.float32)
    with (folder / "predictions.npz").open("wb") as out:
        np.savez(out, lstm_test=served, baseline_test=served, served_test=served)
    return folder


PAPERS = [
    ("cv", "about images", ("cs.CV",)),
    ("lg", "about learning", ("cs.LG",)),
    ("both", "images and learning", ("cs.CV", "cs.LG")),
    ("theory", "strings", ("hep-th",)),
]


def test_two_runs_are_paired_on_shared_papers_and_common_labels(tmp_path, capsys):
    # A: a CS-only run (two labels) with three of the papers; B: all four, and hep-th.
    a = write_run(
        tmp_path / "a", PAPERS[:3], ["cs.CV", "cs.LG"], [[0.9, 0.2], [0.6, 0.4], [0.7, 0.8]]
    )
    b_scores = [[0.0, 0.1, 0.9], [0.0, 0.8, 0.1], [0.0, 0.7, 0.6], [0.9, 0.1, 0.1]]
    b = write_run(tmp_path / "b", PAPERS[::-1], ["hep-th", "cs.LG", "cs.CV"], b_scores[::-1])
    comparison = compare.pair([compare.load_run(a), compare.load_run(b)])
    assert comparison.labels == ("cs.CV", "cs.LG") and len(comparison.primaries) == 3
    truth = np.array([[1, 0], [0, 1], [1, 1]])
    # A labels paper "lg" cs.CV (its top label, wrongly); B gets all three right.
    a_sets = np.array([[1, 0], [1, 0], [1, 1]])
    point, resampled = compare.bootstrap(comparison, np.arange(3), resamples=50, seed=1)
    assert point[0, 0] == pytest.approx(f1_score(truth, a_sets, average="micro"))
    assert point[0, 1] == pytest.approx(f1_score(truth, a_sets, average="macro"))
    assert point[:, 2].tolist() == pytest.approx([2 / 3, 1.0])
    assert point[1].tolist() == [1.0, 1.0, 1.0]
    assert resampled.shape == (50, 2, 3) and np.all(resampled[:, 1] == 1.0)
    assert compare.main([str(a), str(b), "--resamples", "20"]) == 0
    table = capsys.readouterr().out
    assert "3 test papers shared that carry one of the 2 labels in common" in table
    assert "(papers left out: A 0, B 1)" in table
    assert "| all (3) | P@1 | 0.6667 | 1.0000 | +0.3333 |" in table
    # Paired: a run against itself differs by exactly 0 in every resample.
    assert compare.main([str(a), str(a), "--resamples", "20"]) == 0
    itself = capsys.readouterr().out.splitlines()[-3:]
    assert all(line.endswith("| +0.0000 | +0.0000 to +0.0000 |") for line in itself)


def test_papers_pair_by_normalised_text_and_a_labels_are_the_truth(tmp_path, capsys):
    a = write_run(
        tmp_path / "a", PAPERS[:3], ["cs.CV", "cs.LG"], [[0.9, 0.2], [0.2, 0.9], [0.9, 0.9]]
    )
    # B spells the titles differently and holds "cv" with another label set.
    respelled = [("CV ", "About  images", ("cs.CV", "cs.LG")), ("LG", "about learning", ("cs.LG",))]
    b = write_run(tmp_path / "b", respelled, ["cs.CV", "cs.LG"], [[0.9, 0.2], [0.2, 0.9]])
    assert compare.main([str(a), str(b), "--resamples", "10"]) == 0
    out = capsys.readouterr().out
    assert "2 test papers shared" in out and "(papers left out: A 1, B 0)" in out
    assert "1 of them carry other labels in B's test split than in A's; A's are used." in out
    assert "| all (2) | micro-F1 | 1.0000 | 1.0000 |" in out


def test_one_run_gets_intervals_that_hold_its_figure_and_repeat_with_the_seed(tmp_path):
    rng = np.random.default_rng(0)
    papers = [(f"t{i}", f"a{i}", (["cs.CV", "cs.LG", "hep-th"][i % 3],)) for i in range(300)]
    run = write_run(tmp_path / "run", papers, ["cs.CV", "cs.LG", "hep-th"], rng.random((300, 3)))
    comparison = compare.pair([compare.load_run(run)])
    first = compare.report(comparison, ["A"], resamples=200, seed=3)
    assert first == compare.report(comparison, ["A"], resamples=200, seed=3)
    for line in first.splitlines()[4:]:
        value, interval = line.split(" | ")[2:4]
        low, high = (float(x) for x in interval.strip(" |").split(" to "))
        assert low < float(value) < high
    assert "| outside cs/stat (100) | P@1 |" in first


def test_runs_without_shared_papers_or_labels_are_a_one_line_error(tmp_path, capsys):
    a = write_run(tmp_path / "a", PAPERS[:2], ["cs.CV", "cs.LG"], [[0.9, 0.2], [0.6, 0.4]])
    b = write_run(tmp_path / "b", PAPERS[2:], ["cs.CV", "cs.LG"], [[0.9, 0.2], [0.6, 0.4]])
    c = write_run(tmp_path / "c", PAPERS[3:], ["hep-th"], [[0.9]])

    def error_line(argv):
        assert compare.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
        return err

    assert "share no test paper" in error_line([str(a), str(b)])
    assert "no label in common" in error_line([str(a), str(c)])
    assert "is not a folder" in error_line([str(tmp_path / "missing"), str(a)])
    line = {"title": "t", "abstract": "a", "labels": ["cs.CV"], "primary": 5}
    (tmp_path / "b" / "test_split.jsonl.gz").write_bytes(gzip.compress(json.dumps(line).encode()))
    assert "line 1: primary must be a category code" in error_line([str(b)])
    (tmp_path / "a" / "predictions.npz").write_bytes(b"not an npz")
    assert "predictions.npz" in error_line([str(a)])
    for usage in ([str(a), str(b), str(c)], [str(a), "--bootstrap-seed", "-1"]):
        with pytest.raises(SystemExit) as exit_:
            compare.main(usage)
        assert exit_.value.code == 2


def test_a_test_paper_without_labels_or_primary_is_left_out_not_a_crash(tmp_path, capsys):
    papers = [*PAPERS[:2], ("bare", "no labels", ())]
    lines = [json.dumps({"title": t, "abstract": x, "labels": list(y)}) for t, x, y in papers]
    run = write_run(tmp_path / "run", papers[:2], ["cs.CV", "cs.LG"], [[0.9, 0.2], [0.2, 0.9]])
    (run / "test_split.jsonl.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
    served = np.array([[0.9, 0.2], [0.2, 0.9], [0.5, 0.5]], dtype=np.float32)
    with (run / "predictions.npz").open("wb") as out:
        np.savez(out, lstm_test=served, baseline_test=served, served_test=served)
    assert compare.main([str(run), "--resamples", "10"]) == 0
    assert "2 test papers that carry" in capsys.readouterr().out
