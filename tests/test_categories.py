"""Tests for train/categories.py: the taxonomy table, the category filter and the name lookup."""

from __future__ import annotations

import re

import pytest

from train.categories import CATEGORY_NAMES, category_name, is_arxiv_category

# arXiv's code grammar, written out independently of the module under test.
ARXIV_CODE = re.compile(r"[a-z]+(?:-[a-z]+)?(?:\.(?:[A-Z]{2}|[a-z]+(?:-[a-z]+)?))?")


def test_every_code_follows_the_arxiv_grammar_and_has_a_clean_name() -> None:
    for code, name in CATEGORY_NAMES.items():
        assert ARXIV_CODE.fullmatch(code), code
        assert name and name == name.strip() and "  " not in name, code


def test_taxonomy_covers_every_archive_and_its_size() -> None:
    archives = {code.partition(".")[0] for code in CATEGORY_NAMES}
    current = {
        "cs", "econ", "eess", "math", "astro-ph", "cond-mat", "gr-qc", "hep-ex", "hep-lat",
        "hep-ph", "hep-th", "math-ph", "nlin", "nucl-ex", "nucl-th", "physics", "quant-ph",
        "q-bio", "q-fin", "stat",
    }  # fmt: skip
    legacy = {
        "acc-phys", "adap-org", "alg-geom", "ao-sci", "atom-ph", "bayes-an", "chao-dyn",
        "chem-ph", "cmp-lg", "comp-gas", "dg-ga", "funct-an", "mtrl-th", "patt-sol", "plasm-ph",
        "q-alg", "solv-int", "supr-con",
    }  # fmt: skip
    assert archives == current | legacy
    counts = {archive: 0 for archive in archives}
    for code in CATEGORY_NAMES:
        counts[code.partition(".")[0]] += 1
    assert counts["cs"] == 40
    assert counts["math"] == 32
    assert counts["physics"] == 22
    assert counts["astro-ph"] == 7  # six subjects and the legacy bare archive
    assert counts["cond-mat"] == 10
    assert len(CATEGORY_NAMES) == 176


def test_each_archive_writes_its_subjects_in_one_style() -> None:
    styles: dict[str, set[bool]] = {}
    for code in CATEGORY_NAMES:
        archive, dot, subject = code.partition(".")
        if dot:
            styles.setdefault(archive, set()).add(subject.isupper())
    assert all(len(style) == 1 for style in styles.values()), styles


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("cs.CV", "Computer Vision and Pattern Recognition"),
        ("cs.LG", "Machine Learning"),
        ("stat.ML", "Machine Learning"),
        ("math.OC", "Optimization and Control"),
        ("hep-th", "High Energy Physics - Theory"),
        ("astro-ph.GA", "Astrophysics of Galaxies"),
        ("astro-ph", "Astrophysics"),
        ("cond-mat.mtrl-sci", "Materials Science"),
        ("cond-mat", "Condensed Matter"),
        ("physics.ao-ph", "Atmospheric and Oceanic Physics"),
        ("q-bio.NC", "Neurons and Cognition"),
        ("q-fin.EC", "Economics"),
        ("econ.GN", "General Economics"),
        ("math.IT", "Information Theory"),
        ("cs.IT", "Information Theory"),
        ("math.ST", "Statistics Theory"),
        ("stat.TH", "Statistics Theory"),
        ("cs.SY", "Systems and Control"),
        ("eess.SY", "Systems and Control"),
        ("cs.NA", "Numerical Analysis"),
        ("math.MP", "Mathematical Physics"),
        ("cmp-lg", "Computation and Language"),
        ("solv-int", "Exactly Solvable and Integrable Systems"),
        ("bayes-an", "Bayesian Analysis"),
    ],
)
def test_category_name_is_the_official_name(code: str, name: str) -> None:
    assert category_name(code) == name


@pytest.mark.parametrize(
    "code",
    [
        "cs.CV", "math.OC", "hep-th", "astro-ph.GA", "cond-mat.mtrl-sci", "physics.ao-ph",
        "q-bio.NC", "q-fin.EC", "eess.IV", "nlin.CD", "chao-dyn", "astro-ph", "cond-mat",
    ],
)  # fmt: skip
def test_arxiv_categories_are_recognised(code: str) -> None:
    assert is_arxiv_category(code)


@pytest.mark.parametrize(
    "code",
    [
        "I.2.7",  # ACM class
        "68T50",  # MSC code
        "14J60 (Primary)",
        "62H30, 62P10",
        "na",
        "",
        "cs",  # bare archive that is not itself a category
        "math",
        "physics",
        "CS.CV",
        "cs.cv",  # wrong case for the cs archive
        "cs.CV ",  # callers strip, this module does not
        " cs.CV",
        "cs.CVX",
        "cs.",
        "cond-mat.XX",  # cond-mat subjects are lower-case words
        "hep-th.XX",  # hep-th has no subject classes
        "foo.CV",
        "math.OC.extra",
    ],
)
def test_other_terms_are_rejected(code: str) -> None:
    assert not is_arxiv_category(code)


def test_unknown_subject_of_a_known_archive_is_accepted_and_named_by_its_code() -> None:
    assert is_arxiv_category("cs.XX")
    assert is_arxiv_category("physics.new-field")
    assert category_name("cs.XX") == "cs.XX"


def test_category_name_falls_back_to_the_code() -> None:
    assert category_name("I.2.7") == "I.2.7"
    assert category_name("") == ""


def test_filtering_raw_kaggle_terms_keeps_only_arxiv_categories() -> None:
    terms = ["cs.CV", "I.2.7", "68T50", "cs.LG", "14J60 (Primary)", "na", "stat.ML", "eess.IV"]
    assert [term for term in terms if is_arxiv_category(term)] == [
        "cs.CV",
        "cs.LG",
        "stat.ML",
        "eess.IV",
    ]


def test_canonical_folds_each_alias_pair_and_legacy_archive_into_a_known_category():
    from train.categories import ALIASES, LEGACY, archive, canonical

    for alias, code in {**ALIASES, **LEGACY}.items():
        assert canonical(alias) == code and code in CATEGORY_NAMES and canonical(code) == code
    assert canonical("cs.CV") == "cs.CV"
    assert canonical("cs.XX") is None and canonical("I.2.7") is None  # never invented
    assert {archive(code) for code in ALIASES} == {"math", "stat", "q-fin", "cs"}
    assert (archive("astro-ph.GA"), archive("hep-th"), archive("math-ph")) == (
        "astro-ph", "hep-th", "math-ph",
    )  # fmt: skip


def test_other_spellings_of_known_codes_are_respelled_and_nothing_else():
    from train.categories import CATEGORY_NAMES, respelled

    assert len({code.casefold() for code in CATEGORY_NAMES}) == len(CATEGORY_NAMES)
    for spelling, code in [
        ("cs.lg", "cs.LG"),
        (" CS.CV ", "cs.CV"),
        ("cs.LG\u200b", "cs.LG"),
        ("Math.IT", "math.IT"),
        ("HEP-TH", "hep-th"),
        ("cond-mat.MTRL-SCI", "cond-mat.mtrl-sci"),
    ]:
        assert respelled(spelling) == code
    for other in ("cs.XX", "68T05", "I.2.7", "cs", "cs.L G x", ""):
        assert respelled(other) is None
