"""cl_toolkit.data: row counts from the data folder's SOURCE.md files, value ranges,
text cleaning, the one clear error for a dataset that is not there, a hub error that is
never answered with local files, and no file left open."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from cl_toolkit import data
from cl_toolkit import hub
from cl_toolkit.data import (
    TEXT_SOURCES,
    TREC_COARSE,
    TREC_FINE,
    WNUT17_TYPES,
    DatasetUnavailable,
    HubDatasetError,
    LabelledTexts,
    STSPairs,
    load_ag_news,
    load_nli_triplets,
    load_sentences,
    load_sickr,
    load_sst2,
    load_sts,
    load_sts_year,
    load_stsb,
    load_text_corpus,
    load_trec,
    load_wnut17,
    load_word_similarity,
    load_xquad_en,
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
    "trec": (lambda: load_trec("train"), "trec"),
    "sst2": (lambda: load_sst2("dev"), "sst2"),
    "ag_news": (lambda: load_ag_news("test"), "ag_news"),
    "wnut17": (lambda: load_wnut17("test"), "wnut17"),
    "xquad_en": (lambda: load_xquad_en(), "xquad_en"),
    "nq": (lambda: data.load_nq_pairs(), "natural_questions"),
    "wordsim353": (lambda: load_word_similarity("wordsim353"), "word_similarity"),
    "simlex999": (lambda: load_word_similarity("simlex999"), "word_similarity"),
    "men": (lambda: load_word_similarity("men"), "word_similarity"),
}


@pytest.mark.parametrize("name", sorted(MISSING))
def test_missing_dataset_fails_at_once_with_a_clear_message(name, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CL_DATA_DIR", str(tmp_path))
    call, folder = MISSING[name]
    t0 = time.perf_counter()
    with pytest.raises(DatasetUnavailable) as info:
        call()
    assert time.perf_counter() - t0 < 1.0  # no hub retries
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert f"dataset {name!r}" in message
    assert str(tmp_path.resolve() / folder) in message  # the folder looked in
    assert f"CL_DATA_DIR={tmp_path}" in message  # where it looked, and how to fix it
    assert ("offline" in message) != (folder == "word_similarity")  # why: offline, or no hub copy at all


def test_data_dir_follows_cl_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CL_DATA_DIR", str(tmp_path))
    assert data.data_dir() == tmp_path.resolve()


def test_text_corpus_fails_with_the_missing_part(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CL_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetUnavailable, match="dataset 'stsb'"):
        load_text_corpus(("stsb",))


# --------------------------------------------------------------------------- online, the hub fails
def _broken(*args, **kwargs):
    raise KeyError("injected hub failure")


HUB_CALLS = {
    # name in the message: (call, hub repo in the message, the data module's hub function to break)
    "nli": (lambda: load_nli_triplets(), "princeton-nlp/datasets-for-simcse", "hub_file"),
    "wiki1m": (lambda: load_sentences("wiki1m"), "princeton-nlp/datasets-for-simcse", "hub_file"),
    "stsb": (lambda: load_stsb("test"), "sentence-transformers/stsb", "load_hub_dataset"),
    "sickr": (lambda: load_sickr("test"), "mteb/sickr-sts", "load_hub_dataset"),
    "sts12": (lambda: load_sts_year("sts12"), "mteb/sts12-sts", "load_hub_dataset"),
    "trec": (lambda: load_trec("test"), "CogComp/trec", "load_hub_dataset"),
    "sst2": (lambda: load_sst2("dev"), "stanfordnlp/sst2", "load_hub_dataset"),
    "sst2-test": (lambda: load_sst2("test"), "SetFit/sst2", "load_hub_dataset"),
    "ag_news": (lambda: load_ag_news("test"), "fancyzhx/ag_news", "load_hub_dataset"),
    "wnut17": (lambda: load_wnut17("dev"), "leondz/wnut_17", "load_hub_dataset"),
    "xquad_en": (lambda: load_xquad_en(), "google/xquad", "load_hub_dataset"),
    "snli": (lambda: load_text_corpus(("snli",)), "stanfordnlp/snli", "load_hub_dataset"),
    "nq": (lambda: data.load_nq_pairs(10), "sentence-transformers/natural-questions", "load_hub_dataset"),
}


@pytest.mark.parametrize("name", sorted(HUB_CALLS))
def test_online_hub_failure_is_an_error_naming_dataset_and_cause(name, monkeypatch):
    """Before, every hub exception was swallowed and local files returned: with a KeyError in
    the hub path, load_nli_triplets() gave 5,864 SNLI triplets instead of 275,601."""
    call, repo, function = HUB_CALLS[name]
    monkeypatch.setattr(hub, "is_offline", lambda: False)
    monkeypatch.setattr(data, function, _broken)
    assert (data.data_dir() / "snli").is_dir()  # the local copies are there, and must not be used
    result = None
    with pytest.raises(HubDatasetError) as info:
        result = call()
    assert result is None
    message = str(info.value)
    dataset = "sst2" if name == "sst2-test" else name
    assert f"dataset {dataset!r}" in message and repo in message
    assert "KeyError" in message and "injected hub failure" in message
    assert isinstance(info.value.__cause__, KeyError)


def _simcse_cache(root, content: str):
    """A hub cache holding princeton-nlp/datasets-for-simcse's nli_for_simcse.csv."""
    repo = root / "datasets--princeton-nlp--datasets-for-simcse"
    revision = "1" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    (repo / "snapshots" / revision).mkdir(parents=True)
    (repo / "snapshots" / revision / "nli_for_simcse.csv").write_text(content, encoding="utf-8")


def test_offline_nli_from_the_hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    _simcse_cache(tmp_path, "sent0,sent1,hard_neg\nA man sleeps.,A person rests.,A man runs.\n")
    assert load_nli_triplets() == [("A man sleeps.", "A person rests.", "A man runs.")]


def test_offline_a_broken_hub_cache_copy_is_not_replaced_by_snli(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    _simcse_cache(tmp_path, "premise,hypothesis\na,b\n")  # other columns: a KeyError when read
    with pytest.raises(HubDatasetError, match="dataset 'nli'.*KeyError"):
        load_nli_triplets()


# --------------------------------------------------------------------------- no file left open
ALL_LOADERS = """
from cl_toolkit.data import *
load_stsb("test"); load_sickr("dev"); load_sts_year("sts16"); load_nli_triplets(); load_sentences("wiki1m")
load_trec("test", fine=True); load_sst2("dev"); load_ag_news(); load_wnut17("dev"); load_xquad_en()
for name in ("wordsim353", "simlex999", "men"):
    load_word_similarity(name)
"""


def test_no_file_is_left_open_in_process(monkeypatch):
    import gc
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        load_nli_triplets()  # it used to leave 6 files open per call
        load_sentences("wiki1m")
        load_sts_year("sts16")
        load_trec("train")
        load_sst2("test")
        load_ag_news()
        load_wnut17("test")
        load_xquad_en()
        load_word_similarity("men")
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_no_file_is_left_open_under_python_dev_mode():
    import os
    import subprocess
    import sys

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    run = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-c", ALL_LOADERS + "import gc; gc.collect()"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "ResourceWarning" not in run.stderr, run.stderr[-2000:]


# --------------------------------------------------------------------------- LabelledTexts
def test_labelled_texts_subset_and_checks():
    data_ = LabelledTexts(["a", "b", "c"], [0, 1, 0], ["neg", "pos"])
    assert len(data_) == 3
    sub = data_.subset([2, 0])
    assert (sub.texts, sub.labels, sub.label_names) == (["c", "a"], [0, 0], ["neg", "pos"])
    assert data_.counts() == {"neg": 2, "pos": 1}
    with pytest.raises(ValueError, match="differ in length"):
        LabelledTexts(["a"], [0, 1], ["neg", "pos"])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        LabelledTexts(["a"], [2], ["neg", "pos"])


# --------------------------------------------------------------------------- TREC
@pytest.mark.parametrize(
    "split, counts, first",
    [
        ("train", {"ABBR": 86, "ENTY": 1250, "DESC": 1162, "HUM": 1223, "LOC": 835, "NUM": 896},
         ("How did serfdom develop in and then leave Russia ?", "DESC")),
        ("test", {"ABBR": 9, "ENTY": 94, "DESC": 138, "HUM": 65, "LOC": 81, "NUM": 113},
         ("How far is it from Denver to Aspen ?", "NUM")),
    ],
)
def test_trec_coarse_counts_from_source_md(split, counts, first):
    trec = load_trec(split)
    assert len(trec) == sum(counts.values()) == {"train": 5452, "test": 500}[split]
    assert trec.label_names == list(TREC_COARSE) and trec.counts() == counts
    assert (trec.texts[0], trec.label_names[trec.labels[0]]) == first


def test_trec_fine_labels(data_dir):
    fine = load_trec("train", fine=True)
    assert len(fine) == 5452 and fine.label_names == list(TREC_FINE) and len(TREC_FINE) == 50
    assert set(fine.labels) == set(range(50))  # every fine class occurs in train
    assert fine.label_names[fine.labels[0]] == "DESC:manner"
    coarse = load_trec("train")
    assert fine.texts == coarse.texts
    assert all(fine.label_names[f].split(":")[0] == coarse.label_names[c] for f, c in zip(fine.labels, coarse.labels))
    # independent oracle: the raw first field of every line (latin-1, as SentEval reads it)
    raw = (data_dir / "trec" / "train_5500.label").read_bytes().decode("latin-1").split("\n")
    assert [line.split(" ", 1)[0] for line in raw if line.strip()] == [fine.label_names[y] for y in fine.labels]
    assert any("\xf0" in t for t in fine.texts)  # the one 0xF0 byte survives as 'ð'


# --------------------------------------------------------------------------- SST-2
@pytest.mark.parametrize(
    "split, n, neg, pos, first",
    [
        ("train", 67349, 29780, 37569, ("hide new secretions from the parental units", 0)),
        ("dev", 872, 428, 444, ("it 's a charming and often affecting journey .", 1)),
        ("test", 1821, 912, 909, ("uneasy mishmash of styles and genres .", 0)),
    ],
)
def test_sst2_counts_from_source_md(split, n, neg, pos, first):
    sst = load_sst2(split)
    assert len(sst) == n and sst.counts() == {"negative": neg, "positive": pos}
    assert (sst.texts[0], sst.labels[0]) == first
    assert all(t == t.strip() and t and "\t" not in t for t in sst.texts)


def test_sst2_sentences_only():
    train = load_sst2("train")
    sentences = load_sst2("train", sentences_only=True)
    assert len(sentences) == 6885 and len(set(sentences.texts)) == 6885  # SST-2 has 6,920 train sentences
    assert set(sentences.texts) <= set(train.texts)
    # every train row is a token span of some whole sentence ...
    padded = [f" {s} " for s in sentences.texts]
    for phrase in train.texts[::499]:
        assert any(f" {phrase} " in s for s in padded), phrase
    # ... and no whole sentence is a span of another row
    assert sentences.texts[0].startswith("swimming is above all about")
    assert sum(t.endswith((".", "!", "?")) for t in sentences.texts) / len(sentences) > 0.95
    assert load_sst2("dev", sentences_only=True).texts == load_sst2("dev").texts


# --------------------------------------------------------------------------- AG News
def test_ag_news_test_split():
    ag = load_ag_news("test")
    assert len(ag) == 7600 and ag.counts() == {"World": 1900, "Sports": 1900, "Business": 1900, "Sci/Tech": 1900}
    assert ag.texts[0].startswith("Fears for T N pension after talks Unions representing workers at Turner")
    assert ag.label_names[ag.labels[0]] == "Business"
    assert not any("\\" in t for t in ag.texts)  # the original's line breaks became spaces
    assert "-- A second team of rocketeers competing" in ag.texts[1]  # was "second\\team"


def test_ag_news_train_is_online_only(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetUnavailable, match="test split only.*120,000 rows.*fancyzhx/ag_news"):
        load_ag_news("train")
    with pytest.raises(ValueError, match="split must be one of"):
        load_ag_news("dev")


# --------------------------------------------------------------------------- WNUT-17
@pytest.mark.parametrize(
    "split, sentences, tokens, entities",
    [("train", 3394, 62730, 1975), ("dev", 1009, 15733, 836), ("test", 1287, 23394, 1079)],
)
def test_wnut17_counts_from_source_md(split, sentences, tokens, entities):
    rows = load_wnut17(split)
    assert len(rows) == sentences
    assert sum(len(t) for t, _ in rows) == tokens
    assert all(len(t) == len(y) and t for t, y in rows)
    tags = Counter(tag for _, y in rows for tag in y)
    assert sum(n for tag, n in tags.items() if tag.startswith("B-")) == entities
    assert set(tags) == {"O"} | {f"{p}-{t}" for p in "BI" for t in WNUT17_TYPES}
    assert all(tok.strip() for t, _ in rows for tok in t)


def test_wnut17_first_sentence_and_bio_order():
    tokens, tags = load_wnut17("train")[0]
    assert tokens[:5] == ["@paulwalk", "It", "'s", "the", "view"] and tags[:5] == ["O"] * 5
    for split in ("train", "dev", "test"):
        for _, y in load_wnut17(split):
            for prev, tag in zip(["O"] + y, y):  # an I- tag continues an entity of its own type
                if tag.startswith("I-"):
                    assert prev[2:] == tag[2:], (prev, tag)
    assert len(WNUT17_TYPES) == 6


# --------------------------------------------------------------------------- XQuAD
def test_xquad_en(data_dir):
    rows = load_xquad_en()
    assert len(rows) == 1190 and len({r["context"] for r in rows}) == 240
    assert len({r["id"] for r in rows}) == 1190 and len({r["title"] for r in rows}) == 48
    first = rows[0]
    assert (first["id"], first["question"], first["answers"], first["answer_starts"], first["title"]) == (
        "56beb4343aeaaa14008c925b", "How many points did the Panthers defense surrender?", ["308"], [34], "Super_Bowl_50",
    )
    assert set(first) == {"id", "question", "context", "answers", "answer_starts", "title"}
    for r in rows:  # every answer is the span of its paragraph at its offset
        assert r["answers"] and len(r["answers"]) == len(r["answer_starts"])
        for text, start in zip(r["answers"], r["answer_starts"]):
            assert r["context"][start : start + len(text)] == text


# --------------------------------------------------------------------------- word similarity
@pytest.mark.parametrize(
    "name, n, first, low, high",
    [
        ("wordsim353", 353, ("love", "sex", 6.77), 0.0, 10.0),
        ("simlex999", 999, ("old", "new", 1.58), 0.0, 10.0),
        ("men", 3000, ("sun", "sunlight", 50.0), 0.0, 50.0),
    ],
)
def test_word_similarity(name, n, first, low, high):
    pairs = load_word_similarity(name)
    assert len(pairs) == n and pairs[0] == first
    assert all(low <= s <= high for _, _, s in pairs)
    assert all(w1 and w2 and " " not in w1 + w2 and "\r" not in w1 + w2 for w1, w2, _ in pairs)
    assert all(isinstance(s, float) for _, _, s in pairs)


def test_word_similarity_unknown_name():
    with pytest.raises(ValueError, match="unknown word-similarity set 'rw'.*wordsim353"):
        load_word_similarity("rw")


# --------------------------------------------------------------------------- the text corpus
def test_text_corpus_sizes_and_dedup():
    corpus = load_text_corpus()
    assert len(corpus) == len(set(corpus)) == 69948
    assert sum(len(t.split()) for t in corpus) == 1_100_710
    assert corpus[0] == "YMCA in South Australia"  # wiki1m first
    snli = load_text_corpus(("snli",))
    premise = "Two women are embracing while holding to go packages ."
    assert snli[0] == premise and snli.count(premise) == 1  # the premise repeats in the files
    assert len(snli) == 25741
    parts = {source: load_text_corpus((source,)) for source in TEXT_SOURCES}
    assert set(corpus) == set().union(*parts.values())
    assert len(parts["sst2"]) == 6885 + 872 + 1821 - 1  # one dev/test sentence repeats
    assert parts["ag_news"] == load_ag_news().texts
    assert load_text_corpus("stsb") == parts["stsb"]
    with pytest.raises(ValueError, match="non-empty subset of"):
        load_text_corpus(("wiki1m", "imdb"))


# --------------------------------------------------------------------------- online, the hub answers
def _fake_hub(monkeypatch, tables: dict):
    """Answer load_hub_dataset(repo, [config], split=...) from small in-memory tables laid out
    as the hub datasets are (column names and ClassLabel features); record the calls."""
    from datasets import Dataset

    calls = []

    def load(repo, *config, split=None, **kwargs):
        calls.append((repo, config, split, kwargs))
        columns, features = tables[repo]
        return Dataset.from_dict(columns, features=features)

    monkeypatch.setattr(hub, "is_offline", lambda: False)
    monkeypatch.setattr(data, "load_hub_dataset", load)
    return calls


def test_hub_paths_read_the_hub_schemas(monkeypatch):
    from datasets import ClassLabel, Features, Sequence, Value

    text = Value("string")
    tables = {
        "CogComp/trec": (
            {"text": ["How far is it from Denver to Aspen ?"], "coarse_label": [5], "fine_label": [40]},
            Features({"text": text, "coarse_label": ClassLabel(names=list(TREC_COARSE)),
                      "fine_label": ClassLabel(names=list(TREC_FINE))}),
        ),
        "stanfordnlp/sst2": (
            {"idx": [0, 1], "sentence": ["hide new secretions from the parental units ", "a gem . "], "label": [0, 1]},
            Features({"idx": Value("int32"), "sentence": text, "label": ClassLabel(names=["negative", "positive"])}),
        ),
        "SetFit/sst2": ({"text": ["uneasy mishmash of styles and genres ."], "label": [0], "label_text": ["negative"]}, None),
        "fancyzhx/ag_news": (
            {"text": ["Title Line one\\line two"], "label": [3]},
            Features({"text": text, "label": ClassLabel(names=["World", "Sports", "Business", "Sci/Tech"])}),
        ),
        "leondz/wnut_17": (
            {"id": ["0"], "tokens": [["I", "love", "Paris"]], "ner_tags": [[0, 0, 7]]},
            Features({"id": text, "tokens": Sequence(text), "ner_tags": Sequence(ClassLabel(names=[
                "O", "B-corporation", "I-corporation", "B-creative-work", "I-creative-work", "B-group", "I-group",
                "B-location", "I-location", "B-person", "I-person", "B-product", "I-product"]))}),
        ),
        "google/xquad": (
            {"id": ["q1"], "context": ["It scored 308 points."], "question": ["How many?"],
             "answers": [{"text": ["308"], "answer_start": [10]}]},
            None,
        ),
        "rajpurkar/squad": ({"id": ["q0", "q1"], "title": ["Other", "Super_Bowl_50"]}, None),
        "sentence-transformers/natural-questions": (
            {"query": ["who sang x", "when was y"], "answer": ["X was sung by Z.", "Y was in 1990."]}, None),
        "stanfordnlp/snli": (
            {"premise": ["A dog runs.", "A dog runs.", "No label."], "hypothesis": ["An animal moves.", "A cat sleeps.", "x"],
             "label": [0, 2, -1]},
            None,
        ),
    }
    calls = _fake_hub(monkeypatch, tables)
    trec = load_trec("test")
    assert (trec.texts, trec.labels, trec.label_names) == (["How far is it from Denver to Aspen ?"], [5], list(TREC_COARSE))
    assert load_trec("test", fine=True).label_names[40] == "NUM:dist"
    assert calls[0] == ("CogComp/trec", (), "test", {"revision": "refs/convert/parquet"})
    sst = load_sst2("dev")
    assert sst.texts == ["hide new secretions from the parental units", "a gem ."] and sst.labels == [0, 1]
    assert calls[-1][:3] == ("stanfordnlp/sst2", (), "validation")
    assert load_sst2("test").texts == ["uneasy mishmash of styles and genres ."] and calls[-1][:3] == ("SetFit/sst2", (), "test")
    assert load_sst2("train", sentences_only=True).texts == ["hide new secretions from the parental units", "a gem ."]
    ag = load_ag_news("train")
    assert ag.texts == ["Title Line one line two"] and ag.label_names[ag.labels[0]] == "Sci/Tech"
    assert calls[-1][:3] == ("fancyzhx/ag_news", (), "train")
    assert load_wnut17("dev") == [(["I", "love", "Paris"], ["O", "O", "B-location"])]
    assert calls[-1] == ("leondz/wnut_17", (), "validation", {"revision": "refs/convert/parquet"})
    assert load_xquad_en() == [{"id": "q1", "question": "How many?", "context": "It scored 308 points.",
                                "answers": ["308"], "answer_starts": [10], "title": "Super_Bowl_50"}]
    assert calls[-2][:3] == ("google/xquad", ("xquad.en",), "validation")
    assert calls[-1][:3] == ("rajpurkar/squad", (), "validation")  # XQuAD has no titles; SQuAD has
    assert data.load_nq_pairs(limit=1) == [("who sang x", "X was sung by Z.")]
    assert calls[-1][:3] == ("sentence-transformers/natural-questions", (), "train[:1]")
    assert load_text_corpus(("snli",)) == ["A dog runs.", "An animal moves.", "A cat sleeps."]  # the unlabelled pair dropped
    assert [c[2] for c in calls[-2:]] == ["validation", "test"]


def test_nq_pairs_from_a_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CL_DATA_DIR", str(tmp_path))
    (tmp_path / "natural_questions").mkdir()
    rows = [{"query": f"who wrote book {i}", "answer": f"Book {i} was written by A{i}."} for i in range(3)]
    text = "\n".join(json.dumps(r) for r in rows) + "\n"
    (tmp_path / "natural_questions" / "pairs.jsonl").write_text(text, encoding="utf-8")
    assert data.load_nq_pairs() == [(r["query"], r["answer"]) for r in rows]
    assert data.load_nq_pairs(limit=2) == data.load_nq_pairs()[:2]
    with pytest.raises(ValueError, match="limit"):
        data.load_nq_pairs(limit=0)
