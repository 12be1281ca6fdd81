"""Grid files: expansion, names, keys, environment variables, errors, and ``orchestrate grid``.

Config only: nothing here trains. Expected numbers are the seed repo's view settings and recipes
at 224 px (tests/seed_table.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from seed_table import SEED_COMMON, SEED_RECIPES, SEED_VIEWS, views_of

from orchestrator import cli
from orchestrator.grid.spec import MAX_CELLS, Grid, Resources, expand_env, load_grid
from sslight.config import ConfigError, config_key, config_to_dict, load_config, resolve
from sslight.models.backbones import backbone_spec

REPO = Path(__file__).resolve().parents[1]
TABLE1 = REPO / "experiments" / "table1.yaml"
TABLE2 = REPO / "experiments" / "table2.yaml"
DEMO = REPO / "experiments" / "demo.yaml"
IMAGENET = "/data/imagenet"

TABLE1_CELLS = [
    *(
        ("dino", backbone, policy)
        for backbone in ("vit_tiny", "resnet18", "resnet34", "mobilenet_v2")
        for policy in ("baseline", "sslight")
    ),
    *(
        (method, "mobilenet_v2", policy)
        for method in ("swav", "moco")
        for policy in ("baseline", "sslight")
    ),
]


@pytest.fixture
def imagenet(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("IMAGENET_ROOT", IMAGENET)
    monkeypatch.setenv("COCO_ROOT", "/data/coco")
    monkeypatch.delenv("IMAGENET_SEMI_SPLITS", raising=False)
    monkeypatch.delenv("SLURM_PARTITION", raising=False)
    return IMAGENET


def write(tmp_path: Path, text: str, name: str = "grid.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# A small grid on the synthetic source: 2 backbones × 2 policies.
SMALL = """\
base:
  data: {dataset: synthetic, image_size: 32}
  train: {epochs: 1, warmup_epochs: 0}
axes:
  backbone: [resnet18, mobilenet_v2]
  views.policy: [baseline, sslight]
"""


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key → leaf value, the form of ``SEED_RECIPES``."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


# ---------------------------------------------------------------------------------------------
# 1. The shipped grids
# ---------------------------------------------------------------------------------------------


def test_table1_has_the_papers_twelve_cells(imagenet: str) -> None:
    grid = load_grid(TABLE1)
    assert grid.name == "table1"
    assert grid.workdir == "runs/table1"
    got = [(c.config.method, c.config.backbone, c.config.views.policy) for c in grid.cells]
    assert got == TABLE1_CELLS
    assert [c.name for c in grid.cells] == ["-".join(cell) for cell in TABLE1_CELLS]
    assert grid.duplicates == ()
    for cell in grid.cells:
        assert cell.output_dir == f"runs/table1/cells/{cell.name}"
        assert cell.config.output_dir == cell.output_dir


@pytest.mark.parametrize("path", [TABLE1, TABLE2])
def test_imagenet_grids_use_the_seed_views_at_224(imagenet: str, path: Path) -> None:
    for cell in load_grid(path).cells:
        cfg = cell.config
        expected = SEED_VIEWS[(cfg.method, backbone_spec(cfg.backbone).family, cfg.views.policy)]
        g_scale, l_number, l_size, l_scale, weights = expected
        got = views_of(cfg)
        assert got[0] == pytest.approx(g_scale, rel=1e-12), cell.name
        assert (got[1], got[2]) == (l_number, l_size), cell.name
        assert got[3] == pytest.approx(l_scale, rel=1e-12), cell.name
        assert got[4] == pytest.approx(weights, rel=1e-12), cell.name
        assert (cfg.views.global_crops.number, cfg.views.global_crops.size) == (2, 224)


@pytest.mark.parametrize("path", [TABLE1, TABLE2])
def test_imagenet_grids_use_the_seed_recipes_and_paper_settings(imagenet: str, path: Path) -> None:
    for cell in load_grid(path).cells:
        cfg = cell.config
        flat = _flatten(config_to_dict(cfg))
        recipe = SEED_RECIPES[(cfg.method, backbone_spec(cfg.backbone).family)]
        for key, value in {**SEED_COMMON, **recipe}.items():
            assert flat[key] == (
                pytest.approx(value, rel=1e-12) if isinstance(value, float) else value
            ), (cell.name, key)
        assert (cfg.data.dataset, cfg.data.root) == ("image_folder", IMAGENET)
        assert (cfg.data.image_size, cfg.data.num_workers) == (224, 8)
        assert cfg.data.train_subset is None
        assert cfg.seed == 0


def test_table1_stages_and_resources(imagenet: str) -> None:
    grid = load_grid(TABLE1)
    assert {tuple(c.config.stages) for c in grid.cells} == {("pretrain", "knn", "linear")}
    r = grid.resources.for_stages(["pretrain"])
    assert (r.nodes, r.tasks_per_node, r.gpus_per_node, r.time_min) == (1, 8, 8, 1440)
    assert r.partition is None  # ${SLURM_PARTITION:-} unset: the cluster's default


def test_table2_is_dino_cnns_with_semi_supervised_stages(imagenet: str) -> None:
    grid = load_grid(TABLE2)
    got = [(c.config.method, c.config.backbone, c.config.views.policy) for c in grid.cells]
    assert got == [
        ("dino", backbone, policy)
        for backbone in ("resnet18", "resnet34", "mobilenet_v2")
        for policy in ("baseline", "sslight")
    ]
    for cell in grid.cells:
        cfg = cell.config
        assert cfg.stages[:5] == ["pretrain", "knn", "linear", "semi_1", "semi_10"]
        assert cfg.stages[5:] == ["detection", "segmentation"]
        assert cfg.eval.detection.data_root == "/data/coco"
        assert (cfg.eval.detection.max_iters, cfg.eval.detection.steps) == (90000, [60000, 80000])
        assert (cfg.eval.semi.fractions, cfg.eval.semi.epochs) == ([0.01, 0.1], [60, 30])
        assert not cfg.eval.semi.split_dir  # stratified subsets unless IMAGENET_SEMI_SPLITS
    assert grid.resources.for_stages(["detection"]).gpus_per_node == 8


def test_table2_semi_splits_from_the_environment(
    imagenet: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGENET_SEMI_SPLITS", "/data/splits")
    assert {c.config.eval.semi.split_dir for c in load_grid(TABLE2).cells} == {"/data/splits"}


def test_demo_is_small_real_data_with_the_smoke_pipeline_settings() -> None:
    grid = load_grid(DEMO)
    assert (grid.name, grid.workdir) == ("demo", "runs/demo")
    assert [c.name for c in grid.cells] == [
        "mobilenet_v2-baseline",
        "mobilenet_v2-sslight",
        "resnet18-baseline",
        "resnet18-sslight",
    ]
    smoke = config_to_dict(load_config(REPO / "experiments" / "smoke" / "pipeline.yaml"))
    for cell in grid.cells:
        cfg = config_to_dict(cell.config)
        assert cfg["method"] == "dino"
        assert cfg["data"]["dataset"] == "fashion_mnist"
        assert cfg["data"]["image_size"] == 32
        assert cfg["data"] == smoke["data"]
        assert cfg["dino"] == smoke["dino"]
        assert {k: v for k, v in cfg["train"].items() if k != "log_every_steps"} == {
            k: v for k, v in smoke["train"].items() if k != "log_every_steps"
        }
        assert cfg["eval"]["knn"] == smoke["eval"]["knn"]
        assert cfg["eval"]["linear"] == smoke["eval"]["linear"]
        assert cfg["stages"] == ["pretrain", "knn", "linear"]
        # Crop sizes scale to 32 px: 14 px locals for the baseline, 18 px for SSLight.
        local = 14 if cell.config.views.policy == "baseline" else 18
        assert (cfg["views"]["global_crops"]["size"], cfg["views"]["local_crops"]["size"]) == (
            32,
            local,
        )


# ---------------------------------------------------------------------------------------------
# 2. Keys
# ---------------------------------------------------------------------------------------------


def test_keys_are_unique_hex_and_stable_across_loads(imagenet: str) -> None:
    first = load_grid(TABLE1)
    keys = [c.key for c in first.cells]
    assert all(re.fullmatch(r"[0-9a-f]{16}", key) for key in keys)
    assert len(set(keys)) == len(keys)
    assert [c.key for c in load_grid(TABLE1).cells] == keys


def test_key_is_the_config_key_with_output_dir_blanked(imagenet: str) -> None:
    for cell in load_grid(TABLE1).cells:
        blank = resolve({**config_to_dict(cell.config), "output_dir": ""})
        assert cell.key == config_key(blank)
        assert cell.key != config_key(cell.config)


def test_workdir_moves_cells_but_keeps_keys(imagenet: str, tmp_path: Path) -> None:
    default = load_grid(TABLE1)
    moved = load_grid(TABLE1, workdir=tmp_path / "elsewhere")
    assert moved.workdir == str(tmp_path / "elsewhere")
    assert [c.key for c in moved.cells] == [c.key for c in default.cells]
    assert [c.name for c in moved.cells] == [c.name for c in default.cells]
    for cell in moved.cells:
        assert cell.output_dir == str(tmp_path / "elsewhere" / "cells" / cell.name)
    # The grid file's own workdir: key is unchanged too.
    text = TABLE1.read_text().replace("workdir: runs/table1", "workdir: /scratch/t1")
    copied = load_grid(write(tmp_path, text, "table1.yaml"))
    assert [c.key for c in copied.cells] == [c.key for c in default.cells]
    assert copied.cells[0].output_dir.startswith("/scratch/t1/cells/")


def test_keys_follow_the_config_not_the_grid_spelling(tmp_path: Path) -> None:
    """The same runs written as a product or as include cells have the same keys."""
    product = load_grid(write(tmp_path, SMALL, "a.yaml"))
    spelled = (
        SMALL.split("axes:")[0]
        + "include:\n"
        + "".join(
            f"  - {{backbone: {c.config.backbone}, views.policy: {c.config.views.policy}}}\n"
            for c in product.cells
        )
    )
    included = load_grid(write(tmp_path, spelled, "b.yaml"))
    assert [c.key for c in included.cells] == [c.key for c in product.cells]


def test_overrides_change_keys_of_every_cell(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL)
    plain = load_grid(path)
    longer = load_grid(path, ["train.epochs=2"])
    assert all(c.config.train.epochs == 2 for c in longer.cells)
    assert not {c.key for c in plain.cells} & {c.key for c in longer.cells}
    assert [c.name for c in longer.cells] == [c.name for c in plain.cells]


# ---------------------------------------------------------------------------------------------
# 3. Expansion: exclude, include, duplicates, names
# ---------------------------------------------------------------------------------------------


def test_exclude_drops_product_cells_matching_every_key_of_a_rule(tmp_path: Path) -> None:
    grid = load_grid(
        write(
            tmp_path,
            SMALL
            + "exclude:\n"
            + "  - {backbone: mobilenet_v2, views.policy: baseline}\n"
            + "  - {backbone: resnet18, views.policy: sslight}\n",
        )
    )
    assert [c.name for c in grid.cells] == ["resnet18-baseline", "mobilenet_v2-sslight"]


def test_single_key_exclude_rule_drops_a_whole_slice(tmp_path: Path) -> None:
    grid = load_grid(write(tmp_path, SMALL + "exclude:\n  - {backbone: resnet18}\n"))
    assert [c.name for c in grid.cells] == ["mobilenet_v2-baseline", "mobilenet_v2-sslight"]
    assert [c.values for c in grid.cells] == [
        {"backbone": "mobilenet_v2", "views.policy": "baseline"},
        {"backbone": "mobilenet_v2", "views.policy": "sslight"},
    ]


def test_include_adds_cells_after_the_product_and_is_never_excluded(tmp_path: Path) -> None:
    text = (
        SMALL
        + "exclude:\n  - {backbone: resnet18}\n"
        + "include:\n"
        + "  - {backbone: resnet18, views.policy: baseline, seed: 1}\n"
        + "  - {method: moco, backbone: resnet34}\n"
    )
    grid = load_grid(write(tmp_path, text))
    cells = [
        (c.config.method, c.config.backbone, c.config.views.policy, c.config.seed)
        for c in grid.cells
    ]
    assert cells == [
        ("dino", "mobilenet_v2", "baseline", 0),
        ("dino", "mobilenet_v2", "sslight", 0),
        ("dino", "resnet18", "baseline", 1),
        ("moco", "resnet34", "sslight", 0),  # the preset default policy; base settings apply
    ]
    assert grid.cells[3].config.data.image_size == 32
    assert grid.cells[3].values == {"method": "moco", "backbone": "resnet34"}
    # Names: the axes, then keys only include rules set; values a cell does not set are omitted.
    assert [c.name for c in grid.cells] == [
        "mobilenet_v2-baseline",
        "mobilenet_v2-sslight",
        "resnet18-baseline-s1",
        "resnet34-moco",
    ]


def test_include_only_grid_and_base_only_grid(tmp_path: Path) -> None:
    only = load_grid(
        write(tmp_path, "base: {data: {image_size: 32}}\ninclude:\n  - {seed: 3}\n  - {seed: 4}\n")
    )
    assert [(c.name, c.config.seed) for c in only.cells] == [("s3", 3), ("s4", 4)]
    single = load_grid(write(tmp_path, "base: {seed: 2}\n", "solo.yaml"))
    assert [c.name for c in single.cells] == ["solo"]
    assert single.cells[0].config.seed == 2


def test_duplicate_cells_collapse_to_the_first(tmp_path: Path) -> None:
    text = (
        SMALL
        + "include:\n"
        + "  - {backbone: resnet18, views.policy: sslight}\n"  # same as a product cell
        + "  - {backbone: resnet18, views.policy: sslight, views.local_crops.size: 18}\n"  # preset
        + "  - {backbone: resnet18, views.policy: sslight, views.local_crops.size: 16}\n"  # new
    )
    grid = load_grid(write(tmp_path, text))
    assert len(grid.cells) == 5
    assert [c.name for c in grid.cells][:4] == [
        "resnet18-baseline",
        "resnet18-sslight",
        "mobilenet_v2-baseline",
        "mobilenet_v2-sslight",
    ]
    assert grid.cells[1].values == {"backbone": "resnet18", "views.policy": "sslight"}
    assert grid.cells[4].config.views.local_crops.size == 16
    assert len(grid.duplicates) == 2
    assert len({c.key for c in grid.cells}) == 5


def test_duplicate_cells_collapse_across_axis_values(tmp_path: Path) -> None:
    """``warmup_epochs: 0`` and ``0.0`` are the same run (validation makes both 0.0)."""
    text = "base: {data: {image_size: 32}}\naxes:\n  train.warmup_epochs: [0, 0.0001, '0']\n"
    grid = load_grid(write(tmp_path, text))
    assert [c.name for c in grid.cells] == ["warmup_epochs0", "warmup_epochs0.0001"]
    assert grid.duplicates == ("0",)


def test_names_use_only_the_axes_that_vary(tmp_path: Path) -> None:
    text = """\
base: {data: {image_size: 32}}
axes:
  method: [dino]
  seed: [0, 1]
  train.epochs: [30]
  data.train_subset: [null, 100]
  train.joint_probe: [true, false]
"""
    names = [c.name for c in load_grid(write(tmp_path, text)).cells]
    assert names == [
        "s0-no_train_subset-joint_probe",
        "s0-no_train_subset-no_joint_probe",
        "s0-train_subset100-joint_probe",
        "s0-train_subset100-no_joint_probe",
        "s1-no_train_subset-joint_probe",
        "s1-no_train_subset-no_joint_probe",
        "s1-train_subset100-joint_probe",
        "s1-train_subset100-no_joint_probe",
    ]


def test_colliding_names_get_the_key_prefix(tmp_path: Path) -> None:
    text = "base: {data: {image_size: 32}}\naxes:\n  data.root: [a/b, a_b, c]\n"
    grid = load_grid(write(tmp_path, text))
    names = [c.name for c in grid.cells]
    assert names[2] == "c"
    for cell in grid.cells[:2]:
        assert cell.name == f"a_b-{cell.key[:8]}"
        assert cell.output_dir.endswith(f"/cells/{cell.name}")
    assert len(set(names)) == 3


def test_list_and_mapping_values_are_set_whole(tmp_path: Path) -> None:
    text = """\
base:
  data: {image_size: 32}
  views: {policy: baseline}
axes:
  views.loss_weights:
    - {global_global: 0.5, global_local: 0.5}
    - {global_global: 0.25, global_local: 0.75}
  eval.knn.k: [[20], [20, 200]]
"""
    grid = load_grid(write(tmp_path, text))
    assert len(grid.cells) == 4
    assert grid.cells[1].config.eval.knn.k == [20, 200]
    assert grid.cells[2].config.views.loss_weights.global_global == 0.25
    assert grid.cells[0].config.views.local_crops.size == 14  # the rest of views is the preset
    assert len({c.name for c in grid.cells}) == 4
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", c.name) for c in grid.cells)


def test_base_from_a_file_relative_to_the_grid(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    write(tmp_path / "configs", "data: {image_size: 32}\noutput_dir: runs/ignored\n", "b.yaml")
    path = write(tmp_path, "base: configs/b.yaml\naxes:\n  seed: [0, 1]\n")
    grid = load_grid(path)
    assert [c.config.data.image_size for c in grid.cells] == [32, 32]
    assert grid.cells[0].output_dir == "runs/grid/cells/s0"  # default workdir runs/<name>


# ---------------------------------------------------------------------------------------------
# 4. Environment variables
# ---------------------------------------------------------------------------------------------


def test_env_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SET", "/data")
    monkeypatch.setenv("EMPTY", "")
    monkeypatch.delenv("UNSET", raising=False)
    doc = {
        "a": "${SET}/imagenet",
        "b": ["${UNSET:-fallback}", "${EMPTY:-used}", "x${SET:-no}y"],
        "c": {"d": "cost $$5 and $HOME and ${EMPTY:-}"},
        "n": 3,
    }
    assert expand_env(doc, "g.yaml") == {
        "a": "/data/imagenet",
        "b": ["fallback", "used", "x/datay"],
        "c": {"d": "cost $5 and $HOME and "},
        "n": 3,
    }
    assert expand_env("${EMPTY}", "g.yaml") == ""  # set but empty, no default: empty


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("${UNSET_VAR_X}", "environment variable UNSET_VAR_X is not set"),
        ("a/${UNSET_VAR_X}/b", "UNSET_VAR_X:-default"),
        ("${1BAD}", "malformed"),
        ("${A B}", "malformed"),
        ("${}", "malformed"),
        ("${A:-${B}}", "malformed"),
        ("x${OPEN", "unclosed"),
    ],
)
def test_env_expansion_errors_name_file_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, fragment: str
) -> None:
    monkeypatch.delenv("UNSET_VAR_X", raising=False)
    path = write(tmp_path, f"base:\n  data: {{root: '{text}'}}\n")
    with pytest.raises(ConfigError) as err:
        load_grid(path)
    assert err.value.source == str(path)
    assert err.value.key == "base.data.root"
    assert fragment in str(err.value)


def test_table1_without_imagenet_root_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGENET_ROOT", raising=False)
    with pytest.raises(ConfigError) as err:
        load_grid(TABLE1)
    assert str(err.value).startswith(
        f"{TABLE1}: base.data.root: environment variable IMAGENET_ROOT"
    )


def test_env_expansion_in_axes_include_and_workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WD", str(tmp_path / "w"))
    monkeypatch.setenv("SEEDS_EXTRA", "7")
    monkeypatch.delenv("SIZE", raising=False)
    text = (
        "workdir: ${WD}\n"
        "axes:\n  data.image_size: ['${SIZE:-32}']\n"
        "include:\n  - {seed: '${SEEDS_EXTRA}'}\n"
    )
    grid = load_grid(write(tmp_path, text))
    assert grid.workdir == str(tmp_path / "w")
    assert grid.cells[0].config.data.image_size == 32
    assert grid.cells[1].config.seed == 7


# ---------------------------------------------------------------------------------------------
# 5. Errors: one ConfigError naming the grid file, the key and the problem
# ---------------------------------------------------------------------------------------------

GRID_ERRORS = [
    pytest.param("axes:\n  seed: [0, 1\n", "", ["malformed YAML", "line"], id="malformed-yaml"),
    pytest.param("- a\n- b\n", "", ["expected a mapping"], id="not-a-mapping"),
    pytest.param("axis:\n  seed: [0]\n", "axis", ["unknown key", "axes", "include"], id="unknown"),
    pytest.param("name: 'my grid'\n", "name", ["not a grid name"], id="bad-name"),
    pytest.param("workdir: ''\n", "workdir", ["non-empty string"], id="empty-workdir"),
    pytest.param("base: [1]\n", "base", ["run config mapping"], id="base-type"),
    pytest.param("axes: [seed, method]\n", "axes", ["mapping", "list"], id="axes-not-mapping"),
    pytest.param("axes:\n  seed: 0\n", "axes.seed", ["list of values", "int"], id="axis-scalar"),
    pytest.param("axes:\n  seed: []\n", "axes.seed", ["empty"], id="axis-empty"),
    pytest.param("axes:\n  seed: [0, 1, 0]\n", "axes.seed", ["twice"], id="axis-repeat"),
    pytest.param("axes:\n  train..epochs: [1]\n", "axes.train..epochs", ["dotted"], id="key"),
    pytest.param(
        "axes:\n  output_dir: [a, b]\n", "axes.output_dir", ["workdir"], id="axis-output-dir"
    ),
    pytest.param(
        "axes:\n  views: [{policy: baseline}]\n  views.policy: [sslight]\n",
        "axes.views.policy",
        ["inside views"],
        id="nested-axes",
    ),
    pytest.param(
        "axes:\n  seed: [0, 1]\nexclude:\n  - {method: swav}\n",
        "exclude[0].method",
        ["not an axis", "seed"],
        id="exclude-not-an-axis",
    ),
    pytest.param(
        "axes:\n  seed: [0, 1]\nexclude:\n  - {seed: 0}\n  - {seed: 2}\n",
        "exclude[1].seed",
        ["2 is not a value of the axis", "0, 1"],
        id="exclude-unknown-value",
    ),
    pytest.param(
        "axes:\n  seed: [0, 1]\ninclude:\n  - {method: swav}\nexclude:\n  - {method: swav}\n",
        "exclude[0].method",
        ["not an axis", "include cells are never excluded"],
        id="exclude-include-key",
    ),
    pytest.param(
        "axes:\n  seed: [0]\nexclude:\n  - {seed: 0}\n",
        "exclude",
        ["every cell"],
        id="exclude-everything",
    ),
    pytest.param("exclude: {seed: 0}\n", "exclude", ["list of mappings"], id="exclude-type"),
    pytest.param("include: [seed]\n", "include[0]", ["mapping"], id="include-item"),
    pytest.param("include:\n  - {}\n", "include[0]", ["non-empty"], id="include-empty"),
    pytest.param(
        "include:\n  - {output_dir: x}\n", "include[0].output_dir", ["workdir"], id="include-od"
    ),
    pytest.param(
        "resources: {gpus: 8}\n", "resources.gpus", ["unknown key", "gpus_per_node"], id="res-key"
    ),
    pytest.param("resources: {nodes: 0}\n", "resources.nodes", ["greater than"], id="res-value"),
    pytest.param("resources: 8\n", "resources", ["mapping"], id="res-type"),
    pytest.param(
        "axes:\n  a: [1, 2]\n  b: [1, 2]\n  c: [1, 2]\n  d: " + str(list(range(2000))) + "\n",
        "axes",
        ["16000 cells", str(MAX_CELLS)],
        id="too-many-cells",
    ),
]


@pytest.mark.parametrize(("text", "key", "fragments"), GRID_ERRORS)
def test_grid_errors_name_file_key_and_problem(
    tmp_path: Path, text: str, key: str, fragments: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_grid(path)
    error = err.value
    message = str(error)
    assert error.source == str(path), message
    assert error.key == key, message
    assert message.startswith(f"{path}: {key}: " if key else f"{path}: "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "\n" not in message


def test_failing_cell_names_the_file_the_cell_and_the_config_key(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL.replace("backbone: [", "train.epochs: [1, 0]\n  backbone: ["))
    with pytest.raises(ConfigError) as err:
        load_grid(path)
    message = str(err.value)
    assert err.value.source == f"{path}: cell epochs0-resnet18-baseline"
    assert err.value.key == "train.epochs"
    assert message.startswith(f"{path}: cell epochs0-resnet18-baseline: train.epochs: ")


def test_table1_cell_with_a_bad_override_names_the_cell(imagenet: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_grid(TABLE1, ["views.local_crops.size=300"])
    assert str(err.value).startswith(f"{TABLE1}: cell dino-vit_tiny-baseline: views: ")
    assert "local_crops.size 300" in str(err.value)


def test_unknown_config_key_in_an_axis_is_reported_per_cell(tmp_path: Path) -> None:
    path = write(tmp_path, "axes:\n  train.epoch: [1, 2]\n")
    with pytest.raises(ConfigError) as err:
        load_grid(path)
    assert str(err.value).startswith(f"{path}: cell epoch1: train.epoch: unknown key")


def test_missing_base_file_names_it(tmp_path: Path) -> None:
    path = write(tmp_path, "base: nope.yaml\n")
    with pytest.raises(ConfigError) as err:
        load_grid(path)
    assert err.value.source == str(tmp_path / "nope.yaml")
    assert "cannot read file" in str(err.value)


def test_missing_grid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_grid(tmp_path / "missing.yaml")
    assert str(err.value).startswith(f"{tmp_path / 'missing.yaml'}: cannot read file")


@pytest.mark.parametrize(
    ("override", "key", "fragment"),
    [
        ("backbone=resnet34", "backbone", "set per cell by the grid (backbone)"),
        ("views.policy=custom", "views.policy", "(views.policy)"),
        ("seed=3", "seed", "(seed)"),  # set by an include rule
        ("output_dir=/tmp/x", "output_dir", "--workdir"),
        ("nonsense", "nonsense", "override like"),
    ],
)
def test_command_line_overrides_may_not_set_cell_keys(
    tmp_path: Path, override: str, key: str, fragment: str
) -> None:
    path = write(tmp_path, SMALL + "include:\n  - {seed: 5}\n")
    with pytest.raises(ConfigError) as err:
        load_grid(path, [override])
    assert err.value.source == "command line"
    assert err.value.key == key
    assert fragment in str(err.value)


def test_resources_defaults_and_model() -> None:
    r = Resources()
    assert (r.nodes, r.tasks_per_node, r.gpus_per_node, r.partition) == (1, 1, 0, None)
    assert Resources(partition="").partition is None
    assert Resources(partition="gpu").partition == "gpu"


# ---------------------------------------------------------------------------------------------
# 6. orchestrate grid
# ---------------------------------------------------------------------------------------------


def test_cli_dry_run_json_table1(imagenet: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["grid", str(TABLE1), "--dry-run", "--json"]) == 0
    cells = json.loads(capsys.readouterr().out)
    assert isinstance(cells, list) and len(cells) == 12
    expected = load_grid(TABLE1)
    for obj, cell in zip(cells, expected.cells, strict=True):
        assert {"name", "key", "output_dir", "config"} <= obj.keys()
        assert (obj["name"], obj["key"], obj["output_dir"]) == (
            cell.name,
            cell.key,
            cell.output_dir,
        )
        assert obj["config"] == config_to_dict(cell.config)
        assert obj["config"]["output_dir"] == obj["output_dir"]
        # The printed config is fully resolved: resolving it again changes nothing.
        assert config_to_dict(resolve(obj["config"])) == obj["config"]


@pytest.mark.parametrize("name", ["table1", "table2", "released"])
def test_paper_grids_train_and_evaluate_as_the_seed(
    imagenet: str, name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every cell of the paper grids, from the dry-run: the seed evaluates the student
    (load_pretrained_models.py), fine-tunes with its MLP head at batch 1024 to MIN_LR 1e-6
    (dino_*_semi.yaml), runs linear evaluation at 4096 (CNNs) / 1024 (ViT-T, dino_vit_linear.yaml)
    to 1e-6, sets the lr once per epoch (cls_trainer.py) and never autocasts (USE_FP16 False)."""
    monkeypatch.setenv("SSLIGHT_RELEASED_DIR", "/data/sslight_checkpoints")
    path = REPO / "experiments" / f"{name}.yaml"
    assert cli.main(["grid", str(path), "--dry-run", "--json"]) == 0
    cells = json.loads(capsys.readouterr().out)
    assert cells
    for cell in cells:
        config = cell["config"]
        flat = _flatten(config)
        vit = backbone_spec(config["backbone"]).family == "vit"
        expected = {
            "eval.network": "student",
            "eval.semi.head": "mlp",
            "eval.semi.batch_size": 1024,
            "eval.semi.min_lr": 1e-6,
            "eval.semi.lr_schedule": "epoch",
            "eval.linear.batch_size": 1024 if vit else 4096,
            "eval.linear.min_lr": 1e-6,
            "eval.linear.lr_schedule": "epoch",
            "train.precision": "fp32",
            # Detectron2's ROIAlignV2 and L1 box regression (detection/configs/*.yaml)
            "eval.detection.roi_align_aligned": True,
            "eval.detection.roi_sampling_ratio": 0,
            "eval.detection.box_smooth_l1_beta": 0.0,
        }
        assert {key: flat[key] for key in expected} == expected, cell["name"]


def test_cli_workdir_and_overrides(
    imagenet: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["grid", str(TABLE1), "--dry-run", "--json"]
    assert cli.main(argv) == 0
    default = json.loads(capsys.readouterr().out)
    assert cli.main([*argv, "--workdir", str(tmp_path), "train.epochs=100"]) == 0
    moved = json.loads(capsys.readouterr().out)
    assert all(c["config"]["train"]["epochs"] == 100 for c in moved)
    assert all(c["output_dir"].startswith(f"{tmp_path}/cells/") for c in moved)
    assert cli.main(["grid", str(TABLE1), "--workdir", str(tmp_path), "--dry-run", "--json"]) == 0
    same = json.loads(capsys.readouterr().out)
    assert [c["key"] for c in same] == [c["key"] for c in default]
    assert [c["key"] for c in moved] != [c["key"] for c in default]


def test_cli_dry_run_table(imagenet: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["grid", str(TABLE1), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["cell", "key", "method", "backbone", "policy", "output", "dir"]
    rows = [line.split() for line in lines[2:14]]
    for row, cell in zip(rows, load_grid(TABLE1).cells, strict=True):
        assert row == [
            cell.name,
            cell.key,
            cell.config.method,
            cell.config.backbone,
            cell.config.views.policy,
            cell.output_dir,
        ]
    assert "grid table1: 12 cells in runs/table1" in lines
    assert lines[-1].startswith("stage plan: 24 of 24 jobs to submit (12 pretrainings")


@pytest.mark.parametrize(
    ("text", "argv_tail", "fragments"),
    [
        ("axes:\n  seed: []\n", [], ["axes.seed", "empty"]),
        ("axes: {seed: [0}\n", ["--dry-run"], ["malformed YAML"]),
        (SMALL, ["--dry-run", "--json", "backbone=vit_tiny"], ["command line", "backbone"]),
        (SMALL, ["--dry-run", "train.epochs=0"], ["cell resnet18-baseline", "train.epochs"]),
    ],
)
def test_cli_broken_grid_exits_2_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    argv_tail: list[str],
    fragments: list[str],
) -> None:
    path = write(tmp_path, text)
    assert cli.main(["grid", str(path), *argv_tail]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("orchestrate: error: ")
    for fragment in [*fragments]:
        assert fragment in lines[0]
    assert captured.out == ""


def test_cli_unknown_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["grid", str(DEMO), "--dryrun"])
    assert exit_.value.code == 2
    assert "--dryrun" in capsys.readouterr().err


def test_cli_in_a_fresh_interpreter_gives_the_same_keys(imagenet: str) -> None:
    """Keys are stable across processes (no hash randomisation, no dict-order dependence)."""
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "grid", str(TABLE1), "--dry-run", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "IMAGENET_ROOT": IMAGENET, "PYTHONHASHSEED": "123"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    cells = json.loads(done.stdout)
    assert [c["key"] for c in cells] == [c.key for c in load_grid(TABLE1).cells]


def test_grid_is_plain_data(imagenet: str) -> None:
    grid = load_grid(TABLE1)
    assert isinstance(grid, Grid)
    dumped = [cell.to_dict() for cell in grid.cells]
    assert yaml.safe_load(yaml.safe_dump(dumped)) == dumped
