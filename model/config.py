"""One serialisable configuration for the whole physical model.

:class:`ModelConfig` groups every documented term (docs/model.md) in four sections:

* ``mapping``: weights -> conductance targets (:func:`cimdv.model.conductance.map_weights`);
* ``array``: static errors of a programmed array (:class:`cimdv.model.array.ArrayParams`);
* ``device`` and ``write_verify``: the device-level programming model
  (:mod:`cimdv.model.programming`), used when ``program_mode = "write_verify"``;
* ``core``: the physical core (:class:`cimdv.model.physical.PhysicalParams`).

Every term at 0 / None is ideal; ``ModelConfig()`` is the ideal model. It round-trips through
JSON and TOML (``tomllib`` reads; a small writer emits the flat tables), and any unknown
section or key raises ValueError naming it.
"""

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field

from .array import ArrayParams
from .conductance import SCHEMES
from .params import Serialisable
from .physical import PhysicalParams
from .programming import DeviceParams, WriteVerifyParams

__all__ = ["MappingParams", "ModelConfig", "PROGRAM_MODES", "BuiltCore", "build_core"]

#: How conductances are obtained from targets: the statistical window model of ``array``,
#: or the device-level incremental write-verify simulation (then ``array.g_tol_uS`` is unused).
PROGRAM_MODES = ("window", "write_verify")


@dataclass(frozen=True)
class MappingParams(Serialisable):
    """Weights -> conductances (neurram-chip.md §4.4).

    Parameters
    ----------
    scheme : str
        ``"sign"`` (one device of a pair carries |w|) or ``"offset"``.
    g_max_uS, g_min_uS : float
        Conductance window (NeuRRAM: 40 and 1 µS).
    percentile : float
        w_max is this percentile of |W| (NeuRRAM: 95).
    bias_rows : int
        Differential pairs carrying the bias, driven with the maximum input code.
    """

    scheme: str = "sign"
    g_max_uS: float = 40.0
    g_min_uS: float = 1.0
    percentile: float = 95.0
    bias_rows: int = 2

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, not {self.scheme!r}")
        for name in ("g_max_uS", "g_min_uS", "percentile"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, not {value!r}")
        if not 0 <= self.g_min_uS < self.g_max_uS:
            raise ValueError(
                f"g_min_uS and g_max_uS must satisfy 0 <= g_min_uS < g_max_uS, not {self.g_min_uS}, {self.g_max_uS}"
            )
        if not 0 < self.percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], not {self.percentile!r}")
        if isinstance(self.bias_rows, bool) or not isinstance(self.bias_rows, int) or self.bias_rows < 0:
            raise ValueError(f"bias_rows must be an integer >= 0, not {self.bias_rows!r}")


_SECTIONS = {
    "mapping": MappingParams,
    "array": ArrayParams,
    "device": DeviceParams,
    "write_verify": WriteVerifyParams,
    "core": PhysicalParams,
}


@dataclass(frozen=True)
class ModelConfig:
    """Every term of the physical model, in one object (see the module docstring)."""

    mapping: MappingParams = field(default_factory=MappingParams)
    array: ArrayParams = field(default_factory=ArrayParams)
    device: DeviceParams = field(default_factory=DeviceParams)
    write_verify: WriteVerifyParams = field(default_factory=WriteVerifyParams)
    core: PhysicalParams = field(default_factory=PhysicalParams)
    program_mode: str = "window"
    seed: int = 0

    def __post_init__(self):
        for name, cls in _SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise TypeError(f"{name} must be a {cls.__name__}, not {type(getattr(self, name)).__name__}")
        if self.program_mode not in PROGRAM_MODES:
            raise ValueError(f"program_mode must be one of {PROGRAM_MODES}, not {self.program_mode!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, not {self.seed!r}")

    def to_dict(self):
        out = {name: getattr(self, name).to_dict() for name in _SECTIONS}
        out["program_mode"] = self.program_mode
        out["seed"] = self.seed
        return out

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict, not {type(data).__name__}")
        known = set(_SECTIONS) | {"program_mode", "seed"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig section(s) {unknown}; valid: {sorted(known)}")
        kwargs = {name: _SECTIONS[name].from_dict(data[name]) for name in _SECTIONS if name in data}
        for name in ("program_mode", "seed"):
            if name in data:
                kwargs[name] = data[name]
        return cls(**kwargs)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(json.loads(text))

    def to_toml(self):
        """TOML text: top-level keys, then one table per section (None values are omitted)."""
        lines = [f"program_mode = {_toml_value(self.program_mode)}", f"seed = {self.seed}"]
        for name in _SECTIONS:
            lines.append(f"\n[{name}]")
            for key, value in getattr(self, name).to_dict().items():
                if value is not None:
                    lines.append(f"{key} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_toml(cls, text):
        return cls.from_dict(tomllib.loads(text))


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as TOML")


@dataclass(frozen=True, eq=False)
class BuiltCore:
    """What :func:`build_core` produced: the core, the mapping and what programming reported."""

    core: object
    mapping: object
    targets_uS: object
    g_uS: object
    report: dict


def build_core(weights, config=None, *, bias=None, x_max=None, core_seed=None):
    """Weights -> mapped targets -> programmed, relaxed conductances -> :class:`PhysicalCore`.

    Parameters
    ----------
    weights : array_like
        (fan_in, outputs) weights.
    config : ModelConfig
    bias : array_like, optional
        Bias in units of ``x @ W`` (needs ``x_max``, the maximum input code).
    core_seed : int, optional
        Seed of the core's static draws (default: ``config.seed + 2``).

    Returns
    -------
    BuiltCore
    """
    from .array import realise
    from .conductance import map_weights
    from .physical import PhysicalCore
    from .programming import program

    config = ModelConfig() if config is None else config
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig, not {type(config).__name__}")
    m = config.mapping
    mapping = map_weights(
        weights,
        scheme=m.scheme,
        g_max_uS=m.g_max_uS,
        g_min_uS=m.g_min_uS,
        percentile=m.percentile,
        bias=bias,
        bias_rows=m.bias_rows if bias is not None else 0,
        x_max=x_max,
    )
    targets = mapping.g_target_uS
    report = {"program_mode": config.program_mode}
    if config.program_mode == "write_verify":
        programmed = program(targets, device=config.device, wv=config.write_verify, seed=config.seed)
        report["programming"] = programmed.summary()
        # The device-level result replaces the statistical window; relaxation and defects still apply.
        array = dataclasses.replace(config.array, g_tol_uS=0.0)
        realised = realise(programmed.g_uS, array, seed=config.seed + 1)
    else:
        realised = realise(targets, config.array, seed=config.seed + 1)
    report["floored"] = realised.floored
    report["bad_rows"] = [int(r) for r in sorted(set(realised.unformed_rows) | set(realised.leaky_rows))]
    seed = config.seed + 2 if core_seed is None else core_seed
    core = PhysicalCore(realised.g_uS, config.core, seed=seed)
    return BuiltCore(core=core, mapping=mapping, targets_uS=targets, g_uS=realised.g_uS, report=report)
