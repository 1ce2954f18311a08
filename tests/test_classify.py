"""Few-shot classification (cl_toolkit.classify), checked against the ``setfit`` package,
sentence-transformers' ``CosineSimilarityLoss`` and plain loops."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch

from cl_toolkit.classify import (
    CEFineTune,
    EmbeddingCache,
    SetFitRecipe,
    SupConRecipe,
    accuracy,
    class_geometry,
    few_shot,
    load_task,
    probe_accuracy,
    setfit_pairs,
    stratified_split,
)
from cl_toolkit.data import LabelledTexts
from cl_toolkit.run import run

TOY = LabelledTexts(
    [f"text {i}" for i in range(30)],
    [i % 3 for i in range(30)],
    ["a", "b", "c"],
)


# --------------------------------------------------------------------------- sampling
def test_few_shot_per_class_nested_and_seeded():
    eight, four = few_shot(TOY, 8, seed=1), few_shot(TOY, 4, seed=1)
    assert eight.counts() == {"a": 8, "b": 8, "c": 8}
    assert set(four.texts) < set(eight.texts)  # nested for one seed
    assert few_shot(TOY, 4, seed=1) == four
    assert few_shot(TOY, 4, seed=2).texts != four.texts
    for text, label in zip(eight.texts, eight.labels):
        assert int(text.split()[1]) % 3 == label


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: few_shot(TOY, 11, 0), ["class 'a'", "10 examples", "shots=11"]),
        (lambda: few_shot(TOY, 0, 0), ["shots", "at least 1", "0"]),
        (lambda: stratified_split(TOY, 10), ["class 'a'", "per_class=10", "lower it"]),
        (lambda: setfit_pairs(["x", "y"], [0, 0], 1), ["at least two classes"]),
        (lambda: setfit_pairs(["x", "y"], [0, 1], 0), ["iterations", "0"]),
        (lambda: load_task("imdb"), ["task", "'imdb'", "trec"]),
        (lambda: SetFitRecipe(task="imdb"), ["task", "'imdb'"]),
        (lambda: accuracy([1, 2], [1]), ["predicted", "labels", "shape"]),
    ],
)
def test_errors_name_the_argument(call, words):
    with pytest.raises(ValueError) as err:
        call()
    for w in words:
        assert w in str(err.value)


def test_stratified_split_is_disjoint_and_stratified():
    rest, held = stratified_split(TOY, 3, seed=0)
    assert held.counts() == {"a": 3, "b": 3, "c": 3}
    assert len(rest) == 21 and not set(rest.texts) & set(held.texts)


def test_ag_news_split_is_stratified_and_disjoint(data_dir):
    pool, test = load_task("ag_news", ag_news_test_per_class=50)
    assert set(test.counts().values()) == {50} and len(pool) == 7600 - 200
    assert pool.counts() == {name: 1900 - 50 for name in pool.label_names}
    assert load_task("ag_news", ag_news_test_per_class=50)[1] is test  # cached, one split


# --------------------------------------------------------------------------- SetFit pairs and loss
def _setfit_dataset(texts, labels, iterations):
    from setfit.sampler import ContrastiveDataset

    pairs = ContrastiveDataset(list(texts), list(labels), multilabel=False, num_iterations=iterations)
    return [(p["sentence_1"], p["sentence_2"], p["label"]) for p in pairs]


@pytest.mark.parametrize("iterations", [1, 3])
def test_setfit_pairs_equal_the_setfit_package(iterations):
    texts, labels = TOY.texts[:11], TOY.labels[:11]
    ours = setfit_pairs(texts, labels, iterations, seed=42)
    assert len(ours) == 2 * iterations * 11
    assert ours == _setfit_dataset(texts, labels, iterations)
    assert setfit_pairs(texts, labels, iterations, seed=0) != ours  # the seed matters


def test_setfit_pairs_by_brute_force():
    texts, labels = TOY.texts[:7], TOY.labels[:7]
    pairs = setfit_pairs(texts, labels, 50, seed=3)
    label = dict(zip(texts, labels))
    assert all(t == float(label[a] == label[b]) for a, b, t in pairs)
    every = {frozenset((a, b)) for a, b in itertools.combinations_with_replacement(texts, 2)}
    assert {frozenset((a, b)) for a, b, _ in pairs} == every  # 50 iterations cover all pairs


def test_setfit_step_equals_sentence_transformers_cosine_loss(minilm, minilm_st):
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss

    train = few_shot(load_task("trec")[0], 2, seed=0)
    batch = setfit_pairs(train.texts, train.labels, 1, seed=0)[:8]
    a, b, target = zip(*batch)
    minilm_st.eval()
    with torch.no_grad():
        ours = SetFitRecipe().step(minilm, batch)
        features = [minilm_st.tokenize(list(a)), minilm_st.tokenize(list(b))]
        theirs = CosineSimilarityLoss(minilm_st)(features, torch.tensor(target))
    assert torch.allclose(ours, theirs, atol=1e-5), (ours, theirs)


# --------------------------------------------------------------------------- SupCon and CE steps
def test_supcon_step_views_are_dropout_views(tiny):
    recipe = SupConRecipe(views=2)
    batch = list(zip(TOY.texts[:6], TOY.labels[:6]))
    tiny.train()
    torch.manual_seed(0)
    loss = recipe.step(tiny, batch)
    tiny.eval()
    still = recipe.step(tiny, batch)  # no dropout: both views identical, a different loss
    assert torch.isfinite(loss) and not torch.allclose(loss, still)


def test_ce_fine_tune_learns_the_training_set(tiny):
    recipe = CEFineTune(task="trec", shots=4, seed=0, epochs=30.0, batch_size=8, lr=1e-3)
    model = run(recipe, model=_classifier(tiny)).model
    train = recipe.train_set()
    assert accuracy(model.predict(train.texts), train.labels) > 0.9


def _classifier(encoder):
    from cl_toolkit.classify import EncoderClassifier

    torch.manual_seed(0)
    return EncoderClassifier(encoder, 6)


# --------------------------------------------------------------------------- geometry and probes
def test_class_geometry_against_loops():
    rng = np.random.RandomState(0)
    z = rng.randn(12, 5).astype(np.float32)
    y = [0] * 5 + [1] * 7
    geo = class_geometry(z, y, ["p", "q"])
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    for c, name in enumerate(["p", "q"]):
        rows = [u[i] for i in range(12) if y[i] == c]
        d2 = [np.sum((r - s) ** 2) for r, s in itertools.combinations(rows, 2)]
        assert geo[name]["alignment"] == pytest.approx(np.mean(d2), rel=1e-5)
        assert geo[name]["uniformity"] == pytest.approx(np.log(np.mean(np.exp(-2 * np.array(d2)))), rel=1e-4)
    assert geo["all"]["alignment"] == pytest.approx((geo["p"]["alignment"] + geo["q"]["alignment"]) / 2)


def test_embedding_cache_encodes_each_text_once(minilm):
    cache = EmbeddingCache(minilm)
    first = cache(["a cat", "a dog", "a cat"])
    assert len(cache) == 2 and np.allclose(first[0], first[2])
    assert np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
    direct = minilm.encode(["a dog"], normalize=True).numpy()
    assert np.allclose(cache(["a dog"]), direct, atol=1e-6)


# --------------------------------------------------------------------------- the setfit package as oracle
def test_setfit_recipe_within_noise_of_the_setfit_package(minilm):
    """TREC, 8 questions per class, 2 pair iterations, 3 seeds, 200 test questions: the
    accuracy of SetFitRecipe + logistic regression is within noise of setfit's own."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from cl_toolkit.models import MINILM
    from cl_toolkit.stats import within_noise

    pool, test = load_task("trec")
    test = test.subset(np.random.RandomState(0).permutation(len(test))[:200])
    frozen = EmbeddingCache(minilm)
    ours, theirs, base = [], [], []
    for seed in range(3):
        recipe = SetFitRecipe(task="trec", shots=8, seed=seed, iterations=2, max_length=64)
        train = recipe.train_set()
        encoder = run(recipe, model=copy.deepcopy(minilm)).model
        ours.append(probe_accuracy(encoder, train, test))
        model = SetFitModel.from_pretrained(MINILM)
        args = TrainingArguments(batch_size=16, num_epochs=1, num_iterations=2, seed=seed, max_length=64,
                                 report_to="none")
        Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": train.texts, "label": train.labels})).train()
        theirs.append(accuracy(model.predict(test.texts).numpy(), test.labels))
        base.append(probe_accuracy(frozen, train, test))
    print("ours", ours, "setfit", theirs, "frozen", base)
    assert within_noise(ours, theirs, k=2) or abs(np.mean(ours) - np.mean(theirs)) < 0.02, (ours, theirs)
    # both train: each is above the frozen encoder's accuracy on the same examples
    assert np.mean(ours) > np.mean(base) and np.mean(theirs) > np.mean(base), (ours, theirs, base)


def test_a_batch_larger_than_the_data_is_cut_to_the_data():
    config = SupConRecipe(batch_size=32, epochs=5.0).train_config(16)
    assert config.batch_size == 16 and config.steps == 5
    assert SupConRecipe(batch_size=32, epochs=5.0).train_config(48).batch_size == 32
    setfit = SetFitRecipe(batch_size=16, epochs=1.0).train_config(192)
    assert setfit.steps == 12 and setfit.warmup_steps == 1  # SetFit's 10 % warm-up
