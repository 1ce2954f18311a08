"""cl_toolkit.data: row counts from the data folder's SOURCE.md files, value ranges,
text cleaning, and the one clear error for a dataset that is not there."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from cl_toolkit import data
from cl_toolkit.data import (
    DatasetUnavailable,
    STSPairs,
    load_nli_triplets,
    load_sentences,
    load_sickr,
    load_sts,
    load_sts_year,
    load_stsb,
)

pytestmark = pytest.mark.usefixtures("data_dir")


@pytest.fixture(autouse=True)
def empty_hub_cache(tmp_path_factory, monkeypatch):
    """Offline loaders may answer from the Hugging Face hub cache; these tests are about the
    data folder, so they see an empty cache whatever this machine has downloaded."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("empty_hub_cache")))


# --------------------------------------------------------------------------- STS-B and SICK-R
@pytest.mark.parametrize("split, n", [("train", 5749), ("dev", 1500), ("test", 1379)])
def test_stsb_row_counts_and_scores(split, n):
    pairs = load_stsb(split)
    assert len(pairs) == len(pairs.sentences1) == len(pairs.sentences2) == len(pairs.subsets) == n
    assert all(0.0 <= s <= 5.0 for s in pairs.scores)
    assert min(pairs.scores) == 0.0 and max(pairs.scores) == 5.0
    # the 8th/9th licence columns are not glued onto the second sentence
    assert not any("\t" in s for s in pairs.sentences1 + pairs.sentences2)
    assert all(s.strip() for s in pairs.sentences1 + pairs.sentences2)


def test_stsb_first_test_row_is_read_verbatim():
    pairs = load_stsb("test")
    assert (pairs.sentences1[0], pairs.sentences2[0], pairs.scores[0]) == (
        "A girl is styling her hair.",
        "A girl is brushing her hair.",
        2.5,
    )


def test_stsb_quotes_are_literal(data_dir):
    # csv.QUOTE_NONE: a sentence that starts with a quote keeps it, and no row swallows the next one.
    raw = (data_dir / "stsbenchmark" / "sts-train.csv").read_text(encoding="utf-8").split("\n")
    quoted = [line.split("\t")[5] for line in raw if line and line.split("\t")[5].startswith('"')]
    assert quoted, "expected some sentences that start with a quote in STS-B train"
    assert set(quoted) <= set(load_stsb("train").sentences1)


def test_split_aliases():
    assert load_stsb("validation").scores == load_stsb("dev").scores
    assert load_sickr("val").scores == load_sickr("dev").scores


@pytest.mark.parametrize("split, n", [("train", 4500), ("dev", 500), ("test", 4927)])
def test_sickr_row_counts_and_scores(split, n):
    pairs = load_sickr(split)
    assert len(pairs) == n
    assert all(1.0 <= s <= 5.0 for s in pairs.scores)
    assert all(s == s.strip() and s for s in pairs.sentences1 + pairs.sentences2)  # no CR left from CRLF lines


# --------------------------------------------------------------------------- STS12-16
@pytest.mark.parametrize("name, n", [("sts12", 3108), ("sts13", 1500), ("sts14", 3750), ("sts15", 3000), ("sts16", 1186)])
def test_sts_years_scored_pairs(name, n):
    pairs = load_sts_year(name)
    assert len(pairs) == len(pairs.subsets) == n
    assert all(0.0 <= s <= 5.0 for s in pairs.scores)
    assert all(s.strip() for s in pairs.sentences1 + pairs.sentences2)
    assert load_sts(name, "test").scores == pairs.scores


@pytest.mark.parametrize(
    "name, sizes",
    [
        ("sts15", {"answers-forums": 375, "answers-students": 750, "belief": 375, "headlines": 750, "images": 750}),
        ("sts16", {"answer-answer": 254, "headlines": 249, "plagiarism": 230, "postediting": 244, "question-question": 209}),
        ("sts13", {"FNWN": 189, "OnWN": 561, "headlines": 750}),
    ],
)
def test_sts_year_subset_sizes(name, sizes):
    pairs = load_sts_year(name)
    assert Counter(pairs.subsets) == sizes
    part = pairs.subset("headlines")
    assert len(part) == sizes["headlines"] and set(part.subsets) == {"headlines"}


def test_sts16_drops_the_attribution_columns():
    pairs = load_sts_year("sts16")
    assert not any("\t" in s for s in pairs.sentences1 + pairs.sentences2)


def test_load_sts_dispatches():
    assert load_sts("stsb", "dev").scores == load_stsb("dev").scores
    assert load_sts("sickr", "test").scores == load_sickr("test").scores


# --------------------------------------------------------------------------- STSPairs
def test_stspairs_sentences_distinct_in_first_seen_order():
    pairs = STSPairs(["a", "b", "a"], ["c", "a", "d"], [1.0, 2.0, 3.0], ["x", "y", "x"])
    assert pairs.sentences() == ["a", "b", "c", "d"]
    sub = pairs.subset("x")
    assert (sub.sentences1, sub.sentences2, sub.scores) == (["a", "a"], ["c", "d"], [1.0, 3.0])
    with pytest.raises(ValueError, match="no subset 'z'"):
        pairs.subset("z")


# --------------------------------------------------------------------------- SNLI triplets
def test_nli_triplets_count_and_clean_text():
    triplets = load_nli_triplets()
    assert len(triplets) == 2943 + 2921
    for t in triplets:
        assert len(t) == 3
        for s in t:
            assert s and s == s.strip(), repr(s)  # the files end every line with a space
    assert len(load_nli_triplets(limit=10)) == 10
    assert load_nli_triplets(limit=10) == triplets[:10]


def test_nli_triplets_have_the_right_labels(data_dir):
    # independent oracle: the labelled (premise, hypothesis) pairs straight from the files
    labelled = set()
    for split in ("dev", "test"):
        read = lambda f: (data_dir / "snli" / f"{f}.{split}").read_text(encoding="utf-8").split("\n")
        for p, h, y in zip(read("s1"), read("s2"), read("labels")):
            labelled.add((p.strip(), h.strip(), y.strip()))
    triplets = load_nli_triplets()
    for premise, entailment, contradiction in triplets[:: 97]:
        assert (premise, entailment, "entailment") in labelled
        assert (premise, contradiction, "contradiction") in labelled
    # triplets keep the order of the files: the first premise of SNLI dev comes first
    assert triplets[0][0] == "Two women are embracing while holding to go packages ."


# --------------------------------------------------------------------------- unlabelled sentences
def test_wiki1m_head_drops_empty_and_truncated_lines(data_dir):
    raw = (data_dir / "wiki1m_head" / "wiki1m_for_simcse.head1280000B.txt").read_bytes()
    lines = raw.decode("utf-8").split("\n")
    assert len(lines) == 11915 and not raw.endswith(b"\n")  # 11,914 complete lines + a truncated one
    complete = [s.strip() for s in lines[:-1] if s.strip()]
    sentences = load_sentences("wiki1m")
    assert sentences == complete
    assert len(sentences) == 11_914 - sum(1 for s in lines[:-1] if not s.strip())
    assert sentences[0] == "YMCA in South Australia"
    assert not sentences[-1].endswith("elderly citizen")
    assert all(not s.endswith("elderly citizen") for s in sentences[-3:])
    assert load_sentences("wiki1m", limit=5) == sentences[:5]


def test_stsb_train_sentences():
    sentences = load_sentences("stsb-train")
    assert sentences == load_stsb("train").sentences()
    assert len(sentences) == len(set(sentences))
    assert len(sentences) > 5749  # more distinct sentences than pairs
    assert load_sentences("stsb-train", limit=3) == sentences[:3]


# --------------------------------------------------------------------------- bad names and splits
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: load_stsb("tset"), "split must be one of"),
        (lambda: load_sickr("validate"), "split must be one of"),
        (lambda: load_sts("sts12", "train"), "split must be one of"),
        (lambda: load_sts("sts17"), "unknown STS task"),
        (lambda: load_sts_year("stsb"), "name must be one of"),
        (lambda: load_sentences("wiki2m"), "unknown corpus"),
    ],
    ids=["stsb-split", "sickr-split", "sts12-train", "sts17", "year-name", "corpus"],
)
def test_bad_names_and_splits_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- a missing dataset
MISSING = {
    "stsb": (lambda: load_stsb("test"), "stsbenchmark"),
    "sickr": (lambda: load_sickr("test"), "sick"),
    "sts14": (lambda: load_sts_year("sts14"), "sts12-16"),
    "nli": (lambda: load_nli_triplets(), "snli"),
    "wiki1m": (lambda: load_sentences("wiki1m"), "wiki1m_head"),
}


@pytest.mark.parametrize("name", sorted(MISSING))
def test_missing_dataset_fails_at_once_with_a_clear_message(name, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CL_DATA_DIR", str(tmp_path))
    call, folder = MISSING[name]
    t0 = time.perf_counter()
    with pytest.raises(DatasetUnavailable) as info:
        call()
    assert time.perf_counter() - t0 < 5.0  # no hub retries
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert f"dataset {name!r}" in message
    assert str(tmp_path.resolve() / folder) in message  # the folder looked in
    assert "offline" in message and "CL_DATA_DIR" in message  # why, and how to fix it


def test_data_dir_follows_cl_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CL_DATA_DIR", str(tmp_path))
    assert data.data_dir() == tmp_path.resolve()
