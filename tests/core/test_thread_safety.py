"""Many threads at once: building, first-use discovery, registry reads, eval forwards."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
import torch
import torchvision

import visionatlas as va
from visionatlas.models.deferred_init import placeholders

T = TypeVar("T")


def _all_at_once(count: int, work: Callable[[int], T]) -> list[T]:
    """``work(i)`` for ``i < count`` in ``count`` threads released together."""
    barrier = threading.Barrier(count)

    def run(index: int) -> T:
        barrier.wait(timeout=60)
        return work(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def _equal_states(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_first_use_discovery_from_eight_threads() -> None:
    def look(_: int) -> tuple[Any, ...]:
        tasks = tuple(va.list_tasks())
        archs = tuple(tuple(va.list_architectures(t)) for t in tasks)
        return (
            tasks,
            archs,
            tuple(va.list_backbones()),
            va.get_architecture("classification", "resnet18").num_params,
        )

    results = _all_at_once(8, look)  # the catalog is undiscovered when the test starts
    assert all(result == results[0] for result in results)
    assert "classification" in results[0][0]
    assert results[0] == look(0)


def test_create_model_from_eight_threads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    config = {"pretrained": True, "weights_path": str(path)}
    models = _all_at_once(
        8,
        lambda i: va.create_model(
            "classification" if i % 2 else "regression", "resnet18", config, 1000 if i % 2 else 1
        ),
    )
    serial = va.create_model("classification", "resnet18", config)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = serial.eval()(x)
        for index, model in enumerate(models):
            assert placeholders(model) == []
            if index % 2:
                assert _equal_states(model, serial)
                assert torch.equal(model.eval()(x), expected)
            else:  # regression: the same trunk, a fresh head
                trunk = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
                assert all(torch.equal(v, serial.state_dict()[k]) for k, v in trunk.items())


def test_registry_reads_from_eight_threads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    store = va.ModelRegistry(tmp_path / "registry")
    model = va.create_model("classification", "resnet18", num_classes=3).eval()
    store.register("r18", "1.0.0", model)
    store.register("r18", "1.1.0", model, tags=["candidate"])

    def read(index: int) -> tuple[Any, ...]:
        entries = [(e.name, e.version) for e in store.list()]
        latest = store.get("r18").version
        loaded = store.load("r18", "1.0.0" if index % 2 else "latest")
        return entries, latest, loaded

    results = _all_at_once(8, read)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        for entries, latest, loaded in results:
            assert entries == [("r18", "1.0.0"), ("r18", "1.1.0")]
            assert latest == "1.1.0"
            assert torch.equal(loaded(x), expected)


@pytest.mark.parametrize(
    ("task", "name", "example"),
    [
        ("classification", "resnet18", lambda i: torch.rand(2, 3, 64, 64, generator=_gen(i))),
        ("object_detection", "ssdlite_mobilenet_v3",
         lambda i: [torch.rand(3, 96, 96, generator=_gen(i))]),
    ],
)  # fmt: skip
def test_eval_forward_from_four_threads_matches_serial(
    task: str, name: str, example: Callable[[int], Any]
) -> None:
    torch.manual_seed(0)
    model = va.create_model(task, name).eval()
    inputs = [example(i) for i in range(4)]
    with torch.no_grad():
        serial = [model(x) for x in inputs]

    def forward(index: int) -> Any:
        with torch.no_grad():
            return [model(inputs[index]) for _ in range(3)]

    for index, outputs in enumerate(_all_at_once(4, forward)):
        for output in outputs:
            assert _same(output, serial[index])


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
