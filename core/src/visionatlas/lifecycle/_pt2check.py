"""Refuse ``.pt2`` archives whose loading or running would execute code from the file.

``torch.export.load`` (torch 2.15) unpickles weights and constants saved with
``use_pickle``, custom and opaque objects, legacy ``.pt`` members, and example inputs that
``torch.load(weights_only=True)`` refuses (it then retries with ``weights_only=False``);
it loads AOTInductor shared libraries; it evaluates symbolic shapes with
``sympy.sympify`` (which calls ``eval``); and ``ExportedProgram.module()`` turns guard
strings, argument names and attribute names into Python source that it executes.

:func:`check_archive` accepts only what can be loaded without any of that: the members
``torch.export.save`` writes for a plain program, no pickle beyond what
``weights_only=True`` loads, shape expressions and guards made of known functions, symbols
and numbers, and no quote, backslash or line break in a string that reaches generated code.
"""

from __future__ import annotations

import ast
import functools
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["Refused", "check_archive"]


class Refused(Exception):
    """Why an archive is refused; the message names the member and what it holds."""


_ROOT_FILES = frozenset(
    {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
)
_NAME = r"[A-Za-z0-9_]+"
_MODEL = re.compile(rf"models/{_NAME}\.json")
_SAMPLE_INPUTS = re.compile(rf"data/sample_inputs/{_NAME}\.pt")
_PAYLOAD_CONFIG = re.compile(
    rf"data/(weights/{_NAME}_weights|constants/{_NAME}_constants)_config\.json"
)
_RAW = re.compile(r"data/weights/weight_\d+|data/constants/tensor_\d+")
_EXTRA = re.compile(r"extra/[^\x00-\x1f]+")
_PAYLOAD_NAME = {"weights": re.compile(r"weight_\d+"), "constants": re.compile(r"tensor_\d+")}

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_SYMBOL = re.compile(r"[a-z]+\d+")  # s0, s77, u3: the names torch gives shape symbols
_CODE_CHARS = re.compile(r"[\"'\\\x00-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # tab and line feed allowed
_NOT_IN_EXPRESSIONS = re.compile(r"[\"\\#\x00-\x1f\x7f]")  # no comments, no second line
_FREE_TEXT = frozenset({"stack_trace", "nn_module_stack", "source_fn_stack", "torch_fn"})
_JSON_TEXT = frozenset({"in_spec", "out_spec", "custom"})
_GUARD_NAMES = frozenset(
    {"L", "math", "inf", "abs", "max", "min", "int", "float", "bool", "round", "len"}
    | {"IsNonOverlappingAndDenseIndicator", "cast_symbool_to_symint_guardless"}
)
_TENSOR_METHODS = frozenset(
    {"size", "stride", "storage_offset", "dim", "numel", "shape", "dtype", "device"}
)
_OPERATORS = (
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.USub, ast.UAdd,
    ast.Not, ast.Invert, ast.And, ast.Or, ast.BitAnd, ast.BitOr, ast.BitXor, ast.LShift,
    ast.RShift, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE,
)  # fmt: skip
_EXPRESSION_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Load)


def check_archive(data: bytes) -> None:
    """Raise :class:`Refused` unless ``data`` (a whole ``.pt2`` file) is safe to load."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as err:
        raise Refused(f"it is not a zip archive as torch.export.save writes ({err})") from err
    with archive:
        members = _members(archive)
        for name, info in members.items():
            if _SAMPLE_INPUTS.fullmatch(name):
                _check_sample_inputs(name, archive.read(info))
            elif _PAYLOAD_CONFIG.fullmatch(name):
                _check_payload_config(name, _read_json(archive, info, name))
            elif _MODEL.fullmatch(name):
                _check_model(name, _read_json(archive, info, name))


def _members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Members by their name below the archive's one root folder; refuse unknown ones."""
    infos = archive.infolist()
    if not infos:
        raise Refused("the archive is empty")
    root = infos[0].filename.split("/", 1)[0]
    members: dict[str, zipfile.ZipInfo] = {}
    seen: set[str] = set()
    for info in infos:
        prefix, _, name = info.filename.partition("/")
        if prefix != root or not name:
            raise Refused(f"member {info.filename!r} is outside the archive folder {root!r}")
        if name.lower() in seen:
            raise Refused(f"member {info.filename!r} appears twice")
        seen.add(name.lower())
        if not (
            name in _ROOT_FILES
            or any(p.fullmatch(name) for p in (_MODEL, _SAMPLE_INPUTS, _PAYLOAD_CONFIG, _RAW))
            or _EXTRA.fullmatch(name)
        ):
            raise Refused(f"member {info.filename!r} {_what(name)}")
        members[name] = info
    return members


def _what(name: str) -> str:
    if name.startswith("data/aotinductor/"):
        return "is AOTInductor compiled code (a shared library that loading would run)"
    if name.endswith(".pt") or "custom_obj_" in name or "opaque_obj_" in name:
        return "is a pickled object (loading would unpickle it)"
    return "is not one that torch.export.save writes for a plain program"


def _read_json(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> Any:
    try:
        return json.loads(archive.read(info))
    except (ValueError, UnicodeDecodeError) as err:
        raise Refused(f"{name} is not valid JSON ({err})") from err


def _check_payload_config(name: str, config: Any) -> None:
    kind = "weights" if name.startswith("data/weights/") else "constants"
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise Refused(f"{name} has no 'config' mapping")
    for key, meta in entries.items():
        if not isinstance(meta, dict):
            raise Refused(f"{name}: entry {key!r} is not a mapping")
        if meta.get("use_pickle") is not False:
            raise Refused(f"{name}: {kind} entry {key!r} is stored with pickle")
        path_name = meta.get("path_name")
        if not isinstance(path_name, str) or not _PAYLOAD_NAME[kind].fullmatch(path_name):
            raise Refused(
                f"{name}: {kind} entry {key!r} points to {path_name!r}, not to a raw tensor "
                "payload (custom and opaque objects are pickled)"
            )


def _check_sample_inputs(name: str, raw: bytes) -> None:
    if not raw:
        return
    import torch

    try:
        inputs = torch.load(io.BytesIO(raw), weights_only=True)
    except Exception as err:  # whatever the restricted unpickler refuses
        found = re.search(r"(?i)GLOBAL ([\w.]+)", str(err))
        detail = f"it needs {found.group(1)}" if found else type(err).__name__
        raise Refused(
            f"{name} (the example inputs) holds objects that only a full unpickler loads "
            f"({detail}), and torch.export.load would retry with weights_only=False"
        ) from err
    for key in _keys(inputs):
        if not (isinstance(key, int) or (isinstance(key, str) and _IDENTIFIER.fullmatch(key))):
            raise Refused(f"{name}: the example inputs use the key {key!r}; keys are names")


def _keys(value: Any) -> Iterator[object]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _keys(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _keys(item)


def _check_model(name: str, document: Any) -> None:
    for key, value in _strings(document, ""):
        where = f"{name}: {key or 'a value'} {value[:80]!r}"
        if key in ("expr_str", "guards_code"):
            what = "a shape expression" if key == "expr_str" else "a guard"
            if _NOT_IN_EXPRESSIONS.search(value):
                raise Refused(f"{where} is not {what}: it holds a '\"', '\\', '#' or line break")
            _check_code(value, _sym_expr_node if key == "expr_str" else _guard_node, where, what)
        elif key == "forward_arg_names":
            if not value.isidentifier():
                raise Refused(f"{where} is not an argument name")
        elif key in _JSON_TEXT:
            if _CONTROL.search(value):
                raise Refused(f"{where} holds control characters")
            try:
                json.loads(value)
            except ValueError as err:
                raise Refused(f"{where} is not JSON") from err
        elif key in _FREE_TEXT:
            if _CONTROL.search(value) or (key != "stack_trace" and "\n" in value):
                raise Refused(f"{where} holds control characters or line breaks")
        elif _CODE_CHARS.search(value):
            raise Refused(f"{where} holds quotes, backslashes or control characters")


def _strings(value: Any, key: str) -> Iterator[tuple[str, str]]:
    """``(the key it is under, string)`` for every string in a JSON document, keys too."""
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, dict):
        for name, item in value.items():
            yield "a key", name
            yield from _strings(item, name)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, key)


def _check_code(text: str, allowed: Callable[[ast.AST], bool], where: str, what: str) -> None:
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        raise Refused(f"{where} is not {what} (not one expression)") from err
    for node in ast.walk(tree):
        if not allowed(node):
            raise Refused(
                f"{where} is not {what}: it uses {ast.unparse(node)[:60]!r} "
                f"({type(node).__name__}); only known functions, symbols and numbers are loaded"
            )


@functools.cache
def _sym_functions() -> frozenset[str]:
    """sympy's and torch's expression classes (what ``srepr`` writes for shape expressions)."""
    import sympy  # type: ignore[import-untyped]
    import torch.utils._sympy.functions as torch_functions

    names = set()
    for module in (sympy, torch_functions):
        for attr in dir(module):
            value = getattr(module, attr)
            is_class = isinstance(value, type) and issubclass(value, sympy.Basic)
            if not attr.startswith("_") and (is_class or isinstance(value, sympy.Basic)):
                names.add(attr)
    return frozenset(names)


def _sym_expr_node(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id in _sym_functions() or bool(_SYMBOL.fullmatch(node.id))
    if isinstance(node, ast.Constant):
        value = node.value
        return isinstance(value, (int, float)) or (
            isinstance(value, str) and bool(_IDENTIFIER.fullmatch(value))
        )
    if isinstance(node, ast.Call):
        return isinstance(node.func, ast.Name)
    if isinstance(node, ast.keyword):
        return node.arg is not None and isinstance(node.value, ast.Constant)
    return isinstance(node, (*_EXPRESSION_NODES, ast.Tuple, *_OPERATORS))


def _guard_node(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id in _GUARD_NAMES
    if isinstance(node, ast.Attribute):
        if isinstance(node.value, ast.Name) and node.value.id == "math":
            return not node.attr.startswith("_")
        return node.attr in _TENSOR_METHODS
    if isinstance(node, ast.Constant):
        value = node.value
        return isinstance(value, (int, float)) or (
            isinstance(value, str) and bool(_IDENTIFIER.fullmatch(value))
        )
    if isinstance(node, ast.Call):
        return not node.keywords
    return isinstance(node, (*_EXPRESSION_NODES, ast.Subscript, *_OPERATORS))
