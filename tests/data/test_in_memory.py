"""In-memory datamodules' class subsets (``classes``, ``train_per_class``), through scikit-learn's digits."""

import pytest
import torch

from vision_research.data import DigitsDataModule
from vision_research.errors import ConfigError


def test_a_subset_of_classes_is_renumbered_in_the_order_given_and_the_labelled_set_shrunk():
    whole = DigitsDataModule(image_size=8)
    whole.setup()
    subset = DigitsDataModule(image_size=8, classes=[7, 2], train_per_class=5)
    subset.setup()
    assert subset.class_names == ("7", "2") and subset.num_classes == 2
    assert subset.splits["train"].labels.bincount().tolist() == [5, 5]
    for split in ("val", "test"):  # whole: every image of classes 7 and 2, labelled 0 and 1
        labels = whole.splits[split].labels
        kept = whole.splits[split].images[(labels == 7) | (labels == 2)]
        assert torch.equal(subset.splits[split].images, kept)
        expected = torch.where(labels[(labels == 7) | (labels == 2)] == 7, 0, 1)
        assert torch.equal(subset.splits[split].labels, expected)
    train = whole.splits["train"]
    for image, label in zip(subset.splits["train"].images, subset.splits["train"].labels, strict=True):
        original = 7 if label == 0 else 2  # each kept training image is one of that class in the whole split
        assert (train.images[train.labels == original] == image).flatten(1).all(dim=1).any()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"classes": [3, 3]}, "distinct"),
        ({"classes": [10]}, r"\[10\] not among the classes 0..9"),
        ({"train_per_class": 0}, ">= 1"),
        ({"train_per_class": 1000}, "class '0' has"),
    ],
)
def test_bad_class_subsets_are_one_line_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        DigitsDataModule(image_size=8, **options).setup()
