"""What ``add_*`` checks before a spec enters the tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from visionatlas.plugins.spec_tables import Kind
from visionatlas.specs import (
    INPUT_KINDS,
    NAME_PATTERN,
    REFERENCE_PATTERN,
    ArchitectureSpec,
    BackboneSpec,
    CommandSpec,
    FeatureLevel,
    HeadSpec,
    TaskSpec,
    TrainingSpec,
    WeightsSpec,
)

__all__ = ["RESERVED_COMMANDS", "validate_spec"]


def _check_name(value: Any, what: str, *, namespaced: bool = False) -> None:
    """A lowercase name; backbones and architectures may have one ``namespace/`` prefix."""
    if (
        not isinstance(value, str)
        or not NAME_PATTERN.match(value)
        or ("/" in value and not namespaced)
    ):
        prefix = ", after an optional 'namespace/' prefix" if namespaced else ""
        raise ValueError(
            f"{what} must be a lowercase identifier such as 'resnet50' "
            f"(letters, digits, '_', '-', '.'{prefix}), got {value!r}"
        )


def _check_builder(value: Any, what: str) -> None:
    if callable(value):
        return
    if isinstance(value, str) and REFERENCE_PATTERN.match(value):
        return
    raise ValueError(f"{what} must be a callable or a 'module:attribute' string, got {value!r}")


def _check_count(value: Any, what: str, *, minimum: int = 0, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an int >= {minimum}, got {value!r}")


_URL_SCHEMES = ("https://", "http://", "file://")
_HEX = frozenset("0123456789abcdef")


def _check_weights(value: Any, what: str) -> None:
    """``None``, a torchvision ``"Enum.MEMBER"`` reference or a well-formed WeightsSpec."""
    if value is None:
        return
    if isinstance(value, str):
        enum_name, dot, member = value.partition(".")
        if dot and enum_name and member:
            return
        raise ValueError(
            f"{what} must be a torchvision weights reference such as "
            f"'ResNet50_Weights.IMAGENET1K_V2', a WeightsSpec or None, got {value!r}"
        )
    if not isinstance(value, WeightsSpec):
        raise TypeError(f"{what} must be a str, a WeightsSpec or None, got {type(value).__name__}")
    if not isinstance(value.url, str) or not value.url.startswith(_URL_SCHEMES):
        raise ValueError(f"{what}.url must start with {', '.join(_URL_SCHEMES)}, got {value.url!r}")
    file = value.file
    if not file or "/" in file or "\\" in file or file in {".", ".."}:
        raise ValueError(
            f"{what} needs a plain file name (file_name, or a URL whose path ends in one), "
            f"got {file!r}"
        )
    digest = value.sha256
    if digest is not None and (
        not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _HEX
    ):
        raise ValueError(f"{what}.sha256 must be 64 lowercase hex digits, got {digest!r}")
    if not isinstance(value.key_map, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.key_map.items()
    ):
        raise ValueError(f"{what}.key_map must map key prefixes (str) to new prefixes (str)")
    if value.classifier_prefix is not None and not isinstance(value.classifier_prefix, str):
        raise ValueError(f"{what}.classifier_prefix must be a str or None")
    if not isinstance(value.name, str) or not value.name:
        raise ValueError(f"{what}.name must be a non-empty str, e.g. 'IMAGENET1K'")


RESERVED_COMMANDS = frozenset(
    {"list", "show", "backbones", "plugins", "demo", "registry", "export", "help"}
)
"""Subcommand names of the core command line, which plugins cannot take."""


def validate_spec(kind: Kind, spec: Any) -> None:  # spec: one of the five spec types
    """Raise ``TypeError``/``ValueError`` describing what is malformed in ``spec``."""
    expected: dict[Kind, type[Any]] = {
        "task": TaskSpec,
        "backbone": BackboneSpec,
        "head": HeadSpec,
        "architecture": ArchitectureSpec,
        "training": TrainingSpec,
        "command": CommandSpec,
    }
    cls = expected[kind]
    if not isinstance(spec, cls):  # a plugin may pass anything
        article = "an" if cls.__name__[0] in "AEIOU" else "a"
        raise TypeError(f"add_{kind} expects {article} {cls.__name__}, got {type(spec).__name__}")
    _check_name(spec.name, f"{kind} name", namespaced=kind in ("backbone", "architecture"))
    if kind == "task":
        if spec.example_inputs is not None:
            _check_builder(spec.example_inputs, f"task {spec.name!r} example_inputs")
        if spec.input_kind is not None and spec.input_kind not in INPUT_KINDS:
            raise ValueError(
                f"task {spec.name!r} input_kind={spec.input_kind!r}; accepted: None or "
                f"{', '.join(map(repr, INPUT_KINDS))}"
            )
        return
    if kind == "training":
        _check_builder(spec.builder, f"training of task {spec.task!r} builder")
        return
    if kind == "command":
        _check_builder(spec.configure, f"command {spec.name!r} configure")
        if spec.name in RESERVED_COMMANDS:
            raise ValueError(
                f"command name {spec.name!r} is a built-in visionatlas command; "
                f"reserved: {', '.join(sorted(RESERVED_COMMANDS))}"
            )
        return
    _check_builder(spec.builder, f"{kind} {spec.name!r} builder")
    if kind == "backbone":
        _check_count(spec.out_channels, f"backbone {spec.name!r} out_channels", minimum=1)
        _check_count(spec.pre_logits_dim, f"backbone {spec.name!r} pre_logits_dim", minimum=1)
        _check_count(spec.num_params, f"backbone {spec.name!r} num_params", optional=True)
        if not all(isinstance(level, FeatureLevel) for level in spec.feature_levels):
            raise TypeError(f"backbone {spec.name!r} feature_levels must be FeatureLevel objects")
        strides = [level.stride for level in spec.feature_levels]
        if strides != sorted(set(strides)):
            raise ValueError(
                f"backbone {spec.name!r} feature_levels must have increasing strides, got {strides}"
            )
        _check_weights(spec.pretrained_weights, f"backbone {spec.name!r} pretrained_weights")
        last = spec.feature_levels[-1].channels if spec.feature_levels else spec.out_channels
        if last != spec.out_channels:
            raise ValueError(
                f"backbone {spec.name!r} out_channels={spec.out_channels} differs from the "
                f"channels of its last feature level ({last}); they must be equal"
            )
    elif kind == "architecture":
        _check_name(spec.task, f"architecture {spec.name!r} task")
        _check_count(spec.num_params, f"architecture {spec.name!r} num_params", optional=True)
        if (
            isinstance(spec.default_num_classes, bool)
            or not isinstance(spec.default_num_classes, int)
            or spec.default_num_classes < 1
        ):
            raise ValueError(
                f"architecture {spec.name!r} default_num_classes must be an int >= 1, "
                f"got {spec.default_num_classes!r}"
            )
        if spec.config_class is not None:
            _check_builder(spec.config_class, f"architecture {spec.name!r} config_class")
