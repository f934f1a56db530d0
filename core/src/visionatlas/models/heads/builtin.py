"""The built-in plugin that registers the core's reusable heads (imports no torch).

``linear``
    :class:`~visionatlas.models.heads.linear.LinearHead`: dropout and a linear layer.
``mlp``
    :class:`~visionatlas.models.heads.mlp.MLPHead`: hidden layers (default one of 512 units,
    LayerNorm, GELU), then dropout and a linear layer.
``gem``
    :class:`~visionatlas.models.heads.pooling.GeMHead`: generalized-mean pooling of the feature
    map with a learned exponent, then dropout and a linear layer.
``attention_pool``
    :class:`~visionatlas.models.heads.pooling.AttentionPoolHead`: a learned query attends over the
    feature map's positions, then dropout and a linear layer.

Parameter counts are for the default options; ``in_features`` is what the head receives:
the pre-logits width for ``linear`` and ``mlp``, the backbone's ``out_channels`` for the
pooling heads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from visionatlas.models.heads.params import linear_head_params
from visionatlas.plugins.hookspecs import hookimpl
from visionatlas.specs import HeadSpec

if TYPE_CHECKING:
    from visionatlas.plugins.registrar import Registrar

__all__ = [
    "HEADS",
    "attention_pool_head_params",
    "gem_head_params",
    "mlp_head_params",
    "visionatlas_api_version",
    "visionatlas_register_heads",
]

MLP_DEFAULT_HIDDEN = 512


def mlp_head_params(in_features: int, num_outputs: int) -> int:
    """Parameters of the default ``mlp`` head (one hidden layer of 512 with LayerNorm)."""
    hidden = MLP_DEFAULT_HIDDEN
    return in_features * hidden + hidden + 2 * hidden + linear_head_params(hidden, num_outputs)


def gem_head_params(in_features: int, num_outputs: int) -> int:
    """Parameters of the ``gem`` head: the exponent and the linear layer."""
    return 1 + linear_head_params(in_features, num_outputs)


def attention_pool_head_params(in_features: int, num_outputs: int) -> int:
    """Parameters of the ``attention_pool`` head: norm, query, attention, linear layer."""
    norm, query = 2 * in_features, in_features
    attention = 4 * in_features * in_features + 4 * in_features
    return norm + query + attention + linear_head_params(in_features, num_outputs)


HEADS: tuple[HeadSpec, ...] = (
    HeadSpec(
        name="linear",
        builder="visionatlas.models.heads.linear:LinearHead",
        description="Dropout and a linear layer over the pooled pre-logits vector",
        count_params=linear_head_params,
    ),
    HeadSpec(
        name="mlp",
        builder="visionatlas.models.heads.mlp:MLPHead",
        description="Hidden layers (linear, norm, activation), then dropout and a linear layer",
        count_params=mlp_head_params,
    ),
    HeadSpec(
        name="gem",
        builder="visionatlas.models.heads.pooling:GeMHead",
        description="Generalized-mean pooling of the feature map (learned p), then linear",
        count_params=gem_head_params,
    ),
    HeadSpec(
        name="attention_pool",
        builder="visionatlas.models.heads.pooling:AttentionPoolHead",
        description="A learned query attends over the feature map's positions, then linear",
        count_params=attention_pool_head_params,
    ),
)


@hookimpl
def visionatlas_api_version() -> int:
    return 1


@hookimpl
def visionatlas_register_heads(registrar: Registrar) -> None:
    for spec in HEADS:
        registrar.add_head(spec)
