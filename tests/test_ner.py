"""NER: seqeval against hand-counted entities and a plain span extractor; label helpers; taggers."""

import pytest
import torch

from cl_toolkit.ner import (
    TokenCE, TokenSupCon, entity_scores, entity_spans, first_subword_labels, io_labels, io_to_bio,
    nearest_neighbour_tags, sample_few_shot, token_data,
)
from cl_toolkit.run import run

TYPES = ("person", "location")


def test_entity_f1_hand_counted():
    true = [["B-person", "I-person", "O", "B-location"], ["O", "B-person", "O"]]
    pred = [["B-person", "I-person", "O", "B-person"], ["O", "B-person", "B-location"]]
    # gold entities: 3 (2 person, 1 location); predicted: 4; correct: 2 (both persons)
    s = entity_scores(true, pred)
    assert s["precision"] == pytest.approx(2 / 4)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert s["f1_location"] == 0.0
    # person: P = 2/3, R = 1
    assert s["f1_person"] == pytest.approx(0.8)


def test_entity_spans_agree_with_seqeval():
    from seqeval.metrics.sequence_labeling import get_entities

    for tags in (["B-person", "I-person", "I-location", "O", "I-person"], ["I-x", "I-x", "B-x", "O"],
                 ["O", "O"], ["B-a", "I-b", "I-b"]):
        ref = {(t, s, e + 1) for t, s, e in get_entities(tags)}
        assert entity_spans(tags) == ref, tags


def test_label_helpers():
    assert first_subword_labels([None, 0, 0, 1, None], [3, 5]) == [-100, 3, -100, 5, -100]
    tags = ["B-person", "I-person", "O", "B-location", "B-location"]
    ids = io_labels(tags, TYPES)
    assert ids == [1, 1, 0, 2, 2]
    # IO cannot separate two adjacent entities of one type: they merge
    assert io_to_bio(ids, TYPES) == ["B-person", "I-person", "O", "B-location", "I-location"]


def test_few_shot_sampling():
    data = [(["w"], ["B-person"])] * 4 + [(["w"], ["B-location"])] * 3 + [(["w"], ["O"])]
    idx = sample_few_shot(data, TYPES, k=2, seed=1)
    assert len(idx) == len(set(idx)) == 4
    assert all("B-person" in data[i][1] for i in idx[:2]) and all("B-location" in data[i][1] for i in idx[2:])
    assert idx == sample_few_shot(data, TYPES, k=2, seed=1)
    with pytest.raises(ValueError, match="only 3 sentences hold type 'location'"):
        sample_few_shot(data, TYPES, k=4)


def _toy():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=g) * 3
    vecs = [centres[torch.tensor(y)] + 0.3 * torch.randn(len(y), 8, generator=g) for y in ([0, 1, 2, 0] * 5,)]
    return vecs, [[0, 1, 2, 0] * 5]


def test_taggers_learn_separable_toy():
    vecs, labels = _toy()
    data = token_data(vecs, labels)
    ce = run(TokenCE(dim=8, n_classes=3, steps=60, batch_size=20, lr=0.05), data=data)
    assert TokenCE.predict(ce.model, vecs) == labels
    sc = run(TokenSupCon(dim=8, proj_dim=4, steps=30, batch_size=20), data=data)
    assert sc.result.train_history[-1]["loss"] < sc.result.train_history[0]["loss"]
    x = torch.cat(vecs)
    y = torch.tensor(labels[0])
    assert nearest_neighbour_tags(x, y, vecs, sc.model) == labels


def test_token_classifier_fits_a_toy_set_and_aligns_words():
    from cl_toolkit.models import Encoder
    from cl_toolkit.ner import TokenClassifier, _Tagger, bio_tags

    types = ("person", "location")
    assert bio_tags(types) == ["O", "B-person", "I-person", "B-location", "I-location"]
    data = [
        (["john", "smith", "went", "to", "paris"], ["B-person", "I-person", "O", "O", "B-location"]),
        (["mary", "lives", "in", "berlin"], ["B-person", "O", "O", "B-location"]),
        (["unbelievably", "london"], ["O", "B-location"]),  # a word of several WordPieces
    ] * 4
    enc = Encoder.tiny(seed=0, dropout=0.0)
    recipe = TokenClassifier(types=types, steps=60, batch_size=6, lr=3e-3, warmup_steps=0)
    tagger = _Tagger(enc.model, enc.tokenizer, len(bio_tags(types)), max_length=32)
    out = run(recipe, model=tagger, data=data)
    pred = recipe.predict(out.model, [w for w, _ in data[:3]])
    assert [len(p) for p in pred] == [5, 4, 2]
    assert pred == [t for _, t in data[:3]]
    with pytest.raises(ValueError, match="B-product"):
        recipe.collate([(["x"], ["B-product"])])
