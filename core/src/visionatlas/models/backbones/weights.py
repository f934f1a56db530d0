"""Pretrained weights for backbones: resolve, find, fetch, read and load them.

Sources, in order: ``BackboneConfig.weights_path``; the torch hub cache
(``$TORCH_HOME/hub/checkpoints/<file>``); a download with ``torch.hub``, unless the
environment variable ``VISIONATLAS_OFFLINE`` is ``1`` or ``true``. Every failure raises
:class:`~visionatlas.errors.PretrainedWeightsError` saying what was tried and where a file
would be picked up.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from visionatlas.config import BackboneConfig
from visionatlas.errors import PretrainedWeightsError
from visionatlas.models.deferred_init import taking_weights
from visionatlas.specs import WeightsSpec

if TYPE_CHECKING:
    from torchvision.models import WeightsEnum

    from visionatlas.models.backbones.base import Backbone

__all__ = [
    "OFFLINE_ENV",
    "checkpoint_path",
    "fetch_state_dict",
    "fetch_torchvision_weights",
    "fetch_weights",
    "load_backbone_weights",
    "read_state_dict",
    "torchvision_weights",
]

OFFLINE_ENV = "VISIONATLAS_OFFLINE"
"""Set to ``1`` or ``true`` to never download; only local files are used."""

_NESTED_KEYS = ("state_dict", "model")
_SHOWN_KEYS = 5
_OWN_CLASSIFIER_KEYS = frozenset({"classifier.weight", "classifier.bias"})


def torchvision_weights(ref: str, member: str | None = None) -> WeightsEnum:
    """The torchvision weights member that ``ref`` (``"ResNet50_Weights.IMAGENET1K_V2"``) names.

    ``member`` replaces the member part of ``ref``; it may be ``"DEFAULT"``, a bare member
    name or a full ``"Enum.MEMBER"`` reference of the same enum.
    """
    from torchvision.models import get_weight

    enum_name, dot, ref_member = ref.partition(".")
    if not dot or not enum_name or not ref_member:
        raise ValueError(
            f"invalid weights reference {ref!r}; expected '<WeightsEnum>.<MEMBER>', "
            "e.g. 'ResNet50_Weights.IMAGENET1K_V2'"
        )
    try:
        enum = type(get_weight(f"{enum_name}.DEFAULT"))
    except (ValueError, KeyError) as err:
        raise ValueError(
            f"unknown torchvision weights enum {enum_name!r} in {ref!r}: {err}"
        ) from err
    wanted = ref_member if member is None else member.strip()
    if wanted.startswith(f"{enum_name}."):
        wanted = wanted[len(enum_name) + 1 :]
    members = {name.upper(): value for name, value in enum.__members__.items()}
    found = members.get(wanted.upper())
    if found is None:
        valid = ", ".join(enum.__members__)
        raise ValueError(f"{enum_name} has no member {wanted!r}; valid members: {valid}")
    return found


def checkpoint_path(weights: WeightsEnum | WeightsSpec) -> Path:
    """Where ``torch.hub`` keeps the file of ``weights`` (honours ``TORCH_HOME``)."""
    if isinstance(weights, WeightsSpec):
        filename = weights.file
    else:
        filename = os.path.basename(str(weights.url).split("?", 1)[0])
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a ``.pth``/``.pt`` (``torch.load``, weights only) or ``.safetensors`` file.

    A bare state dict or one nested under ``"state_dict"`` or ``"model"`` is accepted.
    """
    file = Path(path)
    if not file.is_file():
        what = "is a directory, not a file" if file.is_dir() else "does not exist"
        raise PretrainedWeightsError(f"weights file {file} {what}")
    if file.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise PretrainedWeightsError(
                f"reading {file} needs the 'safetensors' package, which is not installed; "
                "install it with 'pip install safetensors' or convert the file to .pth"
            ) from err
        try:
            loaded: Any = load_file(str(file), device="cpu")
        except Exception as err:
            raise PretrainedWeightsError(
                f"could not read weights file {file}: {type(err).__name__}: {err}"
            ) from err
    else:
        try:
            loaded = _torch_load(file)
        except Exception as err:
            raise PretrainedWeightsError(
                f"could not read weights file {file}: {type(err).__name__}: {err}"
            ) from err
    return _as_state_dict(loaded, str(file))


def _torch_load(file: Path) -> Any:
    """``torch.load`` (weights only), through a memory map when the file's format allows.

    Mapping the file and copying each tensor out is faster than torch's reader here; the
    copies own their memory, so nothing refers to the file once this returns (a file that is
    rewritten later cannot change or break a model).
    """
    try:
        mapped = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # the legacy (non-zip) format cannot be mapped
        return torch.load(file, map_location="cpu", weights_only=True)
    return _owned(mapped)


def _owned(value: Any) -> Any:
    """``value`` with every tensor in it copied out of the memory map."""
    if isinstance(value, Tensor):
        return value.clone()
    if isinstance(value, Mapping):
        copied: Any = OrderedDict((key, _owned(item)) for key, item in value.items())
        metadata = getattr(value, "_metadata", None)
        if metadata is not None:
            copied._metadata = metadata
        return copied
    if isinstance(value, (list, tuple)):
        return type(value)(_owned(item) for item in value)
    return value


def _as_state_dict(loaded: Any, source: str) -> dict[str, Tensor]:
    if isinstance(loaded, Mapping):
        for key in _NESTED_KEYS:
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping):
        raise PretrainedWeightsError(
            f"{source} holds a {type(loaded).__name__}, not a state dict "
            "(a mapping of parameter names to tensors)"
        )
    bad = [str(k) for k, v in loaded.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise PretrainedWeightsError(
            f"{source} is not a state dict: entries {bad[:_SHOWN_KEYS]} are not tensors "
            f"keyed by name (accepted: a bare state dict, or one under "
            f"{' or '.join(repr(k) for k in _NESTED_KEYS)})"
        )
    state = dict(loaded)
    metadata = getattr(loaded, "_metadata", None)
    if metadata is not None:
        state = _with_metadata(state, dict(metadata))
    return state


def _with_metadata(state: dict[str, Tensor], metadata: dict[str, Any]) -> dict[str, Tensor]:
    """A dict subclass carrying ``_metadata`` (module versions) like ``state_dict()`` does."""
    carrier = _StateDict(state)
    carrier._metadata = metadata
    return carrier


class _StateDict(dict[str, Tensor]):
    _metadata: dict[str, Any]


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true"}


def fetch_state_dict(
    backbone_name: str, weights_ref: str | WeightsSpec | None, config: BackboneConfig
) -> dict[str, Tensor]:
    """The pretrained state dict for a backbone, from the first source that has it."""
    return _fetch(backbone_name, weights_ref, config)[0]


def _fetch(
    backbone_name: str, weights_ref: str | WeightsSpec | None, config: BackboneConfig
) -> tuple[dict[str, Tensor], str]:
    """``(state_dict, source)`` where ``source`` names the file or URL it came from."""
    if config.weights_path is not None:
        path = Path(config.weights_path).expanduser()
        return read_state_dict(path), str(path)
    if weights_ref is None:
        raise PretrainedWeightsError(
            f"backbone {backbone_name!r} has no known pretrained weights; pass a local file "
            "with weights_path (BackboneConfig.weights_path / ModelConfig.weights_path)"
        )
    owner = f"backbone {backbone_name!r}"
    if isinstance(weights_ref, WeightsSpec):
        _check_tag(weights_ref, config.weights, owner)
        return fetch_weights(weights_ref, owner=owner)
    weights = torchvision_weights(weights_ref, config.weights)
    return fetch_torchvision_weights(weights, owner=owner)


def _check_tag(spec: WeightsSpec, wanted: str | None, owner: str) -> None:
    if wanted is None or wanted.strip().upper() in {"DEFAULT", spec.name.upper()}:
        return
    raise PretrainedWeightsError(
        f"{owner} has no weights {wanted!r}; accepted for BackboneConfig.weights: "
        f"None, 'DEFAULT' or {spec.name!r}"
    )


_LOCAL_FILE = (
    "pass a local weights file with weights_path "
    "(BackboneConfig.weights_path / ModelConfig.weights_path)"
)


def fetch_torchvision_weights(
    weights: WeightsEnum, *, owner: str, alternatives: str = _LOCAL_FILE
) -> tuple[dict[str, Tensor], str]:
    """``(state_dict, source)`` of torchvision ``weights``: the hub cache, else a download.

    Nothing is downloaded when ``VISIONATLAS_OFFLINE`` is set. A failure raises
    :class:`PretrainedWeightsError` naming ``owner`` (e.g. ``"backbone 'resnet50'"``), the
    URL and the exact path to put the file at, then ``alternatives`` (what else the user
    can do). Task plugins use this for whole-model checkpoints (COCO detectors, ...).
    """
    path = checkpoint_path(weights)
    if path.is_file():
        return read_state_dict(path), str(path)
    url = str(weights.url)
    if _offline():
        reason = f"{OFFLINE_ENV} is set, so nothing is downloaded, and the file is not cached"
        raise PretrainedWeightsError(
            _unavailable(owner, repr(weights), url, path, reason, alternatives)
        )
    try:
        loaded = torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=True, check_hash=True, weights_only=True
        )
    except Exception as err:
        reason = f"download failed ({type(err).__name__}: {err})"
        raise PretrainedWeightsError(
            _unavailable(owner, repr(weights), url, path, reason, alternatives)
        ) from err
    return _as_state_dict(loaded, url), str(path)


def fetch_weights(
    spec: WeightsSpec, *, owner: str, alternatives: str = _LOCAL_FILE
) -> tuple[dict[str, Tensor], str]:
    """``(state_dict, source)`` of a plugin's declared weights: the hub cache, else a download.

    The file is ``checkpoint_path(spec)``; a declared ``sha256`` is checked for a cached file
    and for a download, which is written to a temporary file and moved into place only once
    verified. Nothing is downloaded when ``VISIONATLAS_OFFLINE`` is set. A failure raises
    :class:`PretrainedWeightsError` naming ``owner``, the URL and the path to put the file at.
    """
    path = checkpoint_path(spec)
    label = f"{spec.name!r} ({spec.file})"
    if path.is_file():
        _verify(path, spec, owner)
        return read_state_dict(path), str(path)
    if _offline() and not spec.url.startswith("file://"):  # a local copy is no download
        reason = f"{OFFLINE_ENV} is set, so nothing is downloaded, and the file is not cached"
        raise PretrainedWeightsError(
            _unavailable(owner, label, spec.url, path, reason, alternatives)
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{spec.file}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        try:
            torch.hub.download_url_to_file(spec.url, partial, progress=True)
        except Exception as err:
            reason = f"download failed ({type(err).__name__}: {err})"
            raise PretrainedWeightsError(
                _unavailable(owner, label, spec.url, path, reason, alternatives)
            ) from err
        _verify(Path(partial), spec, owner, downloaded_from=spec.url)
        os.replace(partial, path)
    finally:
        Path(partial).unlink(missing_ok=True)
    return read_state_dict(path), str(path)


def _verify(path: Path, spec: WeightsSpec, owner: str, *, downloaded_from: str = "") -> None:
    if spec.sha256 is None:
        return
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != spec.sha256:
        where = f"the file downloaded from {downloaded_from}" if downloaded_from else str(path)
        fix = "it was not kept" if downloaded_from else "delete or replace it"
        raise PretrainedWeightsError(
            f"weights for {owner}: {where} has sha256 {digest.hexdigest()}, but the plugin "
            f"declares {spec.sha256}; {fix}"
        )


def _unavailable(
    owner: str, weights: object, url: str, path: Path, reason: str, alternatives: str
) -> str:
    return (
        f"pretrained weights {weights} for {owner} are not available: {reason}. "
        f"Download {url} and put the file at {path}, or {alternatives}"
    )


def load_backbone_weights(
    backbone: Backbone,
    weights_ref: str | WeightsSpec | None,
    config: BackboneConfig,
    *,
    classifier_prefix: str | None = None,
    key_map: Mapping[str, str] | None = None,
) -> None:
    """Load pretrained weights into ``backbone`` (strictly, save its own ``classifier``).

    The file may hold the full torchvision model or the backbone itself. Keys starting with
    a ``key_map`` prefix are renamed (``"classifier.0."`` -> ``"pre_logits.0."``). The final
    layer, under ``classifier_prefix`` (torchvision's, e.g. ``"fc."``) or the backbone's own
    ``classifier.weight``/``classifier.bias``, goes to ``backbone.pretrained_classifier_state``
    as ``{"weight", "bias"}`` and, when the backbone has a built-in classifier of that shape,
    into it as well. Everything else must match the backbone exactly. A
    :class:`~visionatlas.specs.WeightsSpec` brings its own ``key_map`` and
    ``classifier_prefix`` (the arguments win when given). ``backbone.weights_source`` is
    set to the file the weights came from.
    """
    if isinstance(weights_ref, WeightsSpec):
        key_map = weights_ref.key_map if key_map is None else key_map
        classifier_prefix = weights_ref.classifier_prefix or classifier_prefix
    state, source = _fetch(backbone.name, weights_ref, config)
    metadata: dict[str, Any] | None = getattr(state, "_metadata", None)
    renames = dict(key_map or {})
    remapped: dict[str, Tensor] = {}
    torchvision_final: dict[str, Tensor] = {}
    own_final: dict[str, Tensor] = {}
    for key, tensor in state.items():
        new_key = _rename(key, renames)
        if classifier_prefix and new_key.startswith(classifier_prefix):
            torchvision_final[new_key[len(classifier_prefix) :]] = tensor
        elif new_key in _OWN_CLASSIFIER_KEYS:
            own_final[new_key.removeprefix("classifier.")] = tensor
        else:
            remapped[new_key] = tensor
    final_layer = torchvision_final or own_final
    if metadata is not None:
        remapped = _with_metadata(
            remapped, {_rename(f"{k}.", renames)[:-1] if k else k: v for k, v in metadata.items()}
        )
    try:
        with taking_weights():  # read for this load only
            result = backbone.load_state_dict(remapped, strict=False)
    except RuntimeError as err:
        raise PretrainedWeightsError(
            f"weights from {source} do not fit backbone {backbone.name!r}: {err}"
        ) from err
    missing = [k for k in result.missing_keys if not k.startswith("classifier.")]
    unexpected = list(result.unexpected_keys)
    if missing or unexpected:
        raise PretrainedWeightsError(
            f"weights from {source} do not match backbone {backbone.name!r}: "
            f"{_keys('missing', missing)}; {_keys('unexpected', unexpected)}"
        )
    if final_layer:
        backbone.pretrained_classifier_state = final_layer
        _adopt_classifier(backbone, final_layer)
    backbone.weights_source = source


def _rename(key: str, renames: Mapping[str, str]) -> str:
    for old, new in renames.items():
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def _keys(label: str, keys: list[str]) -> str:
    if not keys:
        return f"no {label} keys"
    more = f", ... ({len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else ""
    return f"{len(keys)} {label} keys: {', '.join(keys[:_SHOWN_KEYS])}{more}"


def _adopt_classifier(backbone: Backbone, final_layer: dict[str, Tensor]) -> None:
    """Copy the checkpoint's final layer into a built-in classifier of the same shape."""
    classifier = backbone.classifier
    if classifier is None:
        return
    own = classifier.state_dict()
    if own.keys() == final_layer.keys() and all(own[k].shape == final_layer[k].shape for k in own):
        classifier.load_state_dict(final_layer)
