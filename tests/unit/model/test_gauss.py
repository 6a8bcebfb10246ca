"""Fast Gaussian draws: a correct N(0, 1), reproducible from a seed, and the block stream."""

import math

import numpy as np
import pytest

from cimdv.model.gauss import BOX_MULLER_MIN, NormalStream, generator_of, standard_normal32


def _normal_cdf(x):
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _chi2_against_normal(z, edges):
    counts, _ = np.histogram(z, bins=edges)
    cdf = np.array([_normal_cdf(e) for e in edges])
    expected = len(z) * np.diff(cdf)
    return float((((counts - expected) ** 2) / expected).sum())


# Bins of width 0.25 σ over ±4 σ plus the two tails: 34 bins, 33 degrees of freedom. The 99.99th
# percentile of χ²(33) is about 68, so a correct generator fails this once in 10,000 seeds.
EDGES = np.concatenate([[-np.inf], np.arange(-4.0, 4.01, 0.25), [np.inf]])
CHI2_LIMIT = 68.0


def test_box_muller_draws_are_standard_normal():
    z = standard_normal32(np.random.default_rng(11), (1_000_000,))
    assert z.dtype == np.float32 and z.shape == (1_000_000,)
    assert abs(z.mean()) < 5 / 1000  # 5 σ of the mean of 10^6 draws
    assert z.std() == pytest.approx(1.0, abs=0.005)
    assert (z.astype(np.float64) ** 4).mean() == pytest.approx(3.0, abs=0.05)
    assert _chi2_against_normal(z, EDGES) < CHI2_LIMIT
    # The two halves of the transform (cos and sin) are independent.
    half = len(z) // 2
    assert abs(np.corrcoef(z[:half], z[half:])[0, 1]) < 5 / math.sqrt(half)


def test_the_chi2_check_rejects_a_wrong_distribution():
    """Negative test: the same check fails on draws that are not N(0, 1)."""
    rng = np.random.default_rng(11)
    assert _chi2_against_normal(1.05 * standard_normal32(rng, (1_000_000,)), EDGES) > CHI2_LIMIT
    uniform_sum = rng.random((1_000_000, 3)).sum(axis=1) * 2 - 3  # variance 1, wrong shape
    assert _chi2_against_normal(uniform_sum, EDGES) > CHI2_LIMIT


def test_draws_are_reproducible_and_shaped():
    a = standard_normal32(np.random.default_rng(3), (5, 1001))  # odd size: the last pair is cut
    b = standard_normal32(np.random.default_rng(3), (5, 1001))
    assert a.shape == (5, 1001) and np.array_equal(a, b)
    assert not np.array_equal(a, standard_normal32(np.random.default_rng(4), (5, 1001)))


def test_small_draws_use_the_ziggurat():
    n = BOX_MULLER_MIN - 1
    want = np.random.default_rng(8).standard_normal(n, dtype=np.float32)
    assert np.array_equal(standard_normal32(np.random.default_rng(8), n), want)


def test_bad_generator_is_refused():
    with pytest.raises(TypeError, match=r"rng must be a numpy\.random\.Generator or a NormalStream"):
        standard_normal32(np.random.RandomState(0), (10,))


def test_stream_is_a_pure_function_of_seed_and_request_sizes():
    sizes = [256, 256, 1000, 4096, 20_000, 256]
    runs = []
    for _ in range(2):
        stream = NormalStream(21, block=4096)
        runs.append([stream.normal32((n,)).copy() for n in sizes])
    for a, b in zip(*runs, strict=True):
        assert np.array_equal(a, b)
    # Consecutive requests are fresh draws, never a repeat of the buffer.
    first = runs[0]
    assert not np.array_equal(first[0], first[1])
    # A request larger than the block is drawn directly.
    assert first[4].shape == (20_000,)


def test_stream_draws_are_standard_normal_and_owned_by_the_caller():
    stream = NormalStream(5, block=1 << 14)
    draws = [stream.normal32((256,)) for _ in range(4000)]
    for d in draws[:10]:
        d *= 0.0  # the caller may scale its draws in place: later draws are unaffected
    z = np.concatenate(draws[10:])
    assert abs(z.mean()) < 5 / math.sqrt(z.size)
    assert z.std() == pytest.approx(1.0, abs=0.01)
    assert _chi2_against_normal(z, EDGES) < CHI2_LIMIT


def test_stream_arguments_are_checked():
    with pytest.raises(ValueError, match="block must be >="):
        NormalStream(1, block=16)
    with pytest.raises(TypeError, match="block must be an int"):
        NormalStream(1, block=4096.0)
    with pytest.raises(TypeError, match="seed must be a seed, not a Generator"):
        NormalStream(np.random.default_rng(1))
    stream = NormalStream(1)
    assert generator_of(stream) is stream.generator
    rng = np.random.default_rng(1)
    assert generator_of(rng) is rng
