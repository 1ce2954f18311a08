"""CLIP: the loss against a float64 loop from the paper and transformers' CLIP loss, the
logit scale, the coloured-digits data, the towers, zero-shot and retrieval helpers,
the recipe through ``run``, and the full profile's hub path on a tiny stand-in, offline."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cl_toolkit.clip import (
    CIFAR10_CLASSES,
    CIFAR10_TEMPLATES,
    CLIP,
    CLIPRecipe,
    ImageTower,
    LockedTextTower,
    ScratchTextTower,
    all_captions,
    class_embeddings,
    clip_loss,
    pretrained_zero_shot,
    recall_at_k,
    zero_shot_predict,
)
from cl_toolkit.digits import (
    COLOURS,
    POSITIONS,
    TEMPLATES,
    Scene,
    caption,
    collate_scenes,
    digit_images,
    make_splits,
    render,
    tokens,
)
from cl_toolkit.losses import symmetric_info_nce
from cl_toolkit.run import run


# --------------------------------------------------------------------------- the loss
def clip_loss_loop(img: np.ndarray, txt: np.ndarray, scale: float) -> float:
    """CLIP's loss one row and one column at a time, in float64 (Radford et al. 2021, Fig. 3)."""
    u = img / np.linalg.norm(img, axis=1, keepdims=True)
    v = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    n = len(u)
    total = 0.0
    for i in range(n):
        row = [scale * float(u[i] @ v[j]) for j in range(n)]  # image i against every text
        col = [scale * float(u[j] @ v[i]) for j in range(n)]  # text i against every image
        total += -(row[i] - math.log(sum(math.exp(x) for x in row)))
        total += -(col[i] - math.log(sum(math.exp(x) for x in col)))
    return total / (2 * n)


@pytest.mark.parametrize("n,d,scale", [(2, 3, 1.0), (7, 5, 14.3), (16, 8, 100.0)])
def test_clip_loss_matches_a_float64_loop(n, d, scale):
    g = torch.Generator().manual_seed(n)
    img, txt = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    got = clip_loss(img, txt, scale)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(clip_loss_loop(img.numpy().astype(np.float64), txt.numpy().astype(np.float64), scale), rel=1e-5)


def test_clip_loss_gradients_match_float64_autograd():
    g = torch.Generator().manual_seed(0)
    img = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    txt = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    log_s = torch.tensor(math.log(1 / 0.07), dtype=torch.float64, requires_grad=True)
    # reference: the paper's pseudo-code in float64, written independently of clip_loss
    logits = F.normalize(img, dim=1) @ F.normalize(txt, dim=1).T * log_s.exp()
    labels = torch.arange(6)
    ref = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    ref_grads = torch.autograd.grad(ref, (img, txt, log_s))
    img32 = img.detach().float().requires_grad_()
    txt32 = txt.detach().float().requires_grad_()
    log32 = log_s.detach().float().requires_grad_()
    got = clip_loss(img32, txt32, log32.exp())
    grads = torch.autograd.grad(got, (img32, txt32, log32))
    for a, b in zip(grads, ref_grads):
        assert torch.allclose(a.double(), b, atol=1e-6)
    assert grads[2].abs().item() > 0  # the scale learns


def test_clip_loss_equals_symmetric_info_nce_and_transformers():
    from transformers.models.clip import modeling_clip

    # transformers' own CLIP loss (named clip_loss before transformers 5)
    image_text_contrastive_loss = getattr(modeling_clip, "image_text_contrastive_loss", None) or modeling_clip.clip_loss

    g = torch.Generator().manual_seed(1)
    img, txt = torch.randn(10, 6, generator=g), torch.randn(10, 6, generator=g)
    ours = clip_loss(img, txt, 1 / 0.07)
    assert torch.allclose(ours, symmetric_info_nce(img, txt, temperature=0.07), atol=1e-6)
    # transformers' CLIP takes logits_per_text = s * text @ image.T
    sim = F.normalize(txt, dim=1) @ F.normalize(img, dim=1).T / 0.07
    assert torch.allclose(ours, image_text_contrastive_loss(sim), atol=1e-6)


def test_clip_loss_control_one_direction_is_not_enough():
    """The check above can fail: InfoNCE over the rows alone differs from the symmetric loss."""
    g = torch.Generator().manual_seed(2)
    img, txt = torch.randn(10, 6, generator=g), torch.randn(10, 6, generator=g)
    rows_only = F.cross_entropy(F.normalize(img, dim=1) @ F.normalize(txt, dim=1).T / 0.07, torch.arange(10))
    assert not torch.allclose(rows_only, clip_loss(img, txt, 1 / 0.07), atol=1e-3)


@pytest.mark.parametrize(
    "img,txt,scale,match",
    [
        (torch.randn(4, 3), torch.randn(5, 3), 1.0, "same shape"),
        (torch.randn(4), torch.randn(4), 1.0, r"shape \[N, d\]"),
        (torch.randn(1, 3), torch.randn(1, 3), 1.0, "at least 2"),
        (torch.randn(4, 3), torch.randn(4, 3), -1.0, "logit_scale must be a positive"),
        (torch.randn(4, 3), torch.randn(4, 3), float("nan"), "logit_scale must be a positive"),
    ],
)
def test_clip_loss_errors(img, txt, scale, match):
    with pytest.raises(ValueError, match=match):
        clip_loss(img, txt, scale)


# --------------------------------------------------------------------------- the logit scale
def test_logit_scale_starts_at_one_over_007_and_is_clipped_at_100():
    model = CLIP(ImageTower(8), ScratchTextTower(["a"], 8))
    assert model.logit_scale.item() == pytest.approx(1 / 0.07, rel=1e-6)
    with torch.no_grad():
        model.log_scale.fill_(math.log(500))
    assert model.logit_scale.item() == pytest.approx(100.0)
    img, txt = torch.randn(4, 8), torch.randn(4, 8)
    clip_loss(img, txt, model.logit_scale).backward()
    assert model.log_scale.grad.item() == 0.0  # clipped: no push further up
    with pytest.raises(ValueError, match="init_temperature"):
        CLIP(ImageTower(8), ScratchTextTower(["a"], 8), init_temperature=0.0)
    with pytest.raises(ValueError, match="max_logit_scale"):
        CLIP(ImageTower(8), ScratchTextTower(["a"], 8), init_temperature=0.001, max_logit_scale=100)


def test_optimizer_groups_decay_only_matrices_and_give_the_scale_its_lr():
    model = CLIP(ImageTower(8), ScratchTextTower(["a", "b"], 8))
    opt = model.configure_optimizer(lr=1e-3, weight_decay=0.2, scale_lr=1e-2)
    decay, no_decay, scale = opt.param_groups
    assert decay["weight_decay"] == 0.2 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() < 2 or p is model.text.pos for p in no_decay["params"])
    assert scale["params"] == [model.log_scale] and scale["lr"] == 1e-2 and scale["weight_decay"] == 0.0
    n = sum(len(g["params"]) for g in opt.param_groups)
    assert n == len([p for p in model.parameters() if p.requires_grad])
    assert not any(p is model.text.pos for p in decay["params"])  # positions do not decay
    fixed = CLIP(ImageTower(8), ScratchTextTower(["a"], 8), learn_scale=False)
    assert len(fixed.configure_optimizer().param_groups) == 2


# --------------------------------------------------------------------------- data
def test_digits_are_sklearns_and_offline():
    from sklearn.datasets import load_digits

    images, labels = digit_images()
    ref = load_digits()
    assert images.shape == (1797, 8, 8) and images.max() == 1.0 and images.min() == 0.0
    assert np.array_equal(labels, ref.target) and np.allclose(images * 16, ref.images)


def test_render_places_and_tints_the_digit():
    images, labels = digit_images()
    for colour, rgb in enumerate(COLOURS.values()):
        for position in range(4):
            x = render([Scene(5, int(labels[5]), colour, position)])[0]  # [3, 16, 16]
            r, c = divmod(position, 2)
            block = x[:, r * 8 : r * 8 + 8, c * 8 : c * 8 + 8]
            assert x.abs().sum() == pytest.approx(block.abs().sum())  # nothing outside the quadrant
            for ch in range(3):
                assert torch.allclose(block[ch], torch.tensor(images[5]) * rgb[ch])


def test_captions_and_tokens():
    assert caption(7, 0, 0, 0) == "a red seven in the top left"
    assert caption(3, 5, 3, 2) == "bottom right: a cyan three"
    assert caption(7, 1, 2, "the number {numeral}") == "the number 7"
    assert tokens("Bottom right: a cyan three") == ["bottom", "right", "a", "cyan", "three"]
    assert len(set(all_captions())) == 10 * len(COLOURS) * len(POSITIONS) * len(TEMPLATES)


def test_splits_hold_out_30_percent_of_the_images_and_the_unseen_pairs():
    sp = make_splits(seed=0)
    _, labels = digit_images()
    assert len(sp.test_images) == math.ceil(0.3 * 1797) and not set(sp.test_images) & set(sp.train_images)
    assert {s.index for s in sp.train} == set(sp.train_images)
    assert [s.index for s in sp.test] == list(sp.test_images)
    assert len(sp.train) == 8 * len(sp.train_images)
    # stratified: every digit keeps about 30 % of its images for the test
    for d in range(10):
        share = (labels[sp.test_images] == d).sum() / (labels == d).sum()
        assert 0.27 < share < 0.33
    assert sp.unseen_pairs == {(d, d % 6) for d in range(10)}
    assert not any((s.digit, s.colour) in sp.unseen_pairs for s in sp.train + sp.test)
    assert all((s.digit, s.colour) in sp.unseen_pairs for s in sp.unseen) and len(sp.unseen) == len(sp.test)
    assert all(s.digit == labels[s.index] for s in sp.train + sp.test + sp.unseen)
    again = make_splits(seed=0)
    assert again.train == sp.train and again.test == sp.test
    assert make_splits(seed=1).train != sp.train


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"test_size": 1.5}, "test_size"),
        ({"scenes_per_image": 0}, "scenes_per_image"),
        ({"unseen_pairs": [(10, 0)]}, "unseen_pairs"),
        ({"unseen_pairs": [(0, c) for c in range(6)]}, "no colour"),
    ],
)
def test_split_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_splits(**kwargs)


def test_collate():
    sp = make_splits(seed=0, scenes_per_image=1)
    tower = ScratchTextTower({w for c in all_captions() for w in tokens(c)}, 8)
    batch = collate_scenes(sp.train[:5], tower.tokenize)
    assert batch["images"].shape == (5, 3, 16, 16)
    assert batch["captions"] == [s.caption for s in sp.train[:5]]
    assert batch["text"]["input_ids"].shape[0] == 5 and "text" not in collate_scenes(sp.train[:5])
    assert batch["digit"].tolist() == [s.digit for s in sp.train[:5]]


# --------------------------------------------------------------------------- towers
def test_scratch_tower_reads_only_its_vocabulary_and_ignores_padding():
    torch.manual_seed(0)
    tower = ScratchTextTower(["a", "red", "seven"], dim=8, max_length=6).eval()
    batch = tower.tokenize(["a red seven", "a 7", "a crimson seven in the top left corner"])
    assert batch["input_ids"][0].tolist()[:3] == [tower.vocab["a"], tower.vocab["red"], tower.vocab["seven"]]
    assert batch["input_ids"][1].tolist()[:2] == [tower.vocab["a"], 1]  # "7" is [UNK]
    assert batch["input_ids"].shape[1] == 6  # truncated at max_length
    assert tower.unknown_fraction(["a 7", "a red seven"]) == pytest.approx(1 / 5)
    together = tower.encode(["a red seven", "a red seven seven a red"])
    alone = tower.encode(["a red seven"])
    assert torch.allclose(together[0], alone[0], atol=1e-5)  # padding does not leak in
    with pytest.raises(ValueError, match="single string"):
        tower.tokenize("a red seven")


class CountingEncoder:
    """A stand-in sentence encoder that counts what it is asked to encode."""

    dim = 5

    def __init__(self):
        self.seen: list[str] = []

    def encode(self, texts, batch_size=64, normalize=False):
        self.seen += list(texts)
        out = torch.stack([torch.tensor([float(len(t)), float(t.count("a")), 1.0, 2.0, 3.0]) for t in texts])
        return F.normalize(out, dim=-1) if normalize else out


def test_locked_tower_encodes_each_text_once_and_trains_only_its_head():
    enc = CountingEncoder()
    tower = LockedTextTower(enc, dim=3)
    assert tower.precompute(["a b", "c", "a b"]) == 2
    out = tower.encode(["a b", "c", "dd"])
    assert sorted(enc.seen) == ["a b", "c", "dd"]  # "dd" on demand, nothing twice
    tower.encode(["a b", "dd"])
    assert len(enc.seen) == 3
    ref = tower.head(F.normalize(CountingEncoder().encode(["a b", "c", "dd"]), dim=-1))
    assert torch.allclose(out, ref.detach())
    assert [n for n, _ in tower.named_parameters()] == ["head.weight", "head.bias"]
    assert set(tower.state_dict()) == {"head.weight", "head.bias"}


def test_locked_tower_over_minilm_equals_sentence_transformers(minilm_st):
    from cl_toolkit.models import MINILM, Encoder

    tower = LockedTextTower(Encoder.from_pretrained(MINILM, pooling="mean", max_length=32).eval(), dim=4)
    texts = ["a red seven in the top left", "the number 7"]
    ref = minilm_st.encode(texts, convert_to_tensor=True, normalize_embeddings=True)
    assert torch.allclose(tower.tokenize(texts), ref.cpu(), atol=1e-5)


def test_image_tower_shapes_and_errors():
    tower = ImageTower(dim=12)
    assert tower(torch.zeros(3, 3, 16, 16)).shape == (3, 12)
    assert tower.encode(torch.zeros(1030, 3, 16, 16)).shape == (1030, 12)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        tower(torch.zeros(3, 16, 16))


# --------------------------------------------------------------------------- zero-shot and retrieval
def test_class_embeddings_ensemble_normalised_prompts():
    table = {"a": torch.tensor([3.0, 0.0]), "b": torch.tensor([0.0, 1.0]), "c": torch.tensor([1.0, 1.0])}
    encode = lambda texts: torch.stack([table[t] for t in texts])  # noqa: E731
    emb = class_embeddings(encode, [["a", "b"], "c"])
    # the mean of unit vectors (1, 0) and (0, 1), normalised: not the mean of the raw vectors
    assert torch.allclose(emb[0], torch.tensor([1.0, 1.0]) / math.sqrt(2))
    assert torch.allclose(emb[1], torch.tensor([1.0, 1.0]) / math.sqrt(2))
    with pytest.raises(ValueError, match="class 1 has no prompt"):
        class_embeddings(encode, [["a"], []])
    pred = zero_shot_predict(torch.tensor([[1.0, 0.1], [-1.0, 2.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert pred.tolist() == [0, 1]


def test_recall_at_k_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    q, items = torch.randn(30, 4, generator=g), torch.randn(40, 4, generator=g)
    ql, il = torch.randint(3, (30, 2), generator=g), torch.randint(3, (40, 2), generator=g)
    got = recall_at_k(q, items, ql, il, ks=(1, 5))
    sim = F.normalize(q, dim=1) @ F.normalize(items, dim=1).T
    for k in (1, 5):
        hits = 0
        for i in range(30):
            order = sorted(range(40), key=lambda j: -sim[i, j].item())[:k]
            hits += any(bool((il[j] == ql[i]).all()) for j in order)
        assert got[k] == pytest.approx(hits / 30)
    # without labels the i-th item is the one relevant item
    same = recall_at_k(q, q + 0.01, ks=(1,))
    assert same[1] == 1.0
    with pytest.raises(ValueError, match="both"):
        recall_at_k(q, items, ql, None)


# --------------------------------------------------------------------------- the recipe through run
def test_recipe_trains_through_run_and_zero_shot_beats_chance():
    recipe = CLIPRecipe(steps=60, batch_size=64, scenes_per_image=2, seed=0)
    result = run(recipe, device="cpu")
    losses = [r["loss"] for r in result.history]
    assert len(losses) == 60 and np.mean(losses[-10:]) < np.mean(losses[:10]) - 1.0
    assert result.history[0]["logit_scale"] == pytest.approx(1 / 0.07, rel=0.01)
    model, sp = result.model, recipe.splits()
    img = model.image.encode(render(sp.test))
    colour_prompts = [[caption(d, c, p, 0) for d in range(10) for p in range(4)] for c in range(len(COLOURS))]
    pred = zero_shot_predict(img, class_embeddings(model.text.encode, colour_prompts))
    acc = (pred == torch.tensor([s.colour for s in sp.test])).float().mean().item()
    assert acc > 0.5  # chance is 1/6
    with pytest.raises(ValueError, match="text_tower"):
        CLIPRecipe(text_tower="bert")


def test_recipe_profiles():
    assert CLIPRecipe.for_profile("quick").steps == 300
    assert CLIPRecipe.for_profile("full").steps == 1000
    assert CLIPRecipe.for_profile("quick", text_tower="minilm").text_tower == "minilm"


# --------------------------------------------------------------------------- the full profile, offline


def _tiny_clip(folder):
    """A random CLIP in the hub layout: byte-level BPE vocabulary, 32×32 images, width 32."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    from transformers.models.clip import CLIPImageProcessorPil

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars])}
    merges = ["p h", "ph o", "pho t", "phot o</w>"]
    for m in merges:
        vocab.setdefault(m.replace(" ", ""), len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    eos = vocab["<|endoftext|>"]
    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, bos_token_id=vocab["<|startoftext|>"], eos_token_id=eos, pad_token_id=eos)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  image_size=32, patch_size=8)
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)


@pytest.fixture
def clip_hub(hub_cache):
    snap = hub_cache("openai/clip-vit-base-patch32")
    _tiny_clip(snap)
    return "openai/clip-vit-base-patch32"


def test_full_profile_zero_shot_runs_offline_and_agrees_with_clipmodel(clip_hub):
    from PIL import Image
    from transformers import CLIPModel, CLIPTokenizer
    from transformers.models.clip import CLIPImageProcessorPil

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)) for _ in range(12)]
    labels = [i % 10 for i in range(12)]
    got = pretrained_zero_shot(clip_hub, images, labels, batch_size=5)
    assert set(got) == {"single", "ensemble"} and all(0 <= v <= 1 for v in got.values())
    # the same single-prompt predictions through CLIPModel's own forward pass
    model = CLIPModel.from_pretrained(clip_hub).eval()
    assert model.config.projection_dim == 16  # the stand-in, found by its hub name
    tok, proc = CLIPTokenizer.from_pretrained(clip_hub), CLIPImageProcessorPil.from_pretrained(clip_hub)
    texts = [CIFAR10_TEMPLATES[0].format(c) for c in CIFAR10_CLASSES]
    with torch.no_grad():
        out = model(**tok(texts, padding=True, return_tensors="pt"),
                    pixel_values=proc(images=images, return_tensors="pt")["pixel_values"])
    ref = (out.logits_per_image.argmax(1) == torch.tensor(labels)).float().mean().item()
    assert got["single"] == pytest.approx(ref)
    with pytest.raises(ValueError, match="equal length"):
        pretrained_zero_shot(clip_hub, images, labels[:3])


def test_transformers_clip_loss_equals_ours_on_the_stand_in(clip_hub):
    """transformers computes CLIP's loss inside CLIPModel(return_loss=True): ours agrees on its embeddings."""
    from transformers import CLIPModel, CLIPTokenizer

    model = CLIPModel.from_pretrained(clip_hub).eval()
    tok = CLIPTokenizer.from_pretrained(clip_hub)
    batch = tok(["a photo of a cat.", "a dog", "ship", "a photo"], padding=True, return_tensors="pt")
    pixels = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(**batch, pixel_values=pixels, return_loss=True)
    ours = clip_loss(out.image_embeds, out.text_embeds, model.logit_scale.exp())
    assert torch.allclose(ours, out.loss, atol=1e-5)
