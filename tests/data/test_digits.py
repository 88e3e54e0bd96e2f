"""scikit-learn's 8×8 digits: the stratified split, resized and normalised with the training split's statistics."""

from vision_research.data import DigitsDataModule


def test_sklearn_digits_split_and_resize():
    dm = DigitsDataModule(image_size=32)
    dm.setup()
    sizes = dm.split_sizes()
    assert sum(sizes.values()) == 1797 and sizes["test"] == round(0.2 * 1797)
    assert dm.splits["train"].images.shape[1:] == (1, 32, 32)
    assert dm.num_classes == 10 and dm.in_chans == 1
    x, _ = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert abs(x.mean().item()) < 0.2  # normalised with the training split's own statistics
