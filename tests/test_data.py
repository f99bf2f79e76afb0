"""Loading, label filtering, deduplication, splitting and every bad-input error of train/data.py."""

import bz2
import gzip
import io
import lzma
import zipfile
from datetime import date

import numpy as np
import pytest
from conftest import synthetic_rows, write_kaggle_csv

from lambda_handler.year_prior import parse_paper_date
from train.data import (
    MIN_ABSTRACT_KEY_WORDS,
    DataError,
    Paper,
    deduplicate,
    describe_rows,
    load_files,
    load_papers,
    multi_hot,
    parse_terms,
    prepare,
    read_papers,
    split,
    split_position,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("['cs.CV', 'cs.LG']", ["cs.CV", "cs.LG"]),
        ("[]", []),
        ("[' stat.ML ']", ["stat.ML"]),
        ("'cs.CV'", None),
        ("['cs.CV'", None),
        ("[1, 2]", None),
        ("__import__('os').system('true')", None),
        ("", None),
        ("['cs.LG' 'stat.ML']", None),  # numpy's print of an array: Python would join the two
        ("[\"cs.LG\"'x', 'y']", None),
        ("('cs.LG',)", ["cs.LG"]),
    ],
)
def test_parse_terms_reads_list_literals_safely(raw, expected):
    assert parse_terms(raw) == expected


def test_load_keeps_arxiv_codes_only_and_counts_what_it_drops(tmp_path):
    path = write_kaggle_csv(
        tmp_path / "a.csv",
        [
            ("T1", "abstract one", "['cs.CV', 'I.2.7', '68T50']"),
            ("T2", "abstract two", "['14J60 (Primary)', 'na']"),
            ("T3", "abstract three", "['hep-th', 'cond-mat.mtrl-sci']"),
        ],
        extra_columns=True,
    )
    papers, counts, dropped = load_papers(path)
    assert [p.labels for p in papers] == [("cs.CV",), ("hep-th", "cond-mat.mtrl-sci")]
    assert counts["papers_without_arxiv_code"] == 1
    assert dropped == {"I.2.7": 1, "68T50": 1, "14J60 (Primary)": 1, "na": 1}


def words_abstract(topic: str) -> str:
    """An abstract long enough (MIN_ABSTRACT_KEY_WORDS) to be a duplicate key."""
    return " ".join(f"{topic}{i}" for i in range(MIN_ABSTRACT_KEY_WORDS))


def test_deduplicate_merges_by_normalised_title_and_by_abstract_uniting_labels():
    first = words_abstract("first")
    papers = [
        Paper("Deep Nets for Vision!", first, ("cs.LG",)),
        Paper("deep   nets for vision", words_abstract("another"), ("stat.ML",), date(2019, 5, 1)),
        Paper("Other", first.replace(" ", "  ").upper(), ("cs.CV",)),
        Paper("Unrelated", words_abstract("third"), ("cs.CL",)),
    ]
    merged, duplicates = deduplicate(papers)
    assert duplicates == 2
    assert merged == [
        Paper("Deep Nets for Vision!", first, ("cs.LG", "stat.ML", "cs.CV"), date(2019, 5, 1)),
        Paper("Unrelated", words_abstract("third"), ("cs.CL",)),
    ]  # the first copy's place and text, the first date found


def test_which_papers_merge_does_not_depend_on_their_order():
    # C shares A's title and B's abstract: all three are one paper, whichever comes first.
    a = Paper("Sparse Attention for Long Documents", words_abstract("x"), ("cs.CL",))
    b = Paper("A Survey of Graph Neural Networks", words_abstract("y"), ("cs.LG",))
    c = Paper("Sparse attention for long documents", words_abstract("y"), ("stat.ML",))
    for order in ([a, b, c], [b, c, a], [c, a, b]):
        merged, duplicates = deduplicate(order)
        assert duplicates == 2 and len(merged) == 1
        assert merged[0].title == order[0].title  # the first copy's text
        assert set(merged[0].labels) == {"cs.CL", "cs.LG", "stat.ML"}


def test_empty_titles_and_short_boilerplate_abstracts_merge_no_unrelated_papers():
    withdrawn = "This paper has been withdrawn by the author."
    papers = [
        Paper("", words_abstract("one"), ("hep-th",)),
        Paper("???", words_abstract("two"), ("cs.LG",)),
        Paper("Lattice QCD", withdrawn, ("hep-lat",)),
        Paper("Graph Colouring", withdrawn, ("math.CO",)),
        Paper("Introduction", words_abstract("four"), ("math.HO",)),  # short titles are shared
        Paper("Introduction", words_abstract("five"), ("astro-ph.GA",)),
        Paper("Dark Energy Survey", words_abstract("six"), ("astro-ph.CO",)),
        Paper("Dark energy survey", words_abstract("seven"), ("astro-ph.IM",)),
    ]
    assert deduplicate(papers) == (papers, 0)


def test_split_is_deterministic_about_80_10_10_and_drops_rare_labels():
    papers = [
        Paper(f"t{i}", f"a{i}", ("cs.CV",) if i % 50 else ("cs.CV", "q-bio.NC"))
        for i in range(1000)
    ]
    papers[7] = Paper("t7", "a7", ("q-bio.NC",))
    (train, val, test), labels, rare = split(papers, seed=3, min_label_count=20)
    assert labels == ["cs.CV"] and set(rare) == {"q-bio.NC"}
    # t7, whose one label is rare, is dropped; the rest fall about 80/10/10
    assert [len(part) for part in (train, val, test)] == [791, 110, 98]
    # A label only validation or test papers carry has no training paper: dropped and counted.
    unseen = [*papers, Paper("only-outside-training", "a", ("hep-th",))]
    assert split_position(unseen[-1], seed=29) >= 0.8  # that paper lands in validation or test
    _, labels, rare = split(unseen, seed=29, min_label_count=21)
    assert labels == ["cs.CV"] and rare == {"q-bio.NC": 20, "hep-th": 0}
    again, _, _ = split(papers, seed=3, min_label_count=20)
    assert again[0] == train
    other, _, _ = split(papers, seed=4, min_label_count=20)
    assert other[0] != train


def test_a_papers_split_does_not_depend_on_the_papers_read_with_it():
    """The CS-only model and the all-of-arXiv one hold out the same papers of the CS file."""
    papers = [Paper(f"Title {i}", f"Abstract {i}", ("cs.CV",)) for i in range(600)]
    whole, _, _ = split(papers, seed=42, min_label_count=1)
    part, _, _ = split(papers[::3], seed=42, min_label_count=1)
    for kept, everything in zip(part, whole, strict=True):
        assert kept == [paper for paper in everything if paper in papers[::3]]
    # Only the text decides, not spacing or case: a paper keeps its split when re-exported.
    respaced = Paper("TITLE  0", "abstract\n0", ("cs.CV",))
    assert split_position(respaced, 42) == split_position(papers[0], 42)


def test_prepare_reports_counts_for_every_step(small_csv):
    splits = prepare(small_csv, seed=42, min_label_count=5)
    assert splits.counts["rows_read"] == 400
    assert splits.counts["train"] + splits.counts["val"] + splits.counts["test"] == 400
    assert splits.labels == ["cs.CL", "cs.CV", "cs.LG", "math.OC"]
    assert splits.dropped_codes["I.2.7"] == 80


def test_multi_hot_follows_label_order():
    matrix = multi_hot([Paper("t", "a", ("b", "a")), Paper("u", "c", ("c",))], ["a", "b"])
    np.testing.assert_array_equal(matrix, [[1, 1], [0, 0]])


def test_few_unparsable_terms_are_skipped_and_counted(tmp_path):
    rows = synthetic_rows(300)
    rows[10] = ("Broken", "abstract", "['cs.CV'")
    path = write_kaggle_csv(tmp_path / "a.csv", rows)
    papers, counts, _ = load_papers(path)
    assert counts["rows_unparsable_terms"] == 1 and len(papers) == 299
    assert read_papers(path).unparsable_rows == [11]  # named in the run's warning line
    assert describe_rows([11], 1) == "data row 11"
    assert describe_rows([3, 5], 40) == "data rows 3, 5 and 38 more"


def test_gzipped_csv_is_read(tmp_path):
    plain = write_kaggle_csv(tmp_path / "a.csv", synthetic_rows(50))
    packed = tmp_path / "a.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert len(load_papers(packed)[0]) == 50


def zipped(*members: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in members:
            archive.writestr(name, "titles,summaries,terms\nT,abstract,\"['cs.CV']\"\n")
    return buffer.getvalue()


SUFFIXES = {"bad gzip": ".csv.gz", "zip of two CSVs": ".zip", "bad zip": ".zip"}
SUFFIXES.update({"bad bz2": ".csv.bz2", "bad xz": ".csv.xz"})


def bad_file(tmp_path, kind):
    path = tmp_path / f"bad{SUFFIXES.get(kind, '.csv')}"
    if kind == "missing file":
        return path, "no such file"
    contents = {
        "empty file": (b"", "empty"),
        "header only": (b"titles,summaries,terms\n", "no rows"),
        "missing column": (
            b"titles,summaries\nT,abstract\n",
            "missing column(s) terms (found: 'titles', 'summaries')",
        ),
        "repeated column": (
            b"titles,summaries,terms,Terms\nT,abstract,\"['cs.LG']\",\"['math.CO']\"\n",
            "the header names 'terms' more than once",
        ),
        "repeated date column": (
            b"titles,summaries,terms,date, DATE\nT,abstract,\"['cs.LG']\",,2019-05-01\n",
            "the header names 'date' more than once",
        ),
        "binary garbage": (bytes(range(256)) * 40, "not a"),
        "broken quote": (
            b'titles,summaries,terms\nT,"never closed,x\nU,a,b\n',
            "EOF inside string",
        ),
        "bad gzip": (b"\x1f\x8b\x08\x00garbage" * 10, "gzip"),
        "zip of two CSVs": (zipped("a.csv", "b.csv"), "pass each CSV"),
        "bad zip": (b"PK\x03\x04garbage" * 10, "pass each CSV"),
        "bad bz2": (bz2.compress(b"titles,summaries,terms\n" * 50)[:40], "ends early"),
        "bad xz": (b"\xfd7zXZ\x00garbage" * 10, "pass each CSV"),
        "too many unparsable terms": (
            b"titles,summaries,terms\n" + b"".join(b"T%d,abstract,cs.CV\n" % i for i in range(20)),
            "20 of 20 rows have an unparsable 'terms' value (more than 1%: data rows 1, 2, 3, 4, "
            "5 and 15 more)",
        ),
        "no arXiv code": (
            b"titles,summaries,terms\nT,abstract,\"['I.2.7']\"\n",
            "no paper with an arXiv",
        ),
    }
    data, message = contents[kind]
    path.write_bytes(data)
    return path, message


BAD_KINDS = [
    "missing file",
    "empty file",
    "header only",
    "missing column",
    "repeated column",
    "repeated date column",
    "binary garbage",
    "broken quote",
    "bad gzip",
    "zip of two CSVs",
    "bad zip",
    "bad bz2",
    "bad xz",
    "too many unparsable terms",
    "no arXiv code",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_raises_one_line_error_naming_the_file(tmp_path, kind):
    path, message = bad_file(tmp_path, kind)
    with pytest.raises(DataError) as caught:
        prepare(path, seed=1, min_label_count=1)
    text = str(caught.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


def test_a_zip_holding_one_csv_or_an_xz_is_read(tmp_path):
    plain = write_kaggle_csv(tmp_path / "a.csv", synthetic_rows(50))
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
        archive.write(plain, "a.csv")
    (tmp_path / "a.csv.xz").write_bytes(lzma.compress(plain.read_bytes()))
    assert len(load_papers(tmp_path / "a.zip")[0]) == len(load_papers(tmp_path / "a.csv.xz")[0])
    assert len(load_papers(tmp_path / "a.zip")[0]) == 50


def test_too_little_data_after_filtering_is_an_error(tmp_path):
    path = write_kaggle_csv(tmp_path / "a.csv", synthetic_rows(30))
    with pytest.raises(DataError, match="too little data"):
        prepare(path, seed=1, min_label_count=1000)


def test_one_label_or_fewer_validation_papers_than_folds_is_an_error(tmp_path):
    # one label leaves nothing to tell apart; under five validation papers, a fold is empty
    one_label = [(f"T{i}", words_abstract(f"w{i}x"), "['cs.LG']") for i in range(60)]
    with pytest.raises(DataError, match="at least 2 labels and 5 validation papers"):
        prepare(write_kaggle_csv(tmp_path / "one.csv", one_label), seed=1, min_label_count=1)
    tiny = write_kaggle_csv(tmp_path / "tiny.csv", synthetic_rows(12))
    with pytest.raises(DataError, match="11/0/1 papers in train/val/test"):
        prepare(tiny, seed=1, min_label_count=1)


def write_rows(path, header, rows):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_aliases_and_legacy_archives_fold_and_unknown_codes_are_dropped_and_counted(tmp_path):
    path = write_kaggle_csv(
        tmp_path / "a.csv",
        [
            ("T1", "abstract one", "['cs.SY', 'eess.SY', 'math.MP']"),
            ("T2", "abstract two", "['cmp-lg', 'cs.XY', 'stat.TH']"),
            ("T3", "abstract three", "['cs.XY', 'I.2.7']"),
        ],
    )
    splits_input = load_files([path])
    papers, counts, dropped, loads = splits_input
    assert [p.labels for p in papers] == [("eess.SY", "math-ph"), ("cs.CL", "math.ST")]
    assert [p.primary for p in papers] == ["eess.SY", "cs.CL"]
    load = loads[str(path)]
    assert load.folded_codes == {
        "cs.SY -> eess.SY": 1, "math.MP -> math-ph": 1, "cmp-lg -> cs.CL": 1,
        "stat.TH -> math.ST": 1,
    }  # fmt: skip
    assert load.unknown_codes == {"cs.XY": 2}  # arXiv-shaped but not in the taxonomy: never kept
    respelled = write_kaggle_csv(
        tmp_path / "b.csv", [("T4", "abstract four", "['cs.lg', ' CS.CV ', 'Math.IT\u200b']")]
    )
    (paper,), _, nothing_dropped, loads = load_files([respelled])
    assert paper.labels == ("cs.LG", "cs.CV", "cs.IT") and not nothing_dropped
    assert loads[str(respelled)].folded_codes == {
        "cs.lg -> cs.LG": 1, "CS.CV -> cs.CV": 1, "Math.IT\u200b -> cs.IT": 1,
    }  # fmt: skip
    assert dropped == {"I.2.7": 1}
    assert counts["papers_without_arxiv_code"] == 1


REQUIRED = ["titles", "summaries", "terms"]


def test_several_files_are_deduplicated_across_and_counted_per_file(tmp_path):
    first = write_rows(
        tmp_path / "a.csv",
        REQUIRED,
        [
            ("Deep Nets for Vision", "first abstract", "['cs.LG']"),
            ("Other Nets for Vision", "second", "['cs.CV']"),
        ],
    )
    second = write_rows(
        tmp_path / "b.csv",
        ["titles", "summaries", "terms", "id", "date"],
        [
            ("deep nets for vision!", "another abstract", "['stat.ML']", "1", "2019-05-01"),
            ("Quantum", "qubits", "['quant-ph']", "2", "not a date"),
            ("Galaxies", "stars", "['astro-ph.GA']", "3", "2025-04-17T10:00:00"),
        ],
    )
    papers, counts, _, loads = load_files([first, second])
    assert counts["duplicates_merged"] == 1 and counts["papers_unique"] == 4
    assert papers[0].labels == ("cs.LG", "stat.ML") and papers[0].date == date(2019, 5, 1)
    assert [p.source for p in papers] == ["a.csv", "a.csv", "b.csv", "b.csv"]
    assert [p.date.isoformat() if p.date else None for p in papers[2:]] == [None, "2025-04-17"]
    assert loads[str(first)].counts["rows_read"] == 2 and loads[str(second)].counts == {
        "rows_read": 3, "rows_unparsable_terms": 0, "rows_empty_abstract": 0, "rows_dated": 2,
        "rows_unparsable_date": 1, "papers_without_arxiv_code": 0, "duplicates_merged": 1,
        "papers_kept": 2,
    }  # fmt: skip
    assert loads[str(first)].counts["papers_kept"] == 2


def test_rows_with_an_empty_abstract_are_counted_and_never_kept_or_merged(tmp_path):
    path = write_rows(
        tmp_path / "a.csv",
        REQUIRED,
        [
            ("Deep Nets for Vision", "", "['cs.LG']"),
            ("Deep Nets for Vision", "   ", "['cs.CV']"),
            ("Deep Nets for Vision", "\t\n", "['stat.ML']"),
            ("Galaxies", "stars form in clusters", "['astro-ph.GA']"),
        ],
    )
    papers, counts, _, loads = load_files([path])
    assert [(p.title, p.labels) for p in papers] == [("Galaxies", ("astro-ph.GA",))]
    assert counts["rows_empty_abstract"] == 3 and counts["duplicates_merged"] == 0
    assert loads[str(path)].counts["papers_kept"] == 1


def test_columns_are_found_whatever_their_case(tmp_path):
    path = write_rows(
        tmp_path / "a.csv",
        ["Titles", " summaries", "TERMS ", " Date"],
        [("Deep Nets for Vision", "first abstract", "['cs.LG']", "2019-05-01")],
    )
    (paper,), counts, _, _ = load_files([path])
    assert paper.date == date(2019, 5, 1) and counts["rows_dated"] == 1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2019-05-01", date(2019, 5, 1)),
        (" 2019-05-01T10:00:00Z ", date(2019, 5, 1)),
        ("2019-05-01 10:00", date(2019, 5, 1)),
        ("2019-05-01garbage", None),  # read as 2019-05-01 before: anything after is refused
        ("2019-05-0123", None),
        ("2019-02-29", None),
        ("201905011234", None),
        ("2019", date(2019, 1, 1)),  # ISO's reduced precision: its first day
        (" 2019-05 ", date(2019, 5, 1)),
        ("2019-13", None),
        ("2019-5", None),
        ("201905", None),
        ("1899", None),
        ("\uff11\uff19\uff19\uff15", None),  # fullwidth digits: ISO takes ASCII ones
        ("2019-W01", None),  # an ISO week date: 2018-12-31, the wrong year for the prior
        ("2019W011", None),
        ("2019-W01-1T10:00", None),
        ("2099-01-01", None),  # after tomorrow: not a paper's date
        ("0001-01-01", None),
        ("", None),
    ],
)
def test_parse_date_reads_iso_dates_years_and_months_in_range(raw, expected):
    assert parse_paper_date(raw) == expected


def test_a_file_of_only_duplicates_says_it_added_no_paper(tmp_path):
    rows = [
        ("Deep Nets for Vision", "first abstract", "['cs.LG']"),
        ("Other Nets for Vision", "second", "['cs.CV']"),
    ]
    first = write_rows(tmp_path / "a.csv", ["titles", "summaries", "terms"], rows)
    second = write_rows(tmp_path / "b.csv", ["titles", "summaries", "terms"], rows)
    _, counts, _, loads = load_files([first, second])
    assert counts["papers_unique"] == 2
    assert loads[str(second)].counts["papers_kept"] == 0
    assert loads[str(second)].counts["duplicates_merged"] == 2
    assert loads[str(first)].counts["duplicates_merged"] == 0


def test_files_of_the_same_name_keep_apart_in_the_per_file_figures(tmp_path):
    paths = []
    for month, code in (("2026-03", "cs.LG"), ("2026-04", "hep-th")):
        (tmp_path / month).mkdir()
        rows = [(f"{code} paper {i}", words_abstract(f"{code}{i}x"), f"['{code}']") for i in (1, 2)]
        paths.append(write_rows(tmp_path / month / "arxiv_data.csv", REQUIRED, rows))
    papers, _, _, loads = load_files(paths)
    assert [p.source for p in papers] == [str(paths[0])] * 2 + [str(paths[1])] * 2
    assert list(loads) == [str(path) for path in paths]


def test_an_unreadable_file_says_permission_denied(tmp_path, monkeypatch):
    import train.data

    path = write_kaggle_csv(tmp_path / "a.csv", synthetic_rows(5))

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(train.data.pd, "read_csv", denied)
    with pytest.raises(DataError, match=r"a\.csv: permission denied$"):
        prepare(path, seed=1, min_label_count=1)


def test_a_file_named_twice_is_read_once_and_named_by_its_file_name(tmp_path):
    """Library callers get the CLI's rule: one read per file, however it is spelled."""
    rows = [("Deep Nets", "first abstract", "['cs.LG']"), ("Other", "second", "['cs.CV']")]
    path = write_rows(tmp_path / "a.csv", ["titles", "summaries", "terms"], rows)
    (tmp_path / "sub").mkdir()
    papers, counts, _, loads = load_files([path, tmp_path / "sub" / ".." / "a.csv", path])
    assert list(loads) == [str(path)]
    assert counts["rows_read"] == 2 and counts["duplicates_merged"] == 0
    assert {paper.source for paper in papers} == {"a.csv"}
