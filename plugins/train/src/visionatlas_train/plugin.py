"""Hook implementations of visionatlas-train: ``train``, ``evaluate`` and ``predict``.

Nothing heavy is imported here: the commands' parsers and the engine load on first use.
"""

from __future__ import annotations

from visionatlas import hookimpl
from visionatlas.plugins.registrar import Registrar
from visionatlas.specs import CommandSpec


@hookimpl
def visionatlas_api_version() -> int:
    return 1


@hookimpl
def visionatlas_register_commands(registrar: Registrar) -> None:
    registrar.add_command(
        CommandSpec(
            name="train",
            help="train a catalog model on a folder of images (or builtin:digits)",
            configure="visionatlas_train.cli:configure_train",
        )
    )
    registrar.add_command(
        CommandSpec(
            name="evaluate",
            help="a trained model's metrics on held-out data",
            configure="visionatlas_train.cli:configure_evaluate",
        )
    )
    registrar.add_command(
        CommandSpec(
            name="predict",
            help="write a trained model's predictions on images (JSON, masks, overlays)",
            configure="visionatlas_train.cli:configure_predict",
        )
    )
