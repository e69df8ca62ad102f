"""Augmentation: sane images, per-rank slices of one global draw, never applied to evaluation."""

from pathlib import Path

import torch

from lenet_dist.config import AugmentConfig
from lenet_dist.data.augment import augment_batch, batch_generator, random_affine
from lenet_dist.data.datasets import MNIST
from lenet_dist.data.tensors import load_split

CPU = torch.device("cpu")


def _digits(mnist_dir: Path, n: int = 256) -> torch.Tensor:
    return load_split(MNIST, mnist_dir, "test", n).images


def test_augmented_digits_keep_their_range_ink_and_shape(mnist_dir: Path):
    x = _digits(mnist_dir)
    y = random_affine(x, AugmentConfig(stroke=0, contrast=0), batch_generator(CPU, 0, 0, 0))
    assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    ink_ratio = y.sum((1, 2, 3)) / x.sum((1, 2, 3))
    assert float(ink_ratio.min()) > 0.7 and float(ink_ratio.max()) < 1.4  # zoom ±10%: ink ±~21%, minus clipping
    styled = random_affine(x, AugmentConfig(), batch_generator(CPU, 0, 0, 0))  # + stroke width and contrast
    ink_ratio = styled.sum((1, 2, 3)) / x.sum((1, 2, 3))
    assert float(styled.min()) >= 0.0 and float(styled.max()) <= 1.0
    assert float(ink_ratio.min()) > 0.3 and float(ink_ratio.max()) < 2.5 and float(ink_ratio.std()) > 0.1
    similarity = torch.nn.functional.cosine_similarity(x.flatten(1), y.flatten(1))
    assert float(similarity.median()) > 0.5, "still the same digit, slightly moved"
    assert not torch.equal(x, y)


def test_zero_strength_is_the_identity(mnist_dir: Path):
    x = _digits(mnist_dir, 32)
    y = random_affine(x, AugmentConfig(degrees=0, translate=0, scale=0, stroke=0, contrast=0),
                      batch_generator(CPU, 0, 0, 0))
    assert torch.allclose(x, y, atol=1e-5)


def test_draws_depend_on_position_only_and_split_across_ranks(mnist_dir: Path):
    x = _digits(mnist_dir, 64)
    cfg = AugmentConfig()
    whole = random_affine(x, cfg, batch_generator(CPU, 3, 1, 7))
    assert torch.equal(whole, random_affine(x, cfg, batch_generator(CPU, 3, 1, 7)))
    assert not torch.equal(whole, random_affine(x, cfg, batch_generator(CPU, 3, 1, 8)))
    halves = [random_affine(x[r * 32:(r + 1) * 32], cfg, batch_generator(CPU, 3, 1, 7), start=r * 32, total=64)
              for r in range(2)]
    assert torch.allclose(torch.cat(halves), whole, atol=1e-6), "the same images whatever the world size"


def test_mirror_and_erase_are_off_by_default_and_leave_the_default_draws_as_they_were():
    x = torch.rand(16, 1, 28, 28)
    cfg = AugmentConfig()
    assert torch.equal(augment_batch(x, cfg, batch_generator(CPU, 0, 0, 0), mirror_safe=True),
                       random_affine(x, cfg, batch_generator(CPU, 0, 0, 0)))


def test_mirror_auto_flips_only_where_the_dataset_allows_it():
    x = torch.rand(64, 1, 28, 28)
    still = AugmentConfig(degrees=0, translate=0, scale=0, stroke=0, contrast=0, mirror="auto")
    digits = augment_batch(x, still, batch_generator(CPU, 0, 0, 0), mirror_safe=False)
    clothes = augment_batch(x, still, batch_generator(CPU, 0, 0, 0), mirror_safe=True)
    assert torch.allclose(digits, x, atol=1e-5)
    flipped = [torch.allclose(c, o.flip(-1), atol=1e-5) for c, o in zip(clothes, x, strict=True)]
    kept = [torch.allclose(c, o, atol=1e-5) for c, o in zip(clothes, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and 16 < sum(flipped) < 48


def test_erasing_blanks_one_rectangle_and_is_the_same_split_over_ranks():
    x = torch.ones(64, 1, 28, 28)
    cfg = AugmentConfig(degrees=0, translate=0, scale=0, stroke=0, contrast=0, erase=1.0)
    whole = augment_batch(x, cfg, batch_generator(CPU, 1, 2, 3))
    blanked = (whole == 0).flatten(1).float().mean(1)
    assert ((blanked >= 0.015) & (blanked <= 0.3)).all(), "2-25% of each image, rounded to pixels"
    halves = [augment_batch(x[r * 32:(r + 1) * 32], cfg, batch_generator(CPU, 1, 2, 3), start=r * 32, total=64)
              for r in range(2)]
    assert torch.equal(torch.cat(halves), whole)


def test_test_mirror_is_off_by_default_and_auto_reads_mirrored_only_where_classes_survive():
    from lenet_dist.config import AugmentConfig
    from lenet_dist.data.augment import mirrors

    assert AugmentConfig().test_mirror is False
    assert [mirrors(s, safe) for s in (False, True, "auto") for safe in (False, True)] == \
        [False, False, True, True, False, True]


def test_pen_width_thickens_or_thins_strokes_and_zero_is_the_identity(mnist_dir: Path):
    from lenet_dist.data.augment import pen_width

    x = _digits(mnist_dir, 32)
    assert torch.equal(pen_width(x, 0.0), x)
    thick, thin = pen_width(x, 0.5), pen_width(x, -0.5)
    assert bool((thick >= x - 1e-6).all() and (thin <= x + 1e-6).all())
    assert float(thick.min()) >= 0 and float(thick.max()) <= 1 and float(thin.min()) >= 0
    assert float(thick.sum()) > 1.2 * float(x.sum()) > 1.44 * float(thin.sum())


def test_predict_reads_digits_at_three_pen_widths_and_other_datasets_as_they_are(mnist_dir: Path):
    """Digits are pen-drawn: predict averages the probabilities of the image as it is, thicker and
    thinner. Clothes are not, and are read once."""
    from lenet_dist.data.augment import pen_width
    from lenet_dist.inference.predict import probabilities
    from lenet_dist.model import LeNet5

    from .conftest import make_meta

    torch.manual_seed(0)
    model, x = LeNet5().eval(), _digits(mnist_dir, 8)
    digits, clothes = make_meta(dataset="mnist"), make_meta(dataset="fashion-mnist")
    with torch.no_grad():
        views = [torch.softmax(model(digits.normalization.apply(pen_width(x, a))), 1) for a in (0.0, 0.5, -0.5)]
    got = probabilities(model, digits, x)
    assert torch.allclose(got, sum(views) / 3, atol=1e-6) and torch.allclose(got.sum(1), torch.ones(8))
    assert not torch.allclose(got, views[0], atol=1e-4)
    assert torch.allclose(probabilities(model, clothes, x), views[0], atol=1e-6)
