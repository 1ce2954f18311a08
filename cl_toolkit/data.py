"""Dataset loaders.

* sentence similarity: STS-B, SICK-R, STS12–16 (:class:`STSPairs`);
* contrastive training text: SNLI triplets, unlabelled sentences, a plain text corpus;
* classification: TREC, SST-2, AG News (:class:`LabelledTexts`);
* named entities: WNUT-17; question answering/retrieval: XQuAD (English);
* word similarity: WordSim-353, SimLex-999, MEN.

Every loader follows one contract (:func:`cl_toolkit.hub.resolve_dataset`): online it
loads the canonical Hugging Face hub dataset named in its docstring (:data:`HUB`), and
a hub error is raised (:class:`~cl_toolkit.hub.HubDatasetError`, naming the dataset, the
hub repository and the cause) — never answered with other files; offline
(``HF_HUB_OFFLINE=1``) it reads the files under the data directory (``CL_DATA_DIR``,
one folder per dataset, each with a ``SOURCE.md`` giving provenance and licence); a
dataset in neither place fails at once with a :class:`DatasetUnavailable` naming the
dataset, the folder looked in and ``CL_DATA_DIR``. The word-similarity sets have no
canonical hub copy and are read from ``CL_DATA_DIR`` in both modes.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

from .config import default_data_dir
from .hub import DatasetUnavailable, HubDatasetError, cached_hub_file, hub_file, load_hub_dataset, resolve_dataset

__all__ = [
    "STS_TASKS",
    "STS_YEARS",
    "HUB",
    "TREC_COARSE",
    "TREC_FINE",
    "WNUT17_TYPES",
    "WORD_SIMILARITY",
    "TEXT_SOURCES",
    "DatasetUnavailable",
    "HubDatasetError",
    "STSPairs",
    "LabelledTexts",
    "data_dir",
    "load_stsb",
    "load_sickr",
    "load_sts_year",
    "load_sts",
    "load_nli_triplets",
    "load_sentences",
    "load_trec",
    "load_sst2",
    "load_ag_news",
    "load_wnut17",
    "load_xquad_en",
    "load_nq_pairs",
    "load_word_similarity",
    "load_text_corpus",
]

STS_TASKS = ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr")
STS_YEARS = {
    "sts12": ("STS12-en-test", ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews")),
    "sts13": ("STS13-en-test", ("FNWN", "headlines", "OnWN")),
    "sts14": ("STS14-en-test", ("deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news")),
    "sts15": ("STS15-en-test", ("answers-forums", "answers-students", "belief", "headlines", "images")),
    "sts16": ("STS16-en-test", ("answer-answer", "headlines", "plagiarism", "postediting", "question-question")),
}
HUB = {
    "stsb": "sentence-transformers/stsb",
    "sickr": "mteb/sickr-sts",
    **{name: f"mteb/{name}-sts" for name in STS_YEARS},
    "simcse": "princeton-nlp/datasets-for-simcse",
    "snli": "stanfordnlp/snli",
    "trec": "CogComp/trec",
    "sst2": "stanfordnlp/sst2",  # GLUE SST-2: train (phrases) and validation
    "sst2-test": "SetFit/sst2",  # GLUE's SST-2 test has no labels; this copy of the same 1,821 has them
    "ag_news": "fancyzhx/ag_news",
    "wnut17": "leondz/wnut_17",
    "xquad_en": "google/xquad",
    "squad": "rajpurkar/squad",  # XQuAD's questions keep their SQuAD v1.1 ids; titles come from here
    "nq": "sentence-transformers/natural-questions",
}
# The branch where the hub keeps its Parquet conversion of a dataset repository.
PARQUET_EXPORT = "refs/convert/parquet"
_SPLITS = ("train", "dev", "test")


@dataclass
class STSPairs:
    """Sentence pairs with gold similarity scores (0–5; SICK-R: 1–5)."""

    sentences1: list[str]
    sentences2: list[str]
    scores: list[float]
    subsets: list[str] = field(default_factory=list)  # one name per pair, for STS12–16

    def __len__(self) -> int:
        return len(self.scores)

    def subset(self, name: str) -> "STSPairs":
        idx = [i for i, s in enumerate(self.subsets) if s == name]
        if not idx:
            raise ValueError(f"no subset {name!r}; have {sorted(set(self.subsets))}")
        return STSPairs(
            [self.sentences1[i] for i in idx], [self.sentences2[i] for i in idx], [self.scores[i] for i in idx], [name] * len(idx)
        )

    def sentences(self) -> list[str]:
        """The distinct sentences, in first-seen order."""
        return list(OrderedDict.fromkeys(self.sentences1 + self.sentences2))


# --------------------------------------------------------------------------- plumbing
def data_dir() -> Path:
    """The data directory: ``CL_DATA_DIR`` (see :func:`cl_toolkit.config.default_data_dir`)."""
    return default_data_dir()


def _load(name: str, folder: str, expected: str, local, hub, repo: str | None = None, cached=None, hint: str = ""):
    """:func:`cl_toolkit.hub.resolve_dataset` with the folder under :func:`data_dir`."""
    return resolve_dataset(
        name,
        repo=repo or HUB[name],
        folder=data_dir() / folder,
        expected=expected,
        local=local,
        hub=hub,
        cached=cached,
        hint=hint,
    )


def _check_split(split: str, allowed=_SPLITS) -> str:
    split = {"validation": "dev", "val": "dev"}.get(split, split)
    if split not in allowed:
        raise ValueError(f"split must be one of {allowed}, got {split!r}")
    return split


def _read_lines(path: Path, encoding: str = "utf-8") -> list[str]:
    """The lines of a text file, split on ``\n`` only (the file is closed on return).

    Not ``str.splitlines``, which also splits on characters such as U+0085 or U+2028 that
    can occur inside a line and would shift parallel files (SNLI's s1/s2/labels) apart.
    """
    with open(path, encoding=encoding, newline="") as f:
        return f.read().split("\n")


# --------------------------------------------------------------------------- STS
def load_stsb(split: str = "test") -> STSPairs:
    """STS Benchmark (Cer et al. 2017), gold 0–5."""
    split = _check_split(split)
    file = {"train": "sts-train.csv", "dev": "sts-dev.csv", "test": "sts-test.csv"}[split]

    def local(path: Path) -> STSPairs:
        s1, s2, sc = [], [], []
        with open(path / file, encoding="utf-8", newline="") as f:
            # Quotes are literal; some rows carry 2 extra licence columns: keep the first 7.
            for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                if len(row) < 7:
                    continue
                sc.append(float(row[4]))
                s1.append(row[5])
                s2.append(row[6])
        return STSPairs(s1, s2, sc, ["stsb"] * len(sc))

    def hub() -> STSPairs:
        ds = load_hub_dataset(HUB["stsb"], split={"dev": "validation"}.get(split, split))
        return STSPairs(list(ds["sentence1"]), list(ds["sentence2"]), [5.0 * s for s in ds["score"]], ["stsb"] * len(ds))

    return _load("stsb", "stsbenchmark", file, local, hub)


def load_sickr(split: str = "test") -> STSPairs:
    """SICK relatedness (Marelli et al. 2014), gold 1–5; SemEval-2014 splits."""
    split = _check_split(split)
    file = {"train": "SICK_train.txt", "dev": "SICK_trial.txt", "test": "SICK_test_annotated.txt"}[split]

    def local(path: Path) -> STSPairs:
        s1, s2, sc = [], [], []
        with open(path / file, encoding="utf-8", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = [h.strip() for h in next(reader)]
            a, b, r = header.index("sentence_A"), header.index("sentence_B"), header.index("relatedness_score")
            for row in reader:
                if len(row) <= r:
                    continue
                s1.append(row[a].strip())
                s2.append(row[b].strip())
                sc.append(float(row[r]))
        return STSPairs(s1, s2, sc, ["sickr"] * len(sc))

    def hub() -> STSPairs:
        if split != "test":
            raise ValueError("the hub copy mteb/sickr-sts has a test split only")
        ds = load_hub_dataset(HUB["sickr"], split="test")
        return STSPairs(list(ds["sentence1"]), list(ds["sentence2"]), [float(s) for s in ds["score"]], ["sickr"] * len(ds))

    return _load("sickr", "sick", file, local, hub)


def load_sts_year(name: str) -> STSPairs:
    """SemEval STS 2012–2016 test sets; unscored pairs (blank gold lines) dropped."""
    if name not in STS_YEARS:
        raise ValueError(f"name must be one of {tuple(STS_YEARS)}, got {name!r}")
    folder, subsets = STS_YEARS[name]

    def local(path: Path) -> STSPairs:
        s1, s2, sc, sub = [], [], [], []
        for subset in subsets:
            with open(path / folder / f"STS.input.{subset}.txt", encoding="utf-8") as f:
                inputs = f.read().split("\n")
            with open(path / folder / f"STS.gs.{subset}.txt", encoding="utf-8") as f:
                gold = f.read().split("\n")
            for line, score in zip(inputs, gold):
                if not score.strip():
                    continue  # an unscored pair (STS15/16), dropped as SentEval does
                fields = line.split("\t")
                s1.append(fields[0])
                s2.append(fields[1])
                sc.append(float(score))
                sub.append(subset)
        return STSPairs(s1, s2, sc, sub)

    def hub() -> STSPairs:
        ds = load_hub_dataset(HUB[name], split="test")
        return STSPairs(list(ds["sentence1"]), list(ds["sentence2"]), [float(s) for s in ds["score"]], [name] * len(ds))

    return _load(name, "sts12-16", f"{folder}/STS.input.{subsets[0]}.txt", local, hub)


def load_sts(name: str, split: str = "test") -> STSPairs:
    """Any of :data:`STS_TASKS`; STS12–16 exist as test sets only."""
    if name == "stsb":
        return load_stsb(split)
    if name == "sickr":
        return load_sickr(split)
    if name in STS_YEARS:
        _check_split(split, ("test",))
        return load_sts_year(name)
    raise ValueError(f"unknown STS task {name!r}; choose one of {STS_TASKS}")


# --------------------------------------------------------------------------- NLI
def load_nli_triplets(limit: int | None = None) -> list[tuple[str, str, str]]:
    """(premise, entailment hypothesis, contradiction hypothesis) triplets.

    Online: SimCSE's ``nli_for_simcse.csv`` from the hub dataset
    ``princeton-nlp/datasets-for-simcse`` (SNLI + MNLI, 275,601 triplets); offline the same
    file when the hub cache holds it. Otherwise offline: built from SNLI dev + test in
    ``snli/`` by grouping on the premise (the premises with both an entailment and a
    contradiction hypothesis: 5,864). Licence: SNLI is CC BY-SA 4.0; MNLI's text comes
    from the OANC (mostly free) and fiction under various terms.
    """
    file = "nli_for_simcse.csv"

    def read(csv_path: str) -> list[tuple[str, str, str]]:
        with open(csv_path, encoding="utf-8", newline="") as f:
            return [(r["sent0"], r["sent1"], r["hard_neg"]) for r in csv.DictReader(f)]

    def local(path: Path) -> list[tuple[str, str, str]]:
        triplets: list[tuple[str, str, str]] = []
        for split in ("dev", "test"):
            s1, s2, labels = ([line.strip() for line in _read_lines(path / f"{f}.{split}")] for f in ("s1", "s2", "labels"))
            groups: OrderedDict[str, dict[str, str]] = OrderedDict()
            for p, h, y in zip(s1, s2, labels):
                if p and h and y:
                    groups.setdefault(p, {}).setdefault(y, h)
            both = {"entailment", "contradiction"}
            triplets += [(p, g["entailment"], g["contradiction"]) for p, g in groups.items() if both <= g.keys()]
        return triplets

    def cached() -> list[tuple[str, str, str]] | None:
        path = cached_hub_file(HUB["simcse"], file)
        return None if path is None else read(path)

    def hub() -> list[tuple[str, str, str]]:
        return read(hub_file(HUB["simcse"], file))

    triplets = _load("nli", "snli", "s1.dev", local, hub, repo=HUB["simcse"], cached=cached)
    return triplets[:limit] if limit is not None else triplets


def _snli_sentences() -> list[str]:
    """The distinct premises and hypotheses of SNLI dev + test (pairs with a gold label).

    Online: hub dataset ``stanfordnlp/snli`` (untokenised text); offline: ``snli/`` (tokenised).
    """

    def local(path: Path) -> list[str]:
        out: list[str] = []
        for split in ("dev", "test"):
            for f in ("s1", "s2"):
                out += [line.strip() for line in _read_lines(path / f"{f}.{split}")]
        return list(OrderedDict.fromkeys(s for s in out if s))

    def hub() -> list[str]:
        out: list[str] = []
        for split in ("validation", "test"):
            ds = load_hub_dataset(HUB["snli"], split=split)
            keep = [i for i, y in enumerate(ds["label"]) if y != -1]
            premises, hypotheses = list(ds["premise"]), list(ds["hypothesis"])
            out += [premises[i].strip() for i in keep] + [hypotheses[i].strip() for i in keep]
        return list(OrderedDict.fromkeys(s for s in out if s))

    return _load("snli", "snli", "s1.dev", local, hub)


# --------------------------------------------------------------------------- unlabelled sentences
def load_sentences(name: str = "wiki1m", limit: int | None = None) -> list[str]:
    """An unlabelled sentence corpus.

    * ``wiki1m`` — SimCSE's one million Wikipedia sentences (``wiki1m_for_simcse.txt`` of the
      hub dataset ``princeton-nlp/datasets-for-simcse``; offline from the hub cache when it
      holds the file, else the 11,914-sentence head in ``wiki1m_head/``, the truncated last
      line dropped). Licence: Wikipedia text, CC BY-SA;
    * ``stsb-train`` — the distinct sentences of STS-B train (scores unused).
    """
    if name == "stsb-train":
        sentences = load_stsb("train").sentences()
        return sentences[:limit] if limit is not None else sentences
    if name != "wiki1m":
        raise ValueError(f"unknown corpus {name!r}; choose 'wiki1m' or 'stsb-train'")
    file = "wiki1m_for_simcse.head1280000B.txt"

    def read(txt_path: str) -> list[str]:
        with open(txt_path, encoding="utf-8") as f:
            return [s.strip() for s in f if s.strip()]

    def local(path: Path) -> list[str]:
        with open(path / file, encoding="utf-8", newline="") as f:
            text = f.read()
        lines = text.split("\n")
        if not text.endswith("\n"):
            lines = lines[:-1]  # the last line stops mid-sentence
        return [s.strip() for s in lines if s.strip()]

    def cached() -> list[str] | None:
        path = cached_hub_file(HUB["simcse"], "wiki1m_for_simcse.txt")
        return None if path is None else read(path)

    def hub() -> list[str]:
        return read(hub_file(HUB["simcse"], "wiki1m_for_simcse.txt"))

    sentences = _load("wiki1m", "wiki1m_head", file, local, hub, repo=HUB["simcse"], cached=cached)
    return sentences[:limit] if limit is not None else sentences


# --------------------------------------------------------------------------- classification
@dataclass
class LabelledTexts:
    """Texts with integer class labels; ``label_names[y]`` names class ``y``."""

    texts: list[str]
    labels: list[int]
    label_names: list[str]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"texts and labels differ in length: {len(self.texts)} != {len(self.labels)}")
        bad = [y for y in self.labels if not 0 <= y < len(self.label_names)]
        if bad:
            raise ValueError(f"labels must lie in [0, {len(self.label_names)}) (one per label name), got {bad[:5]}")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Iterable[int]) -> "LabelledTexts":
        """The rows at ``indices``, in that order (the label names are kept)."""
        idx = [int(i) for i in indices]
        return LabelledTexts([self.texts[i] for i in idx], [self.labels[i] for i in idx], list(self.label_names))

    def counts(self) -> dict[str, int]:
        """Rows per class name, in label order."""
        c = Counter(self.labels)
        return {name: c.get(y, 0) for y, name in enumerate(self.label_names)}


# The hub dataset's class orders (CogComp/trec), used offline too.
TREC_COARSE = ("ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM")
TREC_FINE = (
    "ABBR:abb", "ABBR:exp", "ENTY:animal", "ENTY:body", "ENTY:color", "ENTY:cremat", "ENTY:currency",
    "ENTY:dismed", "ENTY:event", "ENTY:food", "ENTY:instru", "ENTY:lang", "ENTY:letter", "ENTY:other",
    "ENTY:plant", "ENTY:product", "ENTY:religion", "ENTY:sport", "ENTY:substance", "ENTY:symbol",
    "ENTY:techmeth", "ENTY:termeq", "ENTY:veh", "ENTY:word", "DESC:def", "DESC:desc", "DESC:manner",
    "DESC:reason", "HUM:gr", "HUM:ind", "HUM:title", "HUM:desc", "LOC:city", "LOC:country", "LOC:mount",
    "LOC:other", "LOC:state", "NUM:code", "NUM:count", "NUM:date", "NUM:dist", "NUM:money", "NUM:ord",
    "NUM:other", "NUM:period", "NUM:perc", "NUM:speed", "NUM:temp", "NUM:volsize", "NUM:weight",
)  # fmt: skip


def _hub_labelled(ds, text: str, label: str) -> LabelledTexts:
    """A hub split with a text column and a ClassLabel column as :class:`LabelledTexts`."""
    names = list(ds.features[label].names)
    return LabelledTexts([t.strip() for t in ds[text]], [int(y) for y in ds[label]], names)


def load_trec(split: str = "train", fine: bool = False) -> LabelledTexts:
    """TREC question classification (Li & Roth 2002): 6 coarse answer types, or 50 fine ones.

    Train 5,452 / test 500 questions. Online: hub dataset ``CogComp/trec`` (columns ``text``,
    ``coarse_label``, ``fine_label``; its Parquet export); offline: ``trec/train_5500.label`` and
    ``trec/TREC_10.label`` (latin-1, one ``COARSE:fine question`` per line). Coarse classes:
    :data:`TREC_COARSE`; fine: :data:`TREC_FINE`.
    Licence: none stated by the authors (the hub card says "unknown"); research data.
    """
    split = _check_split(split, ("train", "test"))
    file = {"train": "train_5500.label", "test": "TREC_10.label"}[split]
    names = TREC_FINE if fine else TREC_COARSE
    index = {name: i for i, name in enumerate(names)}

    def local(path: Path) -> LabelledTexts:
        texts, labels = [], []
        for line in _read_lines(path / file, encoding="latin-1"):
            if not line.strip():
                continue
            label, text = line.split(" ", 1)
            texts.append(text.strip())
            labels.append(index[label if fine else label.split(":")[0]])
        return LabelledTexts(texts, labels, list(names))

    def hub() -> LabelledTexts:
        # The repository's main branch holds a loading script, which datasets>=4 no longer runs;
        # the hub's own Parquet export of it is read instead.
        ds = load_hub_dataset(HUB["trec"], split=split, revision=PARQUET_EXPORT)
        return _hub_labelled(ds, "text", "fine_label" if fine else "coarse_label")

    return _load("trec", "trec", file, local, hub)


@lru_cache(maxsize=4)
def _whole_sentences(texts: tuple[str, ...]) -> tuple[int, ...]:
    """Indices of the rows that no other row contains as a token span (first of repeats)."""
    rows = set(texts)
    inside: set[str] = set()
    for row in rows:
        tokens = row.split()
        n = len(tokens)
        for i in range(n):
            for j in range(i + 1, n + 1):
                if j - i < n:
                    span = " ".join(tokens[i:j])
                    if span in rows:
                        inside.add(span)
    seen: set[str] = set()
    keep = []
    for i, row in enumerate(texts):
        if row not in inside and row not in seen:
            seen.add(row)
            keep.append(i)
    return tuple(keep)


def load_sst2(split: str = "train", sentences_only: bool = False) -> LabelledTexts:
    """SST-2, binary movie-review sentiment (Socher et al. 2013), SentEval's copy.

    Train 67,349 rows (phrases *and* sentences, GLUE's train set) / dev 872 / test 1,821
    sentences, label 0 = negative, 1 = positive. Text is lower-cased and PTB-tokenised.
    ``sentences_only=True`` keeps the whole sentences of train: the rows that no other row
    contains (every phrase is a span of a sentence of the treebank); 6,885 distinct rows,
    near SST-2's 6,920 train sentences. It changes nothing for dev and test.
    Online: hub dataset ``stanfordnlp/sst2`` (GLUE) for train and dev, ``SetFit/sst2`` for a
    labelled test (GLUE's test labels are hidden); offline: ``sst2/sentiment-{train,dev,test}``
    (``text \\t label`` per line).
    Licence: none stated (the hub card says "unknown"); research data.
    """
    split = _check_split(split)
    file = f"sentiment-{split}"
    repo = HUB["sst2-test"] if split == "test" else HUB["sst2"]

    def local(path: Path) -> LabelledTexts:
        texts, labels = [], []
        for line in _read_lines(path / file):
            if not line.strip():
                continue
            text, label = line.rsplit("\t", 1)
            texts.append(text.strip())
            labels.append(int(label))
        return LabelledTexts(texts, labels, ["negative", "positive"])

    def hub() -> LabelledTexts:
        if split == "test":
            ds = load_hub_dataset(repo, split="test")
            return LabelledTexts([t.strip() for t in ds["text"]], [int(y) for y in ds["label"]], ["negative", "positive"])
        ds = load_hub_dataset(repo, split={"dev": "validation"}.get(split, split))
        return _hub_labelled(ds, "sentence", "label")

    data = _load("sst2", "sst2", file, local, hub, repo=repo)
    if sentences_only and split == "train":
        data = data.subset(_whole_sentences(tuple(data.texts)))
    return data


def load_ag_news(split: str = "test") -> LabelledTexts:
    """AG's News topic classification (Zhang et al. 2015): World, Sports, Business, Sci/Tech.

    Each text is ``title + " " + description``; a backslash (the original's line break) becomes
    a space; HTML entities such as ``#39;`` are left as they are. Online: hub dataset
    ``fancyzhx/ag_news`` (train 120,000 / test 7,600); offline: ``ag_news/test.csv`` — the
    offline copy holds the **test split only** (7,600 rows, 1,900 per class).
    Licence: research and other non-commercial use only (the dataset's readme); the news
    text is copyrighted by its publishers.
    """
    split = _check_split(split, ("train", "test"))
    file = f"{split}.csv"
    names = ["World", "Sports", "Business", "Sci/Tech"]

    def local(path: Path) -> LabelledTexts:
        texts, labels = [], []
        with open(path / file, encoding="utf-8", newline="") as f:
            for row in csv.reader(f):
                cls, title, description = row
                texts.append(f"{title} {description}".replace("\\", " ").strip())
                labels.append(int(cls) - 1)
        return LabelledTexts(texts, labels, names)

    def hub() -> LabelledTexts:
        ds = load_hub_dataset(HUB["ag_news"], split=split)
        data = _hub_labelled(ds, "text", "label")
        return LabelledTexts([t.replace("\\", " ").strip() for t in data.texts], data.labels, data.label_names)

    hint = ""
    if split == "train":
        hint = (
            "The offline copy of AG News holds the test split only (7,600 rows); the train split "
            f"(120,000 rows) loads online from {HUB['ag_news']}."
        )
    return _load("ag_news", "ag_news", file, local, hub, hint=hint)


# --------------------------------------------------------------------------- named entities
WNUT17_TYPES = ("person", "location", "group", "creative-work", "corporation", "product")


def load_wnut17(split: str = "train") -> list[tuple[list[str], list[str]]]:
    """WNUT-17 emerging and rare entities (Derczynski et al. 2017): (tokens, BIO tags) per sentence.

    Train 3,394 / dev 1,009 / test 1,287 sentences of noisy user text; tags are ``O`` or
    ``B-``/``I-`` + one of :data:`WNUT17_TYPES`. Online: hub dataset ``leondz/wnut_17``
    (``tokens``, ``ner_tags``; its Parquet export); offline: ``wnut17/`` (``token \\t tag`` lines, blank lines
    between sentences). Licence: CC BY 4.0 (the authors' README).
    """
    split = _check_split(split)
    file = {"train": "wnut17train.conll", "dev": "emerging.dev.conll", "test": "emerging.test.annotated"}[split]

    def local(path: Path) -> list[tuple[list[str], list[str]]]:
        sentences: list[tuple[list[str], list[str]]] = []
        tokens: list[str] = []
        tags: list[str] = []
        for line in _read_lines(path / file) + [""]:
            if not line.strip():  # a blank line (in train sometimes a lone tab) ends a sentence
                if tokens:
                    sentences.append((tokens, tags))
                tokens, tags = [], []
                continue
            token, tag = line.rsplit("\t", 1)
            tokens.append(token)
            tags.append(tag.strip())
        return sentences

    def hub() -> list[tuple[list[str], list[str]]]:
        # A loading script on the main branch: read the hub's Parquet export (as for TREC).
        ds = load_hub_dataset(HUB["wnut17"], split={"dev": "validation"}.get(split, split), revision=PARQUET_EXPORT)
        names = ds.features["ner_tags"].feature.names
        return [(list(t), [names[i] for i in y]) for t, y in zip(ds["tokens"], ds["ner_tags"])]

    return _load("wnut17", "wnut17", file, local, hub)


# --------------------------------------------------------------------------- question answering
def load_xquad_en() -> list[dict]:
    """XQuAD, English (Artetxe et al. 2020): 1,190 questions on 240 paragraphs of SQuAD v1.1 dev.

    One dict per question: ``id``, ``question``, ``context`` (its paragraph), ``answers``
    (answer texts), ``answer_starts`` (their character offsets in ``context``) and ``title``
    (the Wikipedia article). Online: hub dataset ``google/xquad``, config ``xquad.en``, split
    ``validation``, which has no titles: they are looked up by question id in SQuAD v1.1
    dev (``rajpurkar/squad``); offline: ``xquad_en/xquad.en.json`` (SQuAD v1.1 JSON).
    Licence: CC BY-SA 4.0.
    """
    file = "xquad.en.json"

    def local(path: Path) -> list[dict]:
        with open(path / file, encoding="utf-8") as f:
            data = json.load(f)
        rows = []
        for article in data["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    rows.append(
                        {
                            "id": qa["id"],
                            "question": qa["question"],
                            "context": paragraph["context"],
                            "answers": [a["text"] for a in qa["answers"]],
                            "answer_starts": [int(a["answer_start"]) for a in qa["answers"]],
                            "title": article["title"],
                        }
                    )
        return rows

    def hub() -> list[dict]:
        ds = load_hub_dataset(HUB["xquad_en"], "xquad.en", split="validation")
        squad = load_hub_dataset(HUB["squad"], split="validation")
        titles = dict(zip(squad["id"], squad["title"]))
        return [
            {
                "id": r["id"],
                "question": r["question"],
                "context": r["context"],
                "answers": list(r["answers"]["text"]),
                "answer_starts": [int(s) for s in r["answers"]["answer_start"]],
                "title": titles.get(r["id"], ""),
            }
            for r in ds
        ]

    return _load("xquad_en", "xquad_en", file, local, hub)


def load_nq_pairs(limit: int | None = None) -> list[tuple[str, str]]:
    """(question, answer passage) pairs of Natural Questions (Kwiatkowski et al. 2019).

    The copy prepared by sentence-transformers (hub ``sentence-transformers/natural-questions``,
    about 100,000 pairs: a Google query and the Wikipedia passage that answers it).
    Online, or offline from the hub cache; the data directory has no copy, but
    ``natural_questions/pairs.jsonl`` there (one ``{"query", "answer"}`` per line) is read
    when present. Licence: CC BY-SA 3.0.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be positive or None, got {limit}")
    file = "pairs.jsonl"

    def local(path: Path) -> list[tuple[str, str]]:
        rows = [json.loads(line) for line in _read_lines(path / file) if line.strip()]
        return [(r["query"], r["answer"]) for r in rows]

    def hub() -> list[tuple[str, str]]:
        split = "train" if limit is None else f"train[:{limit}]"
        ds = load_hub_dataset(HUB["nq"], split=split)
        return list(zip(ds["query"], ds["answer"]))

    hint = "Chapter 9 trains on it only in the full profile."
    pairs = _load("nq", "natural_questions", file, local, hub, hint=hint)
    return pairs[:limit] if limit is not None else pairs


# --------------------------------------------------------------------------- word similarity
# name: (file under word_similarity/, score range, where the original lives)
WORD_SIMILARITY = {
    "wordsim353": ("wordsim353/combined.csv", (0.0, 10.0), "http://www.gabrilovich.com/resources/data/wordsim353/"),
    "simlex999": ("simlex999/SimLex-999.txt", (0.0, 10.0), "https://fh295.github.io/simlex.html"),
    "men": ("men/MEN_dataset_natural_form_full", (0.0, 50.0), "https://staff.fnwi.uva.nl/e.bruni/MEN"),
}


def load_word_similarity(name: str) -> list[tuple[str, str, float]]:
    """Word pairs with human similarity ratings: ``(word1, word2, score)``.

    * ``wordsim353`` — WordSim-353 (Finkelstein et al. 2002), 353 pairs, mean rating 0–10,
      words as written (some capitalised, e.g. ``FBI``). Licence: none stated.
    * ``simlex999`` — SimLex-999 (Hill et al. 2015), 999 pairs, genuine similarity 0–10.
      Licence: none stated (the authors ask to cite the paper).
    * ``men`` — MEN (Bruni et al. 2014), 3,000 pairs, natural word forms, relatedness 0–50.
      Licence: CC BY 2.0.

    There is no canonical copy on the Hugging Face hub, so the original distribution files
    are read from ``CL_DATA_DIR/word_similarity/`` online and offline alike.
    """
    if name not in WORD_SIMILARITY:
        raise ValueError(f"unknown word-similarity set {name!r}; choose one of {tuple(WORD_SIMILARITY)}")
    file, _, source = WORD_SIMILARITY[name]

    def local(path: Path) -> list[tuple[str, str, float]]:
        lines = [line.rstrip("\r") for line in _read_lines(path / file)]
        if name == "wordsim353":  # CSV with CRLF ends, header "Word 1,Word 2,Human (mean)"
            rows = [line.split(",") for line in lines[1:] if line.strip()]
            return [(w1, w2, float(score)) for w1, w2, score in rows]
        if name == "simlex999":  # TSV, header "word1 word2 POS SimLex999 ..."
            header = lines[0].split("\t")
            a, b, r = header.index("word1"), header.index("word2"), header.index("SimLex999")
            rows = [line.split("\t") for line in lines[1:] if line.strip()]
            return [(row[a], row[b], float(row[r])) for row in rows]
        # MEN: space-separated; this copy adds a header line "word1 word2 score"
        rows = [line.split() for line in lines if line.strip()]
        if rows and rows[0] == ["word1", "word2", "score"]:
            rows = rows[1:]
        return [(w1, w2, float(score)) for w1, w2, score in rows]

    def no_hub():  # pragma: no cover - resolve_dataset never calls it when repo is None
        raise AssertionError("no hub copy")

    return resolve_dataset(
        name,
        repo=None,
        folder=data_dir() / "word_similarity",
        expected=file,
        local=local,
        hub=no_hub,
        hint=f"The original files: {source}.",
    )


# --------------------------------------------------------------------------- a plain text corpus
TEXT_SOURCES = ("wiki1m", "snli", "sst2", "ag_news", "stsb")


def _corpus_part(source: str) -> list[str]:
    if source == "wiki1m":
        return load_sentences("wiki1m")
    if source == "snli":
        return _snli_sentences()
    if source == "sst2":
        return load_sst2("train", sentences_only=True).texts + load_sst2("dev").texts + load_sst2("test").texts
    if source == "ag_news":
        return load_ag_news("test").texts
    return [s for split in _SPLITS for s in load_stsb(split).sentences()]


def load_text_corpus(sources: Sequence[str] = TEXT_SOURCES) -> list[str]:
    """The running text of several datasets, one sentence (or short text) per item.

    ``wiki1m``: :func:`load_sentences`; ``snli``: the premises and hypotheses of SNLI dev +
    test; ``sst2``: the whole sentences of SST-2 train, dev and test (not the train
    phrases, which are spans of those sentences); ``ag_news``: the AG News test texts;
    ``stsb``: the sentences of STS-B train, dev and test. Each text is kept once, at its first
    occurrence (SNLI premises repeat, once per hypothesis). Texts are returned as the
    datasets write them: SST-2 and the offline SNLI are lower-cased/tokenised, the others
    not — tokenise and lower-case as the model needs. Offline, with all five sources, this
    is 69,948 texts and 1,100,710 whitespace tokens; online, ``wiki1m`` alone is a million
    sentences. Licences: those of the sources (see each loader).
    """
    if isinstance(sources, str):
        sources = (sources,)
    unknown = [s for s in sources if s not in TEXT_SOURCES]
    if unknown or not sources:
        raise ValueError(f"sources must be a non-empty subset of {TEXT_SOURCES}, got {tuple(sources)!r}")
    texts: list[str] = []
    for source in sources:
        texts += _corpus_part(source)
    return list(OrderedDict.fromkeys(t for t in texts if t.strip()))
