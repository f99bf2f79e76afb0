"""The shared text module: cleaning, vocabulary, encoding, padding and JSON round trips."""

import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_handler import text
from lambda_handler.text import OOV_ID, PAD_ID, Tokenizer, pad, shipped_stopwords, words

STOP = shipped_stopwords()


def test_words_keep_digits_and_hyphenated_terms_and_drop_stopwords():
    tokens = words("A 3D Multi-Agent LLM", "We train the LLM on 2024 images (x-ray).", STOP)
    assert tokens == ["3d", "multi-agent", "llm", "train", "llm", "images", "x-ray"]


def test_words_drop_pure_numbers_and_strip_accents():
    assert words("Schrödinger équation", "1 2-3 1e5 10x", STOP) == [
        "schrodinger",
        "equation",
        "1e5",
        "10x",
    ]


def test_words_of_only_stopwords_and_punctuation_are_empty():
    assert words("", "  the of and ... !!! $$ ", STOP) == []


def test_fit_ranks_by_count_then_alphabetically_and_caps_the_size():
    documents = [["beta", "alpha", "gamma"], ["gamma", "beta", "delta"], ["gamma"]]
    tokenizer = Tokenizer.fit(documents, vocab_size=5, stopwords=STOP)
    assert tokenizer.vocabulary == ("gamma", "beta", "alpha")
    assert tokenizer.size == 5


def test_encode_maps_unknown_words_to_oov_and_keeps_the_first_max_length_ids():
    tokenizer = Tokenizer(("graph", "neural"), STOP, max_length=3)
    assert tokenizer.encode("Neural graph", "") == [2 + 1, 2 + 0]
    assert tokenizer.encode("neural quantum graph networks graph", "") == [3, OOV_ID, 2]


def test_pad_pre_pads_to_the_longest_or_given_length():
    assert pad([[5, 6, 7], [8]]) == [[5, 6, 7], [PAD_ID, PAD_ID, 8]]
    assert pad([[5, 6, 7]], length=2) == [[5, 6]]
    assert pad([]) == []


def test_tokenizer_round_trips_through_json_without_pickle(tmp_path):
    tokenizer = Tokenizer.fit([["graph", "neural", "graph"]], 10, STOP, max_length=7)
    path = tmp_path / "tokenizer.json"
    tokenizer.save(path)
    stored = json.loads(path.read_text())
    assert stored["padding"] == "pre" and stored["oov_id"] == OOV_ID
    assert stored["vocabulary"] == ["graph", "neural"]
    assert Tokenizer.load(path) == tokenizer
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    ("key", "value"),
    [("format_version", 99), ("padding", "post"), ("oov_id", 7), ("token_pattern", r"\w+")],
)
def test_from_dict_refuses_settings_this_code_does_not_implement(key, value):
    data = Tokenizer(("a1",), STOP).to_dict()
    data[key] = value
    with pytest.raises(ValueError, match=key):
        Tokenizer.from_dict(data)


def test_from_dict_refuses_a_malformed_vocabulary():
    data = Tokenizer(("a1",), STOP).to_dict()
    data["vocabulary"] = ["ok", 3]
    with pytest.raises(ValueError, match="vocabulary"):
        Tokenizer.from_dict(data)
    with pytest.raises(ValueError, match="duplicate"):
        Tokenizer(("x", "x"), STOP)


def test_shipped_stopwords_are_nltks_english_list():
    assert len(STOP) == 198
    assert {"the", "and", "don't", "should've", "you've", "ain"} <= STOP


def test_shipped_copy_equals_nltk_corpus_when_present():
    corpus = pytest.importorskip("nltk.corpus", reason="nltk is not installed")
    try:
        nltk_words = corpus.stopwords.words("english")
    except LookupError:
        pytest.skip("nltk's stopwords corpus is not installed (nltk.download needs internet)")
    assert frozenset(nltk_words) == STOP


@given(st.text(max_size=200))
def test_normalize_fast_path_equals_the_unicode_path(value):
    decomposed = unicodedata.normalize("NFKD", value).replace("\u2212", "-")
    slow = "".join(
        "-" if c in "\u2010\u2012" else c
        for c in decomposed
        if not unicodedata.combining(c) and unicodedata.category(c) != "Cf"
    )
    assert text.normalize(value) == slow.lower()


def test_text_pasted_from_a_pdf_reads_as_typed():
    typed = words("Multi-agent classification", "An e-print on x-ray and a-b signs.", STOP)
    pasted = (
        "Multi\u2010agent classi\u00adfication",
        "An e\u2011print\u200b on x\u2012ray and a\u2212b signs.",
    )
    assert words(*pasted, STOP) == typed
    assert typed == ["multi-agent", "classification", "e-print", "x-ray", "a-b", "signs"]
    assert words("", "Bose\u2013Einstein", STOP) == ["bose", "einstein"]  # an en dash separates


# Text made of the characters where a tokenizer can go wrong: hyphen runs at either end, digits,
# upper case (not a token character: `words` lower-cases first), other ASCII, whitespace, and
# non-ASCII letters, dashes and a combining accent.
TRICKY = st.text(
    alphabet=st.sampled_from("aab9Z---- _.\n\t\x0b\r\x1c\x85é\u2013ß\u0301\u2028"), max_size=40
)


@settings(max_examples=2000)
@given(st.one_of(TRICKY, st.text(max_size=80)))
def test_tokens_are_what_the_documented_pattern_finds(value):
    assert text.tokens(value) == text._TOKEN.findall(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("state-of-the-art", ["state-of-the-art"]),
        ("-a--b- c---d -", ["a", "b", "c", "d"]),
        ("x-ray\u2013based naïve Über", ["x-ray", "based", "na", "ve", "ber"]),
        ("", []),
    ],
)
def test_tokens_split_at_everything_but_letters_digits_and_inner_hyphens(value, expected):
    assert text.tokens(value) == text._TOKEN.findall(value) == expected
