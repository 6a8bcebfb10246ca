"""The handwritten-digits dataset of the inference demo, with its one fixed split.

scikit-learn's ``load_digits`` (1,797 8 x 8 images, pixels 0..16, shipped with the package, so
nothing downloads) split by ``train_test_split(test_size=0.25, random_state=0, stratify=y)``:
1,347 training and 450 test images, every digit in the same proportion in both. The split
never changes between runs; docs/nn.md records it.

Inputs go to the chip as 4-bit unsigned codes: ``min(pixel, 15)`` (only pixel value 16 is
clipped, to 15).
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["IN_BITS", "X_MAX", "TEST_SIZE", "SPLIT_SEED", "Digits", "load_split", "input_codes"]

#: Input width of the first layer (unsigned).
IN_BITS = 4
#: The largest input code (also the code the bias rows are driven with).
X_MAX = (1 << IN_BITS) - 1
#: Fraction of the images held out for test.
TEST_SIZE = 0.25
#: ``random_state`` of the split.
SPLIT_SEED = 0


@dataclass(frozen=True, eq=False)
class Digits:
    """The fixed split: float pixel images (``(n, 64)``, 0..16) and integer labels 0..9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_split():
    """The documented train/test split of scikit-learn's digits (see the module docstring)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=y)
    return Digits(x_train=x_tr, y_train=y_tr.astype(np.int64), x_test=x_te, y_test=y_te.astype(np.int64))


def input_codes(images):
    """4-bit input codes of pixel images: ``min(pixel, 15)`` as int64.

    Raises
    ------
    ValueError
        ``images`` holds a negative or non-integer pixel (the digits' pixels are 0..16).
    """
    a = np.asarray(images, dtype=np.float64)
    if a.size and (a.min() < 0 or not np.array_equal(a, np.round(a))):
        raise ValueError("images must hold non-negative integer pixel values (0..16)")
    return np.minimum(a, X_MAX).astype(np.int64)
