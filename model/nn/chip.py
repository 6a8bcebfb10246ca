"""The mapped network on a physical chip model, bit-exact with the cycle-level macro the RTL sees.

Physics (cim-golden-model.md §3; the magnitudes are :class:`ChipNoise`'s defaults):

* **programming** (static, drawn once per seed and core): every cell's target conductance goes
  through :func:`cimdv.model.array.realise`: the write-verify acceptance window (±1 µS, NeuRRAM),
  "off" cells anywhere below g_min, and relaxation after ``relax_time_s`` from NeuRRAM's
  published fits. The realised conductance is kept on the macro's integer grid
  (``unit_uS`` = 0.01 µS per code), far below every physical term;
* **read noise** (per array activation): every SAMPLE re-drives the lines, so each sample of
  each sensed line gets ``N(0, σ_r² · n_connected)`` with ``σ_r`` = ``read_noise_uS`` per cell
  (1 % of G_max), rounded to codes; a 4-bit input is ``2 * M * 15`` samples;
* **neurons** (static, per seed and core): a comparator offset per neuron (σ = 0.1 Δ) and a
  decrement-quantum mismatch per neuron (σ = 1 %, cim-golden-model.md §3.6), both in codes;
* **conversion**: the exact integrate-and-fire rules (:func:`cimdv.model.exact.convert`) with
  each neuron's ``θ_j`` and ``Δ_j``; partial sums of a split layer are converted per core, then added.

Why integer: every quantity is an integer number of codes, so the closed form here (one matrix
product per block and the sum of the per-sample noise) and the macro stepped sample by sample
(:class:`NoisyMacroState`, what the cocotb responder runs) add the same integers in a different
order and agree exactly; no floating-point rounding can make them differ. The per-activation
noise of block ``b`` for test image ``i`` on core ``c`` comes from
``numpy.random.default_rng([seed, c, noise_tag(b, i)])``, in both: the RTL run seeks each core's
macro to the tag of the block and image it is about to run.
"""

from dataclasses import dataclass

import numpy as np

from ..array import ArrayParams, realise
from ..exact import MacroParams, MacroState, convert
from ..params import Serialisable
from .data import X_MAX
from .mapper import MappingTable
from .network import QuantizedNet

__all__ = ["ChipNoise", "Inference", "ChipModel", "NeuronParams", "NoisyMacroState", "noise_tag", "read_noise"]

#: Images per block in a noise tag (``noise_tag(b, i) = b * TAG_STRIDE + i``).
TAG_STRIDE = 1 << 20


def noise_tag(block_index, image):
    """The noise-stream tag of block ``block_index`` (index in the mapping table) for ``image``."""
    if not 0 <= image < TAG_STRIDE:
        raise ValueError(f"image must be 0..{TAG_STRIDE - 1}, not {image}")
    return block_index * TAG_STRIDE + image


def read_noise(rng, samples, n_out, sigma):
    """``(samples, n_out)`` int64 read-noise codes: ``rint(sigma * N(0, 1))``, drawn row by row."""
    if sigma == 0:
        return np.zeros((samples, n_out), dtype=np.int64)
    return np.rint(sigma * rng.standard_normal((samples, n_out))).astype(np.int64)


@dataclass(frozen=True)
class ChipNoise(Serialisable):
    """Non-idealities of the chip model; every term 0/None is ideal (the quantised network).

    Parameters
    ----------
    g_tol_uS : float
        Write-verify acceptance half-window (µS).
    relax_time_s : float or None
        Relaxation time since programming (s); None: no relaxation.
    read_noise_uS : float
        σ of per-activation read noise of one connected cell (µS).
    weight_sigma : float
        Extra Gaussian conductance error, σ as a fraction of the top level's conductance
        (``7 g``); for the weight-noise sweep (0 in the physical model).
    comparator_offset : float
        σ of a static per-neuron comparator offset, in ADC quanta Δ (the threshold becomes
        ``θ + offset_j``).
    decrement_mismatch : float
        Relative σ of a static per-neuron decrement quantum: ``Δ_j = Δ (1 + ε_j)`` (~1 %).
    """

    g_tol_uS: float = 1.0
    relax_time_s: float | None = 86400.0
    read_noise_uS: float = 0.4
    weight_sigma: float = 0.0
    comparator_offset: float = 0.1
    decrement_mismatch: float = 0.01

    def __post_init__(self):
        for name in ("g_tol_uS", "read_noise_uS", "weight_sigma", "comparator_offset", "decrement_mismatch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        if self.relax_time_s is not None and not (np.isfinite(self.relax_time_s) and self.relax_time_s >= 0):
            raise ValueError(f"relax_time_s must be None or a finite number >= 0, not {self.relax_time_s!r}")

    @classmethod
    def none(cls):
        """No non-ideality: the quantised network, exactly."""
        return cls(
            g_tol_uS=0.0,
            relax_time_s=None,
            read_noise_uS=0.0,
            weight_sigma=0.0,
            comparator_offset=0.0,
            decrement_mismatch=0.0,
        )


@dataclass(frozen=True, eq=False)
class Inference:
    """Outputs of a run: per layer the signed outputs ``(n, fan_out)`` (counts, or reduced sums)
    and saturation flags; the ADC counts of every block; the predicted classes."""

    outputs: tuple
    saturated: tuple
    block_counts: dict
    predictions: np.ndarray

    def accuracy(self, labels):
        return float(np.mean(self.predictions == np.asarray(labels)))


class ChipModel:
    """The mapped ``net`` on the cores of ``table`` with conductances realised from ``seed``.

    Parameters
    ----------
    net : QuantizedNet
    table : MappingTable
    noise : ChipNoise
        Non-idealities (``ChipNoise.none()``: the quantised ideal network).
    seed : int
        Seed of the programming draws and of the read-noise streams.
    """

    def __init__(self, net, table, noise=None, *, seed=0):
        if not isinstance(net, QuantizedNet):
            raise TypeError(f"net must be a QuantizedNet, not {type(net).__name__}")
        if not isinstance(table, MappingTable):
            raise TypeError(f"table must be a MappingTable, not {type(table).__name__}")
        noise = ChipNoise() if noise is None else noise
        if not isinstance(noise, ChipNoise):
            raise TypeError(f"noise must be a ChipNoise, not {type(noise).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, not {seed!r}")
        self.net, self.table, self.noise, self.seed = net, table.validate(), noise, int(seed)
        self.macro = MacroParams(delta=net.analog.delta, threshold=net.analog.threshold)
        self.targets = table.targets(net)
        self.cores = table.cores_used
        self.codes = {xy: self._realise(xy, t) for xy, t in self.targets.items()}
        self.neurons = {xy: self._neurons(xy) for xy in self.cores}
        unit = net.analog.unit_uS
        self.read_sigma = noise.read_noise_uS / unit  # codes per sqrt(connected cell)

    def core_index(self, xy):
        """Linear index ``x + cols * y`` of core ``xy`` (the key of its noise streams)."""
        return xy[0] + self.table.grid[0] * xy[1]

    def _realise(self, xy, targets):
        n = self.noise
        unit = self.net.analog.unit_uS
        if n.g_tol_uS == 0 and n.relax_time_s is None and n.weight_sigma == 0:
            return targets.copy()
        params = ArrayParams(g_tol_uS=n.g_tol_uS, g_min_uS=1.0, relax_time_s=n.relax_time_s)
        g = realise(targets * unit, params, seed=[self.seed, self.core_index(xy), 1]).g_uS
        if n.weight_sigma:
            top = 7 * self.net.analog.g_step * unit
            extra = np.random.default_rng([self.seed, self.core_index(xy), 2]).standard_normal(g.shape)
            g = np.maximum(g + extra * n.weight_sigma * top, 0.0)
        return np.rint(g / unit).astype(np.int64)

    def _neurons(self, xy):
        """Per-neuron :class:`NeuronParams` of core ``xy`` (threshold and quantum, in codes)."""
        n = self.noise
        lines = max(self.table.core_rows, self.table.core_cols)
        delta, theta = self.macro.delta, self.macro.threshold
        z = np.random.default_rng([self.seed, self.core_index(xy), 3]).standard_normal((2, lines))
        threshold = theta + np.rint(n.comparator_offset * delta * z[0]).astype(np.int64)
        quantum = np.maximum(1, np.rint(delta * (1.0 + n.decrement_mismatch * z[1]))).astype(np.int64)
        return NeuronParams(threshold=threshold, delta=quantum)

    def macro_state(self, xy, codes=None):
        """The cycle-level macro of core ``xy`` (for the RTL's analog responder); ``codes`` overrides
        its conductances (fault injection: the negative test of the RTL comparison)."""
        return NoisyMacroState(
            self.codes[xy] if codes is None else codes,
            self.macro,
            read_sigma=self.read_sigma,
            seed=self.seed,
            core=self.core_index(xy),
            neurons=self.neurons[xy],
        )

    def block_integrators(self, block_index, x_layer, images):
        """``(n, core_cols)`` int64 integrators of block ``block_index`` for layer inputs ``x_layer``
        (``(n, fan_in)``) of the test images ``images`` (their indices: the noise tags)."""
        b = self.table.blocks[block_index]
        cfg = self.table.config(b)
        xs = self.table.block_inputs(b, x_layer)[:, b.row0 : b.row0 + b.rows]
        pol = np.where(np.arange(b.rows) % 2, -1, 1)
        g = self.codes[b.x, b.y][b.row0 : b.row0 + b.rows].astype(np.float64) * pol[:, None]
        # Exact in float64: |integrators| << 2**53 (checked below), so BLAS's order cannot round.
        integ = np.rint(2.0 * b.pulse_mult * (xs.astype(np.float64) @ g)).astype(np.int64)
        if np.abs(integ).max(initial=0) >= 1 << 52:
            raise OverflowError("block integrators too large for exact float64 products")
        if self.read_sigma:
            samples = 2 * b.pulse_mult * ((1 << cfg.nmag) - 1)
            sigma = self.read_sigma * np.sqrt(b.rows)
            core = self.core_index((b.x, b.y))
            for k, image in enumerate(images):
                rng = np.random.default_rng([self.seed, core, noise_tag(block_index, int(image))])
                integ[k] += read_noise(rng, samples, self.table.core_cols, sigma).sum(axis=0)
        return integ, cfg

    def run(self, codes, images=None):
        """Infer input ``codes`` (``(n, 64)`` 4-bit) of test images ``images`` (default 0..n-1).

        Returns
        -------
        Inference
        """
        x = np.asarray(codes)
        if x.ndim != 2 or x.shape[1] != self.table.layer_sizes[0]:
            raise ValueError(f"codes must be (n, {self.table.layer_sizes[0]}), not shape {x.shape}")
        if x.size and (x.min() < 0 or x.max() > X_MAX):
            raise ValueError(f"codes must be 0..{X_MAX}")
        images = np.arange(len(x)) if images is None else np.asarray(images)
        if images.shape != (len(x),):
            raise ValueError(f"images must have one index per input vector ({len(x)}), not shape {images.shape}")
        outputs, saturated, counts = [], [], {}
        for layer in range(self.table.layers):
            total = sat = None
            for b in self.table.layer_blocks(layer):
                i = self.table.blocks.index(b)
                integ, cfg = self.block_integrators(i, x, images)
                neurons = self.neurons[b.x, b.y]
                sign, count, s, _ = convert(cfg, neurons.outputs(cfg.n_out), integ)
                cols = slice(b.col0, b.col0 + b.cols)
                signed = np.where(sign[:, cols] == 1, -count[:, cols], count[:, cols])
                counts[i] = signed
                total = signed if total is None else total + signed
                sat = s[:, cols] if sat is None else sat | s[:, cols]
            outputs.append(total)
            saturated.append(sat)
            if self.net.layers[layer].hidden:
                x = np.clip(total, 0, X_MAX)
        return Inference(
            outputs=tuple(outputs),
            saturated=tuple(saturated),
            block_counts=counts,
            predictions=outputs[-1].argmax(axis=1),
        )


@dataclass(frozen=True, eq=False)
class NeuronParams:
    """Each neuron's comparator threshold and decrement quantum (int64 arrays, one per line)."""

    threshold: np.ndarray
    delta: np.ndarray

    def outputs(self, n_out):
        """The first ``n_out`` neurons' values, in the form :func:`cimdv.model.exact.convert` takes
        (it broadcasts ``threshold`` and ``delta`` over the neurons)."""
        return NeuronParams(threshold=self.threshold[:n_out], delta=self.delta[:n_out])


class NoisyMacroState(MacroState):
    """The exact cycle-level macro with per-activation read noise (what the responder runs).

    Every SAMPLE adds ``read_noise(rng, 1, n_out, read_sigma * sqrt(n_connected))`` to the latched
    sample, with ``n_connected`` the lines the SAMPLE drives; INIT opens the noise stream of the
    next tag (``default_rng([seed, core, tag])``), and tags count up from the last :meth:`seek`.
    COMPARE uses each neuron's threshold and DECREMENT each neuron's quantum (``neurons``).

    Parameters
    ----------
    weights : array_like of int
        Realised conductance codes ``(rows, cols)``.
    params : MacroParams
        Δ and θ.
    read_sigma : float
        Read-noise σ of one connected cell, codes.
    seed, core : int
        The run's seed and the core's linear index (keys of the noise streams).
    neurons : NeuronParams, optional
        Per-neuron threshold and quantum (default: ``params``' for every neuron).
    """

    def __init__(self, weights, params, *, read_sigma, seed, core, neurons=None):
        super().__init__(weights, params)
        if neurons is None:
            full = np.full(self.lines, 1, dtype=np.int64)
            neurons = NeuronParams(threshold=full * params.threshold, delta=full * params.delta)
        if neurons.threshold.shape != (self.lines,) or neurons.delta.shape != (self.lines,):
            raise ValueError(f"neurons must hold {self.lines} thresholds and quanta (one per line)")
        if neurons.delta.min() < 1:
            raise ValueError("neurons.delta must be >= 1 for every neuron")
        self.neurons = neurons
        self.read_sigma = float(read_sigma)
        self.seed, self.core = int(seed), int(core)
        self.tag = 0
        self._rng = None
        self._noise = np.zeros(self.lines, dtype=np.int64)

    def seek(self, tag):
        """The next INIT opens noise stream ``tag``."""
        self.tag = int(tag)

    def init(self, backward=None):
        super().init(backward)
        self._rng = np.random.default_rng([self.seed, self.core, self.tag])
        self.tag += 1
        self._noise[:] = 0

    def sample(self, codes, backward):
        super().sample(codes, backward)
        if self._rng is None:
            raise RuntimeError("SAMPLE before the first INIT: no noise stream is open")
        n_out = self._n_out()
        connected = int(np.count_nonzero(np.asarray(codes)[: self.cols if backward else self.rows]))
        self._noise[:] = 0
        self._noise[:n_out] = read_noise(self._rng, 1, n_out, self.read_sigma * np.sqrt(connected))[0]

    def integrate(self):
        super().integrate()
        self._grow(int(np.abs(self._noise).max(initial=0)))
        self._integ += self._noise

    def compare(self):
        out = self._integ > self.neurons.threshold
        out[self._n_out() :] = False
        return out

    def decrement(self, dec_up):
        up = np.asarray(dec_up)
        if up.dtype != np.bool_ or up.shape != (self.lines,):
            raise TypeError(
                f"dec_up must be a bool array of {self.lines} entries, not dtype {up.dtype} shape {up.shape}"
            )
        self._grow(int(self.neurons.delta.max()))
        self._integ += np.where(up, self.neurons.delta, -self.neurons.delta)
