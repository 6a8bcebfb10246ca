"""What every parameter dataclass of the model shares: dict, JSON and strict unknown-key checks."""

import dataclasses
import json

__all__ = ["Serialisable"]


class Serialisable:
    """Mixin for frozen parameter dataclasses: ``to_dict``/``from_dict``/``to_json``/``from_json``.

    ``from_dict`` refuses anything but a dict and names every unknown key, so a typo in a
    configuration file is an error, never a silently ignored setting.
    """

    def to_dict(self):
        """Plain dict of every field (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        """Build from a dict of fields; unknown keys raise ValueError naming them."""
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict, not {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} key(s) {unknown}; valid: {sorted(known)}")
        return cls(**data)

    def to_json(self):
        """The fields as a JSON object (str)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        """Inverse of :meth:`to_json` (unknown keys raise ValueError)."""
        return cls.from_dict(json.loads(text))
