"""Verilog generation for every top-level component: ``cimdv-gen <top> -o FILE [--param NAME=VALUE ...]``.

:data:`TOPS` names each top the project can emit. Its entries are resolved lazily, so this module
imports (and ``cimdv-gen --help`` works) before every component exists.

The output is deterministic: the same component and parameters give the same bytes, whatever the
checkout's location, because the ``src`` attributes Yosys copies from Amaranth are made relative
(to the repository root, or to ``site-packages``) instead of absolute.
"""

import argparse
import ast
import importlib
import inspect
import json
import os
import re
import sys
import sysconfig
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["TOPS", "LazyTop", "elaborate_params", "generate", "main", "top_defaults"]

_REPO_ROOT = Path(__file__).resolve().parents[1]


class LazyTop:
    """A component factory named by ``"package.module:Class"``, imported on first use.

    Calling it builds the component: ``LazyTop("cimdv.rtl.core.core:CimCore")(rows=32)``.
    """

    def __init__(self, target: str) -> None:
        self.target = target

    def resolve(self) -> Callable[..., Any]:
        module_name, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module_name), attr)

    def __call__(self, **params: Any) -> Any:
        return self.resolve()(**params)

    def __repr__(self) -> str:
        return f"LazyTop({self.target!r})"


# A factory maps keyword parameters to a `wiring.Component`; its keyword defaults are the default parameters.
Factory = Callable[..., Any]

TOPS: dict[str, Factory] = {
    "core": LazyTop("cimdv.rtl.core.core:CimCore"),
    "chip": LazyTop("cimdv.rtl.chip.chip:Chip"),
    "fpga_top": LazyTop("cimdv.rtl.fpga.top:FpgaTop"),
    "twin_chip": LazyTop("cimdv.rtl.fpga.top:TwinChip"),
    "fpga_twin_demo": LazyTop("cimdv.rtl.fpga.demo:FpgaTwinDemo"),
    "mesh": LazyTop("cimdv.rtl.noc.mesh:Mesh"),
    "bridge": LazyTop("cimdv.rtl.host.standalone:bridge_top"),
}


def _signature_target(factory: Factory) -> Callable[..., Any]:
    return factory.resolve() if isinstance(factory, LazyTop) else factory


def top_defaults(factory: Factory) -> dict[str, Any]:
    """The keyword parameters of ``factory`` and their defaults (:data:`inspect.Parameter.empty` if required)."""
    params = {}
    for name, param in inspect.signature(_signature_target(factory)).parameters.items():
        if param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD):
            params[name] = param.default
    return params


def elaborate_params(top: str, params: Mapping[str, Any] | None = None, *, tops: Mapping[str, Factory] = TOPS) -> dict:
    """Every parameter of ``top``: its defaults updated with ``params``, checked by name and JSON-safe.

    Raises :class:`ValueError` naming the valid tops or parameters on a bad name.
    """
    if top not in tops:
        raise ValueError(f"unknown top {top!r}; valid tops: {', '.join(sorted(tops))}")
    defaults = top_defaults(tops[top])
    params = dict(params or {})
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for top {top!r}; "
            f"valid parameters: {', '.join(defaults) or '(none)'}"
        )
    full = {name: params.get(name, default) for name, default in defaults.items()}
    missing = [name for name, value in full.items() if value is inspect.Parameter.empty]
    if missing:
        raise ValueError(f"top {top!r} needs parameter(s) {', '.join(missing)}")
    try:
        json.dumps(full)
    except TypeError as exc:
        raise ValueError(f"parameters of top {top!r} must be JSON values (int, bool, str, float): {exc}") from exc
    return full


def _relative_src(text: str) -> str:
    """Strip checkout- and venv-specific prefixes from ``(* src = "..." *)`` attributes."""
    # site-packages first: a venv inside the checkout would otherwise keep its path.
    for prefix, replacement in ((sysconfig.get_paths()["purelib"], "site-packages/"), (str(_REPO_ROOT), "")):
        text = text.replace(f'src = "{prefix}/', f'src = "{replacement}')
    return text


def to_verilog(top: str, params: Mapping[str, Any] | None = None, *, tops: Mapping[str, Factory] = TOPS) -> str:
    """Elaborate ``top`` with ``params`` and return its Verilog text (module name ``top``), preceded by
    the shared modules its instances use (a component's ``verilog_modules()``, if it has one)."""
    from amaranth.back import verilog

    full = elaborate_params(top, params, tops=tops)
    component = tops[top](**full)
    # A component built from instances of shared modules emits each of them once, first.
    modules = getattr(component, "verilog_modules", dict)()
    parts = [verilog.convert(sub, name=name) for name, sub in modules.items()]
    parts.append(verilog.convert(component, name=top))
    return _relative_src("".join(parts))


def generate(
    top: str, params: Mapping[str, Any] | None, path: str | os.PathLike, *, tops: Mapping[str, Factory] = TOPS
) -> Path:
    """Write the Verilog of ``top`` to ``path``; rewrite the file only if its content changes.

    Returns the path written.
    """
    path = Path(path)
    text = to_verilog(top, params, tops=tops)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


_PARAM_RE = re.compile(r"^([A-Za-z_]\w*)=(.*)$")


def main(argv: list[str] | None = None, *, tops: Mapping[str, Factory] = TOPS) -> int:
    parser = argparse.ArgumentParser(
        prog="cimdv-gen",
        description="Generate deterministic Verilog for one top-level component.",
    )
    parser.add_argument("top", choices=sorted(tops), help="component to emit")
    parser.add_argument("-o", "--output", type=Path, help="Verilog file to write (default: build/verilog/TOP.v)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one parameter (repeatable); VALUE is a Python literal, e.g. rows=32",
    )
    args = parser.parse_args(argv)

    params = {}
    for item in args.param:
        match = _PARAM_RE.match(item)
        if not match:
            parser.error(f"--param expects NAME=VALUE, got {item!r}")
        params[match[1]] = _parse_value(match[2])
    try:
        full = elaborate_params(args.top, params, tops=tops)
    except ImportError as exc:
        parser.error(f"top {args.top!r} cannot be loaded: {exc}")
    except ValueError as exc:
        parser.error(str(exc))

    output = args.output or Path("build", "verilog", f"{args.top}.v")
    generate(args.top, full, output, tops=tops)
    print(f"cimdv-gen: wrote {output} ({args.top} {json.dumps(full, sort_keys=True)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
