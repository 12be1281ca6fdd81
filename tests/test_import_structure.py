"""Import structure of ``sslight``: no cycles, stage names as data, a config resolves light.

Cycles count every import, those inside functions too (grimp), except ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from sslight.stages.names import STAGE_NAMES, stage_names
from sslight.stages.registry import STAGES

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """Module → the ``sslight`` modules it imports directly."""
    built = grimp.build_graph("sslight", exclude_type_checking_imports=True)
    return {
        module: {m for m in built.find_modules_directly_imported_by(module) if m in built.modules}
        for module in built.modules
    }


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """A path ``start → ... → start`` if one exists (depth-first)."""
    stack, seen = [(start, [start])], set()
    while stack:
        module, path = stack.pop()
        for imported in sorted(graph[module]):
            if imported == start:
                return [*path, start]
            if imported not in seen:
                seen.add(imported)
                stack.append((imported, [*path, imported]))
    return None


def test_sslight_has_no_import_cycle(graph) -> None:
    cycles = [cycle for module in sorted(graph) if (cycle := _cycle_from(module, graph))]
    assert not cycles, "import cycle: " + " -> ".join(cycles[0])


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The cycle test can fail: a two-module loop is found, a chain is not."""
    assert _cycle_from("a", {"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert _cycle_from("a", {"a": {"b"}, "b": set()}) is None


def test_no_module_imports_its_own_package(graph) -> None:
    """Within a package, sibling modules are imported directly: the package's ``__init__``
    imports them, so importing it back is a cycle at run time."""
    offending = [
        f"{module} -> {imported}"
        for module, imports in graph.items()
        for imported in imports
        if module.startswith(f"{imported}.")
    ]
    assert not offending


def test_registered_stages_are_the_named_ones() -> None:
    assert set(STAGES.names()) == set(STAGE_NAMES)
    assert stage_names([0.01, 0.1])[-2:] == ["semi_1", "semi_10"]


def test_resolving_a_config_imports_no_trainer_no_detection_no_pycocotools() -> None:
    code = (
        "import json, sys, sslight\n"
        "sslight.load_config('experiments/smoke/pipeline.yaml', ['output_dir=/tmp/x'])\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    loaded = json.loads(run.stdout.splitlines()[-1])
    heavy = ("sslight.engine.trainer", "sslight.evaluation.detection", "pycocotools")
    heavy += ("torchvision.models.detection",)
    assert [m for m in loaded if m.startswith(heavy)] == []
