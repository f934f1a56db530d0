"""Input checks of the models ``create_model`` builds.

A task declares what its models take as data, ``TaskSpec.input_kind`` (see
:data:`~visionatlas.specs.INPUT_KINDS`), and the catalog installs an :class:`InputCheck` as
a forward pre-hook of every model it builds for that task. The check always looks at what
costs nothing (the type, number of dimensions, channels and dtype of the images) and, when
switched on, at the pixel values too: NaN or infinite values raise
:class:`~visionatlas.errors.NonFiniteInputError` naming each bad image and its counts.

The value check costs one reduction over the batch and one host synchronisation per
forward. It is off by default; switch it on per model (``create_model(...,
check_inputs=True)`` or ``input_check(model).values = True``) or for a block of code
(``with checking_inputs(): ...``, as the command line does). It is skipped on the meta
device and while ``torch.export``, ``torch.compile`` or ``torch.jit.trace`` trace the
model (``torch.jit.trace`` skips the whole check), so exports and shape inference are
unaffected.

This module imports torch only when a check runs.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from visionatlas.errors import InvalidInputError, NonFiniteInputError
from visionatlas.specs import INPUT_KINDS

if TYPE_CHECKING:
    from torch import Tensor, nn

__all__ = ["InputCheck", "checking_inputs", "input_check", "install_input_check"]

_SHOWN_IMAGES = 5
_FORCED: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "visionatlas_checking_inputs", default=None
)


@contextmanager
def checking_inputs(enabled: bool = True) -> Iterator[None]:
    """Switch the value check of every model's :class:`InputCheck` on (or off) in a block.

    Inside the block this setting wins over each model's own ``values`` flag; nested
    blocks override outer ones. The command line runs every command inside
    ``checking_inputs()``.
    """
    token = _FORCED.set(bool(enabled))
    try:
        yield
    finally:
        _FORCED.reset(token)


def _shape(value: Tensor) -> tuple[int, ...]:
    return tuple(value.shape)


class InputCheck:
    """A forward pre-hook that checks a model's images against an input kind.

    ``kind`` is a key of :data:`~visionatlas.specs.INPUT_KINDS`; ``label`` names the model
    in messages (``"classification/resnet18"``); ``argument`` is the name of the images
    argument of ``forward``, looked up when images are passed by keyword. ``values`` switches
    the check of pixel values on for this model.
    """

    def __init__(
        self, kind: str, *, values: bool = False, label: str = "the model", argument: str = "images"
    ) -> None:
        if kind not in INPUT_KINDS:
            raise ValueError(
                f"input kind {kind!r} is not one of {', '.join(map(repr, INPUT_KINDS))}"
            )
        self.kind = kind
        self.values = values
        self.label = label
        self.argument = argument

    def __repr__(self) -> str:
        return f"InputCheck({self.kind!r}, values={self.values}, label={self.label!r})"

    @property
    def checks_values(self) -> bool:
        """Whether the value check runs now: the :func:`checking_inputs` block, else ``values``."""
        forced = _FORCED.get()
        return self.values if forced is None else forced

    def __call__(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if args:
            images = args[0]
        elif self.argument in kwargs:
            images = kwargs[self.argument]
        else:  # forward itself reports the missing argument
            return
        if _jit_tracing():  # sizes are traced tensors there: comparing them would be recorded
            return
        items = self.check(images)
        if self.checks_values:
            self.check_values(items)

    # -- cheap checks: metadata only -------------------------------------------------------
    def _fail(self, problem: str, hint: str = "", index: int | None = None) -> InvalidInputError:
        accepted = INPUT_KINDS[self.kind]
        return InvalidInputError(
            f"{problem}; {self.label} expects images as {accepted}"
            + (f" ({hint})" if hint else ""),
            index=index,
        )

    def check(self, images: Any) -> list[Tensor]:
        """Check type, shape and dtype; return the images as a list of tensors to scan.

        Raises :class:`~visionatlas.errors.InvalidInputError` naming what was found.
        """
        import torch

        if self.kind == "image_list" and isinstance(images, list | tuple):
            return self._check_list(images)
        if not isinstance(images, torch.Tensor):
            hint = ""
            if isinstance(images, list | tuple) and self.kind == "image_batch":
                hint = "stack a list of (3, H, W) images with torch.stack(images)"
            raise self._fail(f"got {type(images).__name__}", hint)
        self._check_batch(images)
        return [images]

    def _check_batch(self, images: Tensor) -> None:
        name = "images"
        shape = _shape(images)
        if images.dim() != 4:
            hint = ""
            if images.dim() == 3:
                hint = (
                    "wrap a single image in a list"
                    if self.kind == "image_list"
                    else f"add the batch dimension with {name}.unsqueeze(0)"
                )
            raise self._fail(f"{name} are a tensor of shape {shape}", hint)
        channels = shape[1]
        if channels != 3:
            raise self._fail(
                f"{name} have {channels} channel{'' if channels == 1 else 's'} (shape {shape}), "
                "expected 3 (RGB)",
                _channel_hint(name, shape, batch=True),
            )
        if not images.is_floating_point():
            raise self._fail(
                f"{name} have dtype {images.dtype}, expected floating point",
                f"convert with {name}.float() / 255, then normalize as the model expects",
            )

    def _check_list(self, images: Sequence[Any]) -> list[Tensor]:
        import torch

        if not images:
            raise self._fail("got no images")
        items: list[Tensor] = []
        for index, image in enumerate(images):
            where = f"images[{index}]"
            if not isinstance(image, torch.Tensor):
                raise self._fail(f"{where} is a {type(image).__name__}", index=index)
            shape = _shape(image)
            if image.dim() != 3 or shape[0] != 3:
                hint = _channel_hint("image", shape, batch=False) if image.dim() == 3 else ""
                raise self._fail(f"{where} has shape {shape}", hint, index=index)
            if not image.is_floating_point():
                raise self._fail(
                    f"{where} has dtype {image.dtype}, expected floating point",
                    "convert uint8 images with image.float() / 255",
                    index=index,
                )
            items.append(image)
        return items

    # -- the value check: one reduction, details only on failure ---------------------------
    def check_values(self, items: Sequence[Tensor]) -> None:
        """Raise :class:`~visionatlas.errors.NonFiniteInputError` if a pixel is NaN or inf.

        ``items`` are what :meth:`check` returned. Skipped on the meta device and while the
        model is traced (``torch.export``, ``torch.compile``, ``torch.jit.trace``).
        """
        import torch

        if _tracing() or any(t.device.type == "meta" for t in items):
            return
        with torch.no_grad():
            flags = [torch.isfinite(t).all() for t in items]
            device = flags[0].device
            if bool(torch.stack([f.to(device) for f in flags]).all()):
                return
            counts = self._count(items)
        raise NonFiniteInputError(self._describe(counts), counts=counts)

    def _count(self, items: Sequence[Tensor]) -> dict[int, tuple[int, int, int]]:
        import torch

        if self.kind == "image_batch" or (len(items) == 1 and items[0].dim() == 4):
            images = items[0].detach().flatten(1)
        else:
            images = None
        rows: list[Tensor] = list(images) if images is not None else [t.detach() for t in items]
        counts: dict[int, tuple[int, int, int]] = {}
        for index, values in enumerate(rows):
            nan = int(torch.isnan(values).sum())
            pos = int((values == float("inf")).sum())
            neg = int((values == float("-inf")).sum())
            if nan or pos or neg:
                counts[index] = (nan, pos, neg)
        return counts

    def _describe(self, counts: dict[int, tuple[int, int, int]]) -> str:
        parts = [
            f"images[{index}] has {nan} NaN, {pos} +inf and {neg} -inf values"
            for index, (nan, pos, neg) in list(counts.items())[:_SHOWN_IMAGES]
        ]
        more = len(counts) - _SHOWN_IMAGES
        if more > 0:
            parts.append(f"and {more} more image{'' if more == 1 else 's'}")
        bad = len(counts)
        return (
            f"{bad} image{'' if bad == 1 else 's'} given to {self.label} "
            f"{'holds' if bad == 1 else 'hold'} non-finite pixel values: {'; '.join(parts)}. "
            "Pixel values must be finite; check how these images were loaded and normalized"
        )


def _channel_hint(name: str, shape: tuple[int, ...], *, batch: bool) -> str:
    channels_last = (shape[-1] == 3) if len(shape) >= 3 else False
    if channels_last:
        order = "0, 3, 1, 2" if batch else "2, 0, 1"
        return f"the images look channels-last: use {name}.permute({order})"
    channels = shape[1] if batch else shape[0]
    prefix = "-1, " if batch else ""
    if channels == 1:
        return f"repeat a grey channel with {name}.expand({prefix}3, -1, -1)"
    if channels == 4:
        index = "[:, :3]" if batch else "[:3]"
        return f"drop the alpha channel with {name}{index}"
    return ""


def _jit_tracing() -> bool:
    import torch

    return bool(torch.jit.is_tracing())  # type: ignore[attr-defined, no-untyped-call]


def _tracing() -> bool:
    import torch

    return bool(torch.compiler.is_compiling()) or _jit_tracing()


def _argument_name(model: nn.Module) -> str:
    try:
        parameters = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return "images"
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return next((p.name for p in parameters if p.kind in positional), "images")


def install_input_check(
    model: nn.Module, kind: str, *, values: bool = False, label: str = "the model"
) -> InputCheck:
    """Install an :class:`InputCheck` of ``kind`` on ``model`` (first of its pre-hooks).

    A check already installed is updated instead, so a model never checks twice.
    """
    existing = input_check(model)
    if existing is not None:
        existing.kind, existing.values, existing.label = kind, values, label
        return existing
    check = InputCheck(kind, values=values, label=label, argument=_argument_name(model))
    model.register_forward_pre_hook(check, with_kwargs=True, prepend=True)
    return check


def input_check(model: nn.Module) -> InputCheck | None:
    """The :class:`InputCheck` installed on ``model``, or ``None`` (then nothing is checked).

    The training engine, for example, switches the value check on with
    ``input_check(model).values = True``.
    """
    for hook in getattr(model, "_forward_pre_hooks", {}).values():
        if isinstance(hook, InputCheck):
            return hook
    return None
