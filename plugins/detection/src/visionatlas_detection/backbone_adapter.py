"""Registered backbones as detector backbones: a feature pyramid over ``forward_multiscale``.

torchvision's detectors take a module with an ``out_channels`` attribute whose forward returns
an ordered dict of equally wide maps. :class:`BackboneFPN` makes one from any registered
multi-scale :class:`~visionatlas.models.backbones.base.Backbone`, with the submodule names of
torchvision's ``BackboneWithFPN`` (``body``, ``fpn``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock
from torchvision.ops.misc import FrozenBatchNorm2d

from visionatlas.errors import IncompatibleBackboneError
from visionatlas.models.backbones.base import Backbone

__all__ = ["BackboneFPN", "freeze_batchnorm", "levels_at"]


def levels_at(backbone: Backbone, strides: Sequence[int], *, architecture: str) -> list[str]:
    """Names of ``backbone``'s levels at ``strides``; refuse a backbone that lacks one."""
    by_stride = {level.stride: level.name for level in backbone.feature_info}
    missing = [s for s in strides if s not in by_stride]
    if missing:
        offered = [level.stride for level in backbone.feature_info]
        raise IncompatibleBackboneError(
            f"{architecture} needs backbone levels at strides {list(strides)}, but backbone "
            f"{backbone.name!r} as configured offers strides {offered} (missing {missing}); "
            "check its extra_kwargs (e.g. dilation keeps later levels at one stride)"
        )
    return [by_stride[s] for s in strides]


class BackboneFPN(nn.Module):
    """``fpn(body.forward_multiscale(x))`` restricted to ``levels``, as torchvision expects.

    The pyramid's inputs are named ``"0"``, ``"1"``, ... in stride order, so its outputs carry
    torchvision's names (``"pool"``, or ``"p6"``/``"p7"``, for the extra levels) and the
    R-CNN RoI poolers find the maps they look for.
    """

    def __init__(
        self,
        body: Backbone,
        levels: Sequence[str],
        out_channels: int,
        extra_blocks: ExtraFPNBlock | None = None,
    ) -> None:
        super().__init__()
        channels = {level.name: level.channels for level in body.feature_info}
        self.body = body
        self.levels = tuple(levels)
        self.fpn = FeaturePyramidNetwork(
            [channels[name] for name in self.levels], out_channels, extra_blocks=extra_blocks
        )
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = self.body.forward_multiscale(x)
        inputs = OrderedDict((str(i), features[name]) for i, name in enumerate(self.levels))
        return self.fpn(inputs)


def freeze_batchnorm(module: nn.Module) -> int:
    """Replace every ``BatchNorm2d`` inside ``module`` by an equivalent ``FrozenBatchNorm2d``.

    Statistics, affine parameters and ``eps`` are copied, so eval outputs do not change
    (affine parameters not yet initialised, under
    :func:`~visionatlas.models.deferred_init.deferred_init`, are left to the weights loaded
    next). Returns how many layers were replaced.
    """
    replaced = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen = frozen.to(device=_device_of(child))
            if child.affine and not child.weight.is_meta:  # meta: weights load later
                frozen.weight.copy_(child.weight.detach())
                frozen.bias.copy_(child.bias.detach())
            if child.track_running_stats and child.running_mean is not None:
                frozen.running_mean.copy_(child.running_mean)
                frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
            replaced += 1
        else:
            replaced += freeze_batchnorm(child)
    return replaced


def _device_of(module: nn.Module) -> object:
    for tensor in (*module.parameters(), *module.buffers()):
        if not tensor.is_meta:  # a deferred_init placeholder stands for a real device
            return tensor.device
    return "cpu"
