"""The demo network: a float MLP trained with weight noise, then quantised for the chip.

Two stages, both plain numpy (the network is small: 64-128-10 by default):

1. **Float, noise-aware** (:func:`train_float`): cross-entropy, Adam, and on every step a fresh
   Gaussian weight noise of ``weight_noise * max|W|`` per layer added in the forward pass
   (NeuRRAM trained with 10-20 % of w_max). Inputs are the 4-bit codes scaled to 0..1.
2. **Quantisation- and noise-aware fine-tuning** (:func:`quantize`): the float net's weights
   become 4-bit levels ``-7..7`` (``W / (max|W| / 7)``) and the network is fine-tuned in the
   chip's integer units with straight-through rounding, the same relative weight noise on the
   levels, and the chip's own activation function (below).

The integer network (what :mod:`cimdv.model.nn.chip` runs on cores) is, per layer ``l``:
``z = x @ W_l + X_MAX * b_l`` with integer input codes ``x``, weight levels ``W_l`` and bias
levels ``b_l`` (the bias rows are driven with ``X_MAX``). A core integrates
``u = 2 M_l g z - θ`` (``g`` the conductance codes per level, ``M_l`` the layer's pulse
multiplier) and its neuron counts ``ceil(u / Δ)`` quanta (``ceil(u/Δ) - 1`` for ``u <= 0``),
saturating at ``max_count``. With ``θ = Δ/2`` and ``D_l = Δ / (2 M_l g)`` a hidden activation is
``clip(ceil(z / D_l - 1/2), 0, 15)`` — round to nearest, ReLU and 4-bit clip in one conversion.
``Δ`` and ``θ`` are chip-wide analog settings; each layer's scale ``D_l`` is set digitally by its
pulse multiplier, as NeuRRAM sets gain by its number of input pulses.
"""

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np

from .data import X_MAX

__all__ = [
    "W_LEVELS",
    "TrainParams",
    "AnalogScale",
    "FloatNet",
    "QuantLayer",
    "QuantizedNet",
    "train_float",
    "quantize",
]

#: Largest weight level: 4-bit signed weights are -7..7 (sign and 3 magnitude bits).
W_LEVELS = 7
#: Largest pulse multiplier with 4-bit inputs and the RTL's 8-bit pulse counter (M * 8 <= 255).
MAX_PULSE_MULT = 255 >> (4 - 1)


@dataclass(frozen=True)
class TrainParams:
    """Training knobs (defaults: what ``make sim`` uses).

    Parameters
    ----------
    hidden : int
        Hidden-layer width (its fan-in on the second layer is what makes that layer span two cores).
    epochs_float, epochs_qat : int
        Epochs of the float stage and of the quantised fine-tuning.
    batch : int
        Minibatch size.
    lr : float
        Adam step of the float stage; the fine-tuning steps weight levels by ``10 * lr``.
    weight_noise : float
        σ of the training weight noise as a fraction of the layer's ``max|W|`` (0 trains without).
    act_percentile : float
        Percentile of the positive hidden pre-activations mapped to the top activation code.
    seed : int
        Seed of initialisation, minibatch order and noise.
    """

    hidden: int = 128
    epochs_float: int = 60
    epochs_qat: int = 30
    batch: int = 32
    lr: float = 2e-3
    weight_noise: float = 0.15
    act_percentile: float = 99.5
    seed: int = 0

    def __post_init__(self):
        for name in ("hidden", "epochs_float", "epochs_qat", "batch", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, not {value!r}")
        for name in ("hidden", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        for name in ("epochs_float", "epochs_qat", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)}")
        if not 0 < self.lr < 1:
            raise ValueError(f"lr must be in (0, 1), not {self.lr!r}")
        if not 0 <= self.weight_noise < 1:
            raise ValueError(f"weight_noise must be in [0, 1), not {self.weight_noise!r}")
        if not 50 <= self.act_percentile <= 100:
            raise ValueError(f"act_percentile must be in [50, 100], not {self.act_percentile!r}")


@dataclass(frozen=True)
class AnalogScale:
    """Chip-wide analog settings the integer network is built for.

    Parameters
    ----------
    unit_uS : float
        Conductance of one code of the macro model (the exact macro's integer conductances).
    g_step : int
        Conductance codes per weight level: level 7 is ``7 * g_step`` codes (35 µS by default).
    delta : int
        Decrement quantum Δ in codes (set by :func:`quantize` from the first layer's scale).
    threshold : int
        Comparator threshold θ = Δ / 2 (round-to-nearest conversion).
    """

    unit_uS: float = 0.01
    g_step: int = 500
    delta: int = 2
    threshold: int = 1


@dataclass(frozen=True, eq=False)
class FloatNet:
    """A float MLP: ``weights[l]`` is ``(fan_in, fan_out)``; ReLU between layers; inputs 0..1."""

    weights: tuple
    biases: tuple

    def logits(self, codes):
        """Logits of a batch of 4-bit input codes ``(n, 64)``."""
        h = np.asarray(codes, dtype=np.float64) / X_MAX
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w + b
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return h

    def predict(self, codes):
        return self.logits(codes).argmax(axis=1)


@dataclass(frozen=True, eq=False)
class QuantLayer:
    """One integer layer: weight levels ``(fan_in, fan_out)`` in -7..7, bias levels (bias = X_MAX * level),
    pulse multiplier, ADC width and whether its output is a hidden activation (ReLU, 4-bit)."""

    levels: np.ndarray
    bias_levels: np.ndarray
    pulse_mult: int
    out_bits: int
    hidden: bool

    @property
    def fan_in(self):
        return self.levels.shape[0]

    @property
    def fan_out(self):
        return self.levels.shape[1]


@dataclass(frozen=True, eq=False)
class QuantizedNet:
    """The integer network and the analog settings it was fine-tuned for."""

    layers: tuple
    analog: AnalogScale

    def scale(self, layer):
        """``D_l = Δ / (2 M_l g)``: integer pre-activation per output count of layer ``layer``."""
        m = self.layers[layer].pulse_mult
        return self.analog.delta / (2 * m * self.analog.g_step)

    def to_dict(self):
        return {
            "analog": dataclasses.asdict(self.analog),
            "layers": [
                {
                    "levels": layer.levels.tolist(),
                    "bias_levels": layer.bias_levels.tolist(),
                    "pulse_mult": layer.pulse_mult,
                    "out_bits": layer.out_bits,
                    "hidden": layer.hidden,
                }
                for layer in self.layers
            ],
        }

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`; a malformed dict raises ValueError."""
        try:
            layers = tuple(
                QuantLayer(
                    levels=np.asarray(ly["levels"], dtype=np.int64),
                    bias_levels=np.asarray(ly["bias_levels"], dtype=np.int64),
                    pulse_mult=int(ly["pulse_mult"]),
                    out_bits=int(ly["out_bits"]),
                    hidden=bool(ly["hidden"]),
                )
                for ly in d["layers"]
            )
            return cls(layers=layers, analog=AnalogScale(**d["analog"]))
        except (KeyError, TypeError) as e:
            raise ValueError(f"quantised network: malformed ({e})") from None


# ---------------------------------------------------------------------------------------------


class _Adam:
    def __init__(self, params, lr):
        self.lr = lr
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, params, grads, lrs):
        self.t += 1
        c1, c2 = 1 - 0.9**self.t, 1 - 0.999**self.t
        for p, g, m, v, lr in zip(params, grads, self.m, self.v, lrs, strict=True):
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * g * g
            p -= lr * (m / c1) / (np.sqrt(v / c2) + 1e-8)


def _softmax_grad(logits, y):
    """d(mean cross-entropy)/d logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return p / len(y)


def _batches(rng, n, size):
    order = rng.permutation(n)
    return [order[i : i + size] for i in range(0, n, size)]


def _check_training_set(codes, labels):
    x = np.asarray(codes, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"codes must be (n, inputs) and labels (n,), not {x.shape} and {y.shape}")
    if y.dtype.kind not in "iu" or y.min() < 0:
        raise ValueError("labels must be non-negative integers")
    return x, y.astype(np.int64)


def train_float(codes, labels, params=None, *, classes=10):
    """Train the float MLP with weight-noise injection (stage 1; see the module docstring).

    Parameters
    ----------
    codes : array_like
        ``(n, 64)`` input codes 0..15.
    labels : array_like of int
        ``(n,)`` class labels.
    params : TrainParams
    classes : int
        Output width.

    Returns
    -------
    FloatNet
    """
    p = params or TrainParams()
    if not isinstance(p, TrainParams):
        raise TypeError(f"params must be a TrainParams, not {type(p).__name__}")
    x, y = _check_training_set(codes, labels)
    x = x / X_MAX
    rng = np.random.default_rng([p.seed, 1])
    sizes = [x.shape[1], p.hidden, classes]
    ws = [rng.normal(0.0, np.sqrt(2.0 / a), (a, b)) for a, b in itertools.pairwise(sizes)]
    bs = [np.zeros(b) for b in sizes[1:]]
    opt = _Adam([*ws, *bs], p.lr)
    for _ in range(p.epochs_float):
        for idx in _batches(rng, len(y), p.batch):
            wn = [w + rng.normal(0.0, p.weight_noise * np.abs(w).max(), w.shape) for w in ws]
            z1 = x[idx] @ wn[0] + bs[0]
            h = np.maximum(z1, 0.0)
            g = _softmax_grad(h @ wn[1] + bs[1], y[idx])
            dz1 = (g @ wn[1].T) * (z1 > 0)
            grads = [x[idx].T @ dz1 + 1e-4 * ws[0], h.T @ g + 1e-4 * ws[1], dz1.sum(0), g.sum(0)]
            opt.step([*ws, *bs], grads, [p.lr] * 4)
    return FloatNet(weights=tuple(ws), biases=tuple(bs))


def _round_even(value):
    return max(2, 2 * round(value / 2))


def quantize(net, codes, labels, params=None, *, bias_pairs=(4, 8), analog=None, out_bits=(5, 8)):
    """Quantise ``net`` to the chip's integer network and fine-tune it (stage 2).

    Parameters
    ----------
    net : FloatNet
        A two-layer float net from :func:`train_float`.
    codes, labels : array_like
        The training set (input codes, labels).
    params : TrainParams
    bias_pairs : (int, int)
        Bias row pairs available to each layer in total (over its segments): the bias level
        of a neuron is limited to ``±7 * bias_pairs``.
    analog : AnalogScale
        Conductance unit and codes per level (``delta``/``threshold`` are chosen here).
    out_bits : (int, int)
        ADC widths of the two layers (5: counts 0..15, the 4-bit activation; 8: logits).

    Returns
    -------
    QuantizedNet
    """
    p = params or TrainParams()
    if not isinstance(net, FloatNet) or len(net.weights) != 2:
        raise TypeError("net must be a two-layer FloatNet")
    x, y = _check_training_set(codes, labels)
    analog = analog or AnalogScale()
    g = analog.g_step
    rng = np.random.default_rng([p.seed, 2])
    (w1, w2), (b1, b2) = net.weights, net.biases
    s1, s2 = np.abs(w1).max() / W_LEVELS, np.abs(w2).max() / W_LEVELS
    v1, c1 = w1 / s1, b1 * X_MAX / s1  # layer 1 in integer units: z1 = x @ v1 + c1
    z1 = x @ v1 + c1
    d1_target = np.percentile(z1[z1 > 0], p.act_percentile) / X_MAX
    delta = _round_even(2 * g * d1_target)  # M1 = 1
    d1 = delta / (2 * g)
    a1 = np.clip(np.ceil(z1 / d1 - 0.5), 0, X_MAX)
    k2 = s1 * d1 * s2 / X_MAX  # float logits per integer unit of layer 2
    v2, c2 = w2 / s2, b2 / k2
    z2 = a1 @ v2 + c2
    d2_target = np.percentile(np.abs(z2), 99.9) / 100  # logits use ~100 of the 127 counts
    m2 = int(np.clip(round(d1 / d2_target), 1, MAX_PULSE_MULT))
    lim = [W_LEVELS * n for n in bias_pairs]
    params_ = [v1, c1, v2, c2]
    opt = _Adam(params_, p.lr)
    lr_w, lr_b = 10 * p.lr, 10 * p.lr * X_MAX
    sigma = p.weight_noise * W_LEVELS
    for _ in range(p.epochs_qat):
        for idx in _batches(rng, len(y), p.batch):
            xb = x[idx]
            q1, q2 = np.clip(np.rint(v1), -W_LEVELS, W_LEVELS), np.clip(np.rint(v2), -W_LEVELS, W_LEVELS)
            n1, n2 = q1 + rng.normal(0.0, sigma, q1.shape), q2 + rng.normal(0.0, sigma, q2.shape)
            bq1 = X_MAX * np.clip(np.rint(c1 / X_MAX), -lim[0], lim[0])
            bq2 = X_MAX * np.clip(np.rint(c2 / X_MAX), -lim[1], lim[1])
            t1 = (xb @ n1 + bq1) / d1
            a = np.clip(np.ceil(t1 - 0.5), 0, X_MAX)
            g2 = _softmax_grad((a @ n2 + bq2) * k2, y[idx]) * k2
            dz1 = (g2 @ n2.T) * ((t1 > 0) & (t1 < X_MAX + 0.5)) / d1
            grads = [
                (xb.T @ dz1) * (np.abs(v1) <= W_LEVELS + 0.5),
                dz1.sum(0),
                (a.T @ g2) * (np.abs(v2) <= W_LEVELS + 0.5),
                g2.sum(0),
            ]
            opt.step(params_, grads, [lr_w, lr_b, lr_w, lr_b])
    layers = (
        QuantLayer(
            levels=np.clip(np.rint(v1), -W_LEVELS, W_LEVELS).astype(np.int64),
            bias_levels=np.clip(np.rint(c1 / X_MAX), -lim[0], lim[0]).astype(np.int64),
            pulse_mult=1,
            out_bits=out_bits[0],
            hidden=True,
        ),
        QuantLayer(
            levels=np.clip(np.rint(v2), -W_LEVELS, W_LEVELS).astype(np.int64),
            bias_levels=np.clip(np.rint(c2 / X_MAX), -lim[1], lim[1]).astype(np.int64),
            pulse_mult=m2,
            out_bits=out_bits[1],
            hidden=False,
        ),
    )
    scale = dataclasses.replace(analog, delta=int(delta), threshold=int(delta // 2))
    return QuantizedNet(layers=layers, analog=scale)
