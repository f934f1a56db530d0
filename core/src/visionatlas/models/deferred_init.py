"""Build a model whose weights are about to be loaded without initialising them first.

Random initialisation is most of the cost of building a large model (1.1 s of resnet50's
1.9 s here), and every path that loads weights throws it away. Inside :func:`deferred_init`
each parameter a module registers is replaced by a placeholder on the ``meta`` device (no
memory, no initialisation); buffers stay real, so non-persistent buffers (anchors, position
indices) keep the values their constructors compute. ``load_state_dict`` on the model then
puts the loaded tensors in place of the placeholders, whatever code calls it (ours, a
plugin's, timm's).

:func:`construct_and_load` is the safe way to use it: anything the loaded weights leave as a
placeholder, or any failure that the deferral could have caused, makes it build the model
again the ordinary way and load the weights into that, so a model it returns never holds a
placeholder and its outputs are bit-identical to the ordinary path's.

Thread safety: the deferral is per thread (a :class:`~contextvars.ContextVar`); a thread that
is not inside :func:`deferred_init` builds modules exactly as torch does.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from visionatlas.errors import VisionAtlasError

__all__ = [
    "EAGER_ENV",
    "construct_and_load",
    "deferred_init",
    "eager_loading",
    "initialise_placeholders",
    "placeholders",
    "taking_weights",
]

ModuleT = TypeVar("ModuleT", bound=nn.Module)
logger = logging.getLogger(__name__)

_DEFERRING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "visionatlas_deferred_init", default=False
)
_TAKING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "visionatlas_taking_weights", default=False
)
_EAGER: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "visionatlas_eager_loading", default=False
)
EAGER_ENV = "VISIONATLAS_EAGER_INIT"
"""Set to ``1`` or ``true`` to make :func:`construct_and_load` always take the ordinary path."""
_STATE = "_visionatlas_deferred"
"""Attribute of a module holding placeholders: the handle of its load pre-hook."""
_DEVICE = "_visionatlas_device"
"""Attribute of a placeholder: the device of the parameter it stands for."""
_install_lock = threading.Lock()
_original_register: Callable[..., None] | None = None


def _install() -> None:
    """Route ``nn.Module.register_parameter`` through :func:`_register`, and the init
    functions through :func:`_skipping_placeholders` (once per process; both act only in
    a thread inside :func:`deferred_init`)."""
    global _original_register
    with _install_lock:
        if _original_register is not None:
            return
        _original_register = nn.Module.register_parameter
        nn.Module.register_parameter = _register  # type: ignore[method-assign]
        for name in _INIT_FUNCTIONS:
            setattr(nn.init, name, _skipping_placeholders(getattr(nn.init, name)))


def _register(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
    assert _original_register is not None
    _original_register(self, name, param)
    if param is None or not _DEFERRING.get():
        return
    adopted: torch.device | None = getattr(param, _DEVICE, None)  # a placeholder moved here
    if param.is_meta and adopted is None:
        return
    if isinstance(param, nn.parameter.UninitializedParameter):
        return
    if _STATE not in self.__dict__:
        hook = self.register_load_state_dict_pre_hook(_fill_placeholders)  # type: ignore[no-untyped-call]
        self.__dict__[_STATE] = hook
    if adopted is not None:
        return
    placeholder = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
    setattr(placeholder, _DEVICE, param.device)
    self._parameters[name] = placeholder


_INIT_FUNCTIONS = (
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
    "sparse_",
)  # fmt: skip
"""``torch.nn.init`` functions that return at once on a placeholder: there are no values to
write, and torch's meta kernels for them cost as much as the rest of the construction."""


def _skipping_placeholders(init: Callable[..., Tensor]) -> Callable[..., Tensor]:
    @functools.wraps(init)
    def wrapper(tensor: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if _DEFERRING.get() and isinstance(tensor, Tensor) and tensor.is_meta:
            return tensor
        return init(tensor, *args, **kwargs)

    return wrapper


@contextmanager
def deferred_init(enabled: bool = True) -> Iterator[None]:
    """Parameters created in this block (this thread only) are uninitialised placeholders.

    ``enabled=False`` turns the deferral off inside an enclosing block, for parts that no
    weights will cover (a new classifier). Prefer :func:`construct_and_load`, which never
    returns a placeholder; a module built here must get every parameter from
    ``load_state_dict`` before it is used.
    """
    _install()
    token = _DEFERRING.set(enabled)
    try:
        yield
    finally:
        _DEFERRING.reset(token)


@contextmanager
def taking_weights() -> Iterator[None]:
    """Let ``load_state_dict`` in this block use the given tensors themselves, not copies.

    For state dicts read from a file and used once: the placeholders take those tensors (when
    dtype, layout and device already match), which saves a copy and keeps peak memory at one
    set of weights. Without it the tensors are copied, so the caller's state dict never
    shares memory with the model.
    """
    token = _TAKING.set(True)
    try:
        yield
    finally:
        _TAKING.reset(token)


@contextmanager
def eager_loading() -> Iterator[None]:
    """Make :func:`construct_and_load` in this block initialise first, then load.

    The ordinary path, as torch's builders take it: for comparisons, and as an escape
    hatch (the environment variable ``VISIONATLAS_EAGER_INIT=1`` does the same everywhere).
    """
    token = _EAGER.set(True)
    try:
        yield
    finally:
        _EAGER.reset(token)


def _eager() -> bool:
    return _EAGER.get() or os.environ.get(EAGER_ENV, "").strip().lower() in {"1", "true"}


def _fill_placeholders(
    module: nn.Module,
    state_dict: dict[str, Any],
    prefix: str,
    local_metadata: Any,
    strict: bool,
    missing_keys: Any,
    unexpected_keys: Any,
    error_msgs: Any,
) -> None:
    """Swap each placeholder of ``module`` for its loaded tensor before torch copies into it.

    torch then copies the tensor onto itself, which it skips. Shape mismatches and missing
    keys are left for torch to report.
    """
    take = _TAKING.get()
    for name, param in list(module._parameters.items()):
        device: torch.device | None = getattr(param, _DEVICE, None)
        if param is None or not param.is_meta or device is None:
            continue
        key = prefix + name
        loaded = state_dict.get(key)
        if not isinstance(loaded, Tensor) or loaded.is_meta or loaded.shape != param.shape:
            continue  # torch reports the missing key or the size mismatch
        real = nn.Parameter(
            _materialised(param, loaded, device, take=take),
            requires_grad=param.requires_grad,
        )
        module._parameters[name] = real
        state_dict[key] = real  # torch's copy of a tensor onto itself is skipped


def _materialised(
    placeholder: Tensor, loaded: Tensor, device: torch.device, *, take: bool
) -> Tensor:
    """``loaded`` as the tensor the ordinary path's ``copy_`` would have produced."""
    loaded = loaded.detach()
    same = (
        loaded.dtype == placeholder.dtype
        and loaded.device == device
        and loaded.stride() == placeholder.stride()
        and loaded.storage_offset() == 0
        and loaded.untyped_storage().nbytes() == loaded.numel() * loaded.element_size()
    )
    if take and same:
        return loaded
    out = torch.empty_strided(
        placeholder.shape, placeholder.stride(), dtype=placeholder.dtype, device=device
    )
    with torch.no_grad():
        out.copy_(loaded)
    return out


def placeholders(module: nn.Module) -> list[str]:
    """Qualified names of the parameters and buffers of ``module`` still on the meta device."""
    names = [name for name, p in module.named_parameters(remove_duplicate=False) if p.is_meta]
    names += [name for name, b in module.named_buffers(remove_duplicate=False) if b.is_meta]
    return names


def initialise_placeholders(module: nn.Module) -> list[str]:
    """Initialise the placeholders in ``module`` with their layers' own ``reset_parameters()``.

    For parts that a loader knows no weights cover (class layers sized for another class
    count) and that the model initialises with the layers' defaults. A layer that holds a
    placeholder must define ``reset_parameters`` (torch's convolutions, linear and
    normalisation layers do), else ``TypeError``. Returns the initialised names.
    """
    done: list[str] = []
    for prefix, sub in module.named_modules():
        meta = [n for n, p in sub._parameters.items() if p is not None and p.is_meta]
        if not meta:
            continue
        reset = getattr(sub, "reset_parameters", None)
        if any(getattr(sub._parameters[n], _DEVICE, None) is None for n in meta):
            why = "it holds meta tensors that are not deferred_init placeholders"
        elif len(meta) < sum(p is not None for p in sub._parameters.values()):
            why = "some of its parameters are loaded"
        elif not callable(reset):
            why = "it has no reset_parameters()"
        else:
            why = ""
        if why:
            raise TypeError(
                f"cannot initialise {prefix or type(sub).__name__} ({type(sub).__name__}): "
                f"{why}; load weights for all of it or build it outside deferred_init"
            )
        assert callable(reset)
        for name in meta:
            param = sub._parameters[name]
            assert param is not None
            real = torch.empty_strided(
                param.shape, param.stride(), dtype=param.dtype, device=getattr(param, _DEVICE)
            )
            sub._parameters[name] = nn.Parameter(real, requires_grad=param.requires_grad)
            done.append(f"{prefix}.{name}" if prefix else name)
        reset()
    return done


def _release(module: nn.Module) -> None:
    for sub in module.modules():
        handle = sub.__dict__.pop(_STATE, None)
        if handle is not None:
            handle.remove()


def _tied(module: nn.Module) -> bool:
    seen: set[int] = set()
    for _, param in module.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            return True
        seen.add(id(param))
    return False


def construct_and_load(
    construct: Callable[[], ModuleT], load: Callable[[ModuleT], object]
) -> ModuleT:
    """``construct()`` without initialising its parameters, then ``load(model)`` into it.

    ``load`` must put every parameter in place through ``load_state_dict`` (on the model or
    its submodules; it runs with the deferral off, so a classifier it adds is initialised
    as usual). When the weights leave a parameter uncovered, when construction or loading
    trips over a placeholder, or when the model ties parameters, the model is built and
    loaded again the ordinary way, from the same random state (logged at debug level, with
    the reason); errors of visionatlas itself (missing files, weights that
    do not fit) are raised at once, and the half-built model is never returned.
    """
    if not _eager():
        rng = torch.get_rng_state()  # a fallback initialises as the ordinary path would
        try:
            with deferred_init():
                model = construct()
            computed = [name for name, b in model.named_buffers() if b.is_meta]
            if computed:
                why = f"buffer {computed[0]!r} is computed from parameters"
            elif _tied(model):
                why = "it ties parameters"
            else:
                with deferred_init(enabled=False):
                    load(model)
                left = placeholders(model)
                if not left:
                    _release(model)
                    return model
                why = f"the weights leave {len(left)} uncovered, e.g. {left[0]!r}"
        except VisionAtlasError:
            raise
        except Exception as err:  # e.g. a constructor that computes on its parameters
            why = f"{type(err).__name__}: {err}"
        logger.debug("construct_and_load: initialising, then loading, because %s", why)
        torch.set_rng_state(rng)
    with deferred_init(enabled=False):
        model = construct()
        load(model)
    return model
