"""pyuvm tests of the chip (docs/architecture.md, "pyuvm chip environment"; docs/testplan.toml).

Each test is a :class:`~cimdv.tb.uvm.env.ChipUvmTest` running one virtual sequence on the chip
environment (host agent, one macro agent per tile, NoC monitor, predictor, scoreboard). The negative
tests run with ``expect_fail=True`` and name, in ``expected_failure``, the report the scoreboard must
give: a failure for another reason raises ``RuntimeError``, which ``expect_fail`` does not accept.
"""

import dataclasses

import pyuvm
from pyuvm import uvm_factory

from cimdv.tb.uvm.env import ChipUvmTest
from cimdv.tb.uvm.predictor import ChipPredictor
from cimdv.tb.uvm.sequences import (
    BiasedLayerVseq,
    DirectedVseq,
    LayerSplitVseq,
    MulticastOnceVseq,
    NoisyLayerVseq,
    RandomVseq,
    SlowAndSilentCoreVseq,
    StressVseq,
    WeightFaultVseq,
)


@pyuvm.test()
class UvmDirectedTest(ChipUvmTest):
    """Testpoint chip_uvm_directed: PING, CSR writes and read-back, multicast (batches 1 and 3), per-core and
    reduced MVMs through the pyuvm environment, every response equal to the predictor."""

    vseq_type = DirectedVseq


@pyuvm.test()
class UvmRandomTest(ChipUvmTest):
    """Testpoint chip_uvm_random: random legal host traffic (modes, rectangles, batches, configurations, CSR
    writes and reads), no NoC drop, no error, no timeout."""

    vseq_type = RandomVseq


@pyuvm.test()
class UvmStressTest(ChipUvmTest):
    """Testpoint chip_uvm_stress: back-to-back MVMs with input idles and output backpressure, CSR traffic
    interleaved."""

    vseq_type = StressVseq


@pyuvm.test()
class UvmLayerSplitTest(ChipUvmTest):
    """Testpoint chip_uvm_virtual: virtual sequence configuring every core, then a layer split over the cores
    with the partial sums reduced in the bridge."""

    vseq_type = LayerSplitVseq


@pyuvm.test()
class UvmSlowSilentCoreTest(ChipUvmTest):
    """Testpoint chip_uvm_virtual: a core slower than the watchdog gives TIMEOUT with the other cores' sums
    delivered and its late output drained as stale (both predicted); a silent macro saturates its core."""

    vseq_type = SlowAndSilentCoreVseq


@pyuvm.test()
class UvmNoisyLayerTest(ChipUvmTest):
    """Testpoint chip_uvm_noisy: noisy physical macros on every tile; counts exact against the macros'
    comparators, and statistically (mean and RMS of the count error) against the ideal model."""

    vseq_type = NoisyLayerVseq


@pyuvm.test(expect_fail=True)
class UvmWeightFaultFails(ChipUvmTest):
    """Testpoint chip_uvm_negative: a weight fault in tile (1, 1)'s macro (DUT side) fails the exact check at
    that core, vector 0, neuron 0, and nowhere else."""

    vseq_type = WeightFaultVseq
    expected_failure = (
        r"\Achip scoreboard: \d mismatch\(es\)(\n  #\d+ MVM tag \d+ core \(1, 1\) vector 0: "
        r"(integrator at the sign compare|count|sign) differs at neurons \[0\][^\n]*)+\Z"
    )


class CorruptPredictor(ChipPredictor):
    """The predictor with one wrong count: neuron 3 of core (0, 0), vector 0 of the first MVM, one higher."""

    corrupted = False

    def predict_mvm(self, txn, exp):
        super().predict_mvm(txn, exp)
        results = exp.mvm.results if exp.mvm else {}
        if not self.corrupted and (0, 0) in results:
            first = results[(0, 0)][0]
            count = first.count.copy()
            count[3] += 1 if count[3] < exp.mvm.cfg[(0, 0)].max_count else -1
            results[(0, 0)][0] = dataclasses.replace(first, count=count)
            self.corrupted = True


@pyuvm.test(expect_fail=True)
class UvmPredictorFaultFails(ChipUvmTest):
    """Testpoint chip_uvm_negative: a corrupted prediction (predictor side: one count of core (0, 0), factory
    override of the predictor) fails the check at exactly that core, vector and neuron."""

    vseq_type = MulticastOnceVseq
    expected_failure = (
        r"\Achip scoreboard: 1 mismatch\(es\)\n"
        r"  #\d+ MVM tag \d+ core \(0, 0\) vector 0: count differs at neurons \[3\]"
    )

    def build_phase(self):
        uvm_factory().set_type_override_by_type(ChipPredictor, CorruptPredictor)
        super().build_phase()


@pyuvm.test(expect_fail=True)
class UvmBiasedMacroFails(ChipUvmTest):
    """Testpoint chip_uvm_negative: a macro biased by +2 LSB on tile (1, 0) among noisy macros fails the
    statistical check of that core, and only that one (its outputs still equal its comparators)."""

    vseq_type = BiasedLayerVseq
    expected_failure = (
        r"\Achip scoreboard: 1 mismatch\(es\)\n  core \(1, 0\): noisy counts against the ideal model out of "
        r"tolerance: N=128, noise [\d.]+ LSB: count error mean \+\d\.\d+"
    )
