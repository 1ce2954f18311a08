"""Dataset loaders: STS-B, SICK-R, STS12–16, SNLI triplets, unlabelled sentences.

Online they load the canonical Hugging Face hub datasets; offline
(``HF_HUB_OFFLINE=1``) they read the files under the data directory
(``CL_DATA_DIR``, laid out as ``stsbenchmark/``, ``sick/``, ``sts12-16/``,
``snli/``, ``wiki1m_head/``). A dataset that is neither reachable nor on disk
fails at once with a :class:`DatasetUnavailable` naming the dataset, the folder
looked in and how to fix it.
"""

from __future__ import annotations

import csv
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from .config import default_data_dir, is_offline

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
}
_SPLITS = ("train", "dev", "test")


class DatasetUnavailable(FileNotFoundError):
    """A dataset is neither reachable on the hub nor present in the data directory."""


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
    return default_data_dir()


def _unavailable(name: str, folder: Path, expected: str, cause: Exception | None = None) -> DatasetUnavailable:
    where = "the hub is offline (HF_HUB_OFFLINE=1)" if is_offline() else f"the hub failed ({cause})"
    return DatasetUnavailable(
        f"dataset {name!r} is not available: {where}, and {folder} does not hold {expected}. "
        f"Fix: set CL_DATA_DIR to a folder that contains {folder.name}/ (see the README), "
        "or run online so that it loads from the Hugging Face hub."
    )


def _local_or_hub(name: str, folder: str, expected: str, local_fn, hub_fn, hub_offline: bool = False):
    """Hub when online (falling back to disk), disk when offline; one clear error otherwise.

    ``hub_offline=True``: ``hub_fn`` can also answer offline (from the hub cache), so it is tried first then too.
    """
    path = data_dir() / folder
    cause: Exception | None = None
    if not is_offline() or hub_offline:
        try:
            return hub_fn()
        except Exception as exc:  # network, missing dataset, ...
            cause = exc
    if (path / expected).exists():
        return local_fn(path)
    raise _unavailable(name, path, expected, cause)


def _check_split(split: str, allowed=_SPLITS) -> str:
    split = {"validation": "dev", "val": "dev"}.get(split, split)
    if split not in allowed:
        raise ValueError(f"split must be one of {allowed}, got {split!r}")
    return split


def _hub(repo: str, **kwargs):
    from datasets import load_dataset

    return load_dataset(repo, **kwargs)


def _hub_file(repo: str, filename: str) -> str:
    """The local path of one file of hub dataset ``repo``, kept in the Hugging Face hub cache.

    Online it is downloaded there once; offline (``HF_HUB_OFFLINE=1``) the cached copy is used,
    e.g. one fetched beforehand with ``hf download REPO FILE --repo-type dataset``.
    (``datasets.load_dataset(repo)`` offline reads only its own processed cache, not the hub cache.)
    """
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo, filename, repo_type="dataset", local_files_only=is_offline())


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
        ds = _hub(HUB["stsb"], split={"dev": "validation"}.get(split, split))
        return STSPairs(list(ds["sentence1"]), list(ds["sentence2"]), [5.0 * s for s in ds["score"]], ["stsb"] * len(ds))

    return _local_or_hub("stsb", "stsbenchmark", file, local, hub)


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
        ds = _hub(HUB["sickr"], split="test")
        return STSPairs(list(ds["sentence1"]), list(ds["sentence2"]), [float(s) for s in ds["score"]], ["sickr"] * len(ds))

    return _local_or_hub("sickr", "sick", file, local, hub)


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
        ds = _hub(HUB[name], split="test")
        return STSPairs(list(ds["sentence1"]), list(ds["sentence2"]), [float(s) for s in ds["score"]], [name] * len(ds))

    return _local_or_hub(name, "sts12-16", f"{folder}/STS.input.{subsets[0]}.txt", local, hub)


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

    Online, or offline from the hub cache: SimCSE's ``nli_for_simcse.csv`` (SNLI + MNLI,
    275,601 triplets). Otherwise offline: built from SNLI dev + test by grouping on the premise
    (the premises with both an entailment and a contradiction hypothesis, about 5.9k).
    """

    def local(path: Path) -> list[tuple[str, str, str]]:
        triplets: list[tuple[str, str, str]] = []
        for split in ("dev", "test"):
            read = lambda f: [line.strip() for line in open(path / f"{f}.{split}", encoding="utf-8").read().split("\n")]
            s1, s2, labels = read("s1"), read("s2"), read("labels")
            groups: OrderedDict[str, dict[str, str]] = OrderedDict()
            for p, h, y in zip(s1, s2, labels):
                if p and h and y:
                    groups.setdefault(p, {}).setdefault(y, h)
            triplets += [(p, g["entailment"], g["contradiction"]) for p, g in groups.items() if {"entailment", "contradiction"} <= g.keys()]
        return triplets

    def hub() -> list[tuple[str, str, str]]:
        with open(_hub_file(HUB["simcse"], "nli_for_simcse.csv"), encoding="utf-8", newline="") as f:
            return [(r["sent0"], r["sent1"], r["hard_neg"]) for r in csv.DictReader(f)]

    triplets = _local_or_hub("nli", "snli", "s1.dev", local, hub, hub_offline=True)
    return triplets[:limit] if limit is not None else triplets


def load_sentences(name: str = "wiki1m", limit: int | None = None) -> list[str]:
    """An unlabelled sentence corpus.

    * ``wiki1m`` — SimCSE's one million Wikipedia sentences (online, or offline from
      the hub cache; otherwise offline: the 11,914-sentence head in ``wiki1m_head/``,
      the truncated last line dropped);
    * ``stsb-train`` — the distinct sentences of STS-B train (scores unused).
    """
    if name == "stsb-train":
        sentences = load_stsb("train").sentences()
        return sentences[:limit] if limit is not None else sentences
    if name != "wiki1m":
        raise ValueError(f"unknown corpus {name!r}; choose 'wiki1m' or 'stsb-train'")
    file = "wiki1m_for_simcse.head1280000B.txt"

    def local(path: Path) -> list[str]:
        with open(path / file, encoding="utf-8") as f:
            lines = f.read().split("\n")
        if not (path / file).read_bytes().endswith(b"\n"):
            lines = lines[:-1]  # the last line stops mid-sentence
        return [s.strip() for s in lines if s.strip()]

    def hub() -> list[str]:
        with open(_hub_file(HUB["simcse"], "wiki1m_for_simcse.txt"), encoding="utf-8") as f:
            return [s.strip() for s in f if s.strip()]

    sentences = _local_or_hub("wiki1m", "wiki1m_head", file, local, hub, hub_offline=True)
    return sentences[:limit] if limit is not None else sentences
