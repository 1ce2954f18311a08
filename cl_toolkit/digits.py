"""Coloured digits with captions: an offline image–text data set for CLIP on a CPU.

scikit-learn ships 1,797 handwritten digits as 8×8 grey images (``load_digits``, inside
the package: nothing is downloaded). Each one is placed in one quadrant of a 16×16
canvas and coloured; its caption says what it shows::

    a red seven in the top left
    the digit seven in red, top left
    ...

An example is a :class:`Scene` — which image, which colour, which quadrant, which
caption template — and :func:`render` turns scenes into ``[N, 3, 16, 16]`` float
images. The colour *tints* the digit (intensity × an RGB triple), so yellow, magenta
and cyan mix two channels.

:func:`make_splits` holds out 30 % of the *images* (stratified by digit) and builds
the training scenes from the rest. Some (digit, colour) pairs can be kept out of
training altogether (``unseen_pairs``): the test of compositional generalisation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "COLOURS",
    "DIGIT_WORDS",
    "POSITIONS",
    "TEMPLATES",
    "Scene",
    "Splits",
    "caption",
    "collate_scenes",
    "digit_images",
    "make_splits",
    "render",
    "tokens",
]

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "magenta": (1.0, 0.0, 1.0),
    "cyan": (0.0, 1.0, 1.0),
}
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
# the captions the towers are trained on
TEMPLATES = (
    "a {colour} {digit} in the {position}",
    "the digit {digit} in {colour}, {position}",
    "{position}: a {colour} {digit}",
    "a {digit} drawn in {colour} at the {position}",
)
CANVAS = 16


@lru_cache(maxsize=1)
def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: images ``[1797, 8, 8]`` in ``[0, 1]`` and labels ``[1797]``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    images.setflags(write=False)
    labels = digits.target.astype(np.int64)
    labels.setflags(write=False)
    return images, labels


@dataclass(frozen=True)
class Scene:
    """One captioned image: digit image ``index`` drawn in ``colour`` at ``position``."""

    index: int  # row of digit_images()
    digit: int  # 0..9, the label of that image
    colour: int  # index into COLOURS
    position: int  # index into POSITIONS
    template: int = 0  # index into TEMPLATES

    @property
    def caption(self) -> str:
        return caption(self.digit, self.colour, self.position, self.template)


def caption(digit: int, colour: int, position: int, template: int | str = 0) -> str:
    """The caption of a scene; ``template`` is an index into TEMPLATES or a format string."""
    fmt = TEMPLATES[template] if isinstance(template, int) else template
    return fmt.format(
        digit=DIGIT_WORDS[digit], colour=list(COLOURS)[colour], position=POSITIONS[position], numeral=digit
    )


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens (punctuation dropped): the scratch text tower's tokeniser."""
    return re.findall(r"[a-z0-9]+", text.lower())


def render(scenes: Sequence[Scene]) -> Tensor:
    """Images ``[N, 3, 16, 16]`` in ``[0, 1]``: each digit tinted and placed in its quadrant."""
    images, _ = digit_images()
    rgb = np.asarray(list(COLOURS.values()), dtype=np.float32)  # [C, 3]
    out = np.zeros((len(scenes), 3, CANVAS, CANVAS), dtype=np.float32)
    half = CANVAS // 2
    for i, s in enumerate(scenes):
        r, c = divmod(s.position, 2)  # top/bottom, left/right
        out[i, :, r * half : (r + 1) * half, c * half : (c + 1) * half] = (
            rgb[s.colour][:, None, None] * images[s.index][None]
        )  # [3, 8, 8]
    return torch.from_numpy(out)


def collate_scenes(scenes: Sequence[Scene], tokenize=None) -> dict:
    """A training batch: ``images [B, 3, 16, 16]``, ``captions`` (a list of strings; with
    ``tokenize``, also ``text = tokenize(captions)``) and the labels ``digit``, ``colour``,
    ``position`` ``[B]``."""
    captions = [s.caption for s in scenes]
    batch = {
        "images": render(scenes),
        "captions": captions,
        "digit": torch.tensor([s.digit for s in scenes]),
        "colour": torch.tensor([s.colour for s in scenes]),
        "position": torch.tensor([s.position for s in scenes]),
    }
    if tokenize is not None:
        batch["text"] = tokenize(captions)
    return batch


@dataclass
class Splits:
    train: list[Scene]  # training scenes (several per training image)
    test: list[Scene]  # one scene per held-out image, in a (digit, colour) pair seen in training
    unseen: list[Scene]  # the same held-out images, each in a (digit, colour) pair never trained on
    train_images: np.ndarray  # indices of the training images
    test_images: np.ndarray  # indices of the held-out images
    unseen_pairs: frozenset[tuple[int, int]]  # (digit, colour) never in training


def _draw(rng: np.random.Generator, index: int, digit: int, colours: Sequence[int]) -> Scene:
    return Scene(
        index=int(index),
        digit=int(digit),
        colour=int(rng.choice(colours)),
        position=int(rng.integers(len(POSITIONS))),
        template=int(rng.integers(len(TEMPLATES))),
    )


def make_splits(
    test_size: float = 0.3,
    scenes_per_image: int = 8,
    unseen_pairs: Iterable[tuple[int, int]] | None = None,
    seed: int = 0,
) -> Splits:
    """Hold out ``test_size`` of the images (stratified by digit) and draw the scenes.

    Every training image appears in ``scenes_per_image`` scenes with a random colour,
    quadrant and template, never in a pair of ``unseen_pairs``. By default the unseen
    pairs are ``(d, d mod 6)``: each digit misses one colour, each colour one or two digits.
    """
    from sklearn.model_selection import train_test_split

    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}")
    if scenes_per_image < 1:
        raise ValueError(f"scenes_per_image must be at least 1, got {scenes_per_image!r}")
    n_colours = len(COLOURS)
    if unseen_pairs is None:
        unseen_pairs = [(d, d % n_colours) for d in range(10)]
    unseen = frozenset((int(d), int(c)) for d, c in unseen_pairs)
    for d, c in unseen:
        if not (0 <= d < 10 and 0 <= c < n_colours):
            raise ValueError(f"unseen_pairs holds ({d}, {c}): digits are 0..9, colours 0..{n_colours - 1}")
    allowed = {d: [c for c in range(n_colours) if (d, c) not in unseen] for d in range(10)}
    if any(not cs for cs in allowed.values()):
        raise ValueError("unseen_pairs leaves a digit with no colour to train on; hold out fewer pairs")
    _, labels = digit_images()
    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(idx, test_size=test_size, stratify=labels, random_state=seed)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    rng = np.random.default_rng(seed)
    train = [_draw(rng, i, labels[i], allowed[labels[i]]) for i in train_idx for _ in range(scenes_per_image)]
    test = [_draw(rng, i, labels[i], allowed[labels[i]]) for i in test_idx]
    held = {d: [c for (dd, c) in unseen if dd == d] for d in range(10)}
    unseen_scenes = [_draw(rng, i, labels[i], held[labels[i]]) for i in test_idx if held[labels[i]]]
    return Splits(train, test, unseen_scenes, train_idx, test_idx, unseen)
