"""The run config: presets, crop scaling, overrides, located errors, the CLI surface, stable keys.

Config only: nothing here builds a network or touches data. Expected numbers are the seed repo's
configs as recorded in docs/architecture.md ("What the seed repo does").
"""

from __future__ import annotations

import copy
import json
import math
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from seed_table import SEED_COMMON, SEED_RECIPES, SEED_VIEWS, views_of

from sslight import cli
from sslight.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    config_key,
    config_to_dict,
    load_config,
    load_yaml,
    resolve,
)
from sslight.data.sources import SOURCES
from sslight.methods import METHODS
from sslight.models.backbones import BACKBONES, backbone_spec

REPO = Path(__file__).resolve().parents[1]

VIEW_FIELDS_CHANGED_BY_SSLIGHT = {
    "views.policy",
    "views.global_crops.scale",
    "views.local_crops.size",
    "views.local_crops.scale",
    "views.loss_weights.global_global",
    "views.loss_weights.global_local",
}


def _preset_cases() -> list[Any]:
    """Every registered method × every backbone whose family the method has a preset for."""
    cases = []
    for method in METHODS.names():
        families = METHODS.get(method).baseline_views
        for backbone in BACKBONES.names():
            family = backbone_spec(backbone).family
            if family in families:
                cases.append(pytest.param(method, backbone, family, id=f"{method}-{backbone}"))
    return cases


PRESET_CASES = _preset_cases()


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key → leaf value (lists are leaves)."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def get(cfg: BaseModel, dotted: str) -> Any:
    return flatten(config_to_dict(cfg))[dotted]


def assert_views(got: tuple[Any, ...], expected: tuple[Any, ...]) -> None:
    """Views tuples equal, floats to 1e-12 relative (2/14 and friends)."""
    g_scale, l_number, l_size, l_scale, weights = expected
    assert got[0] == pytest.approx(g_scale, rel=1e-12), "global scale"
    assert (got[1], got[2]) == (l_number, l_size), "local number, size"
    assert got[3] == pytest.approx(l_scale, rel=1e-12), "local scale"
    assert got[4] == pytest.approx(weights, rel=1e-12), "loss weights"


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# 1. Presets reproduce the seed repo at 224 px
# ---------------------------------------------------------------------------------------------


def test_every_method_has_seed_numbers_for_every_preset() -> None:
    """A new method (or a new family preset) must state the seed repo's numbers in this file."""
    assert PRESET_CASES, "no method declares a view preset"
    for method in METHODS.names():
        for family in METHODS.get(method).baseline_views:
            for policy in ("baseline", "sslight"):
                assert (method, family, policy) in SEED_VIEWS, (method, family, policy)
            assert (method, family) in SEED_RECIPES, (method, family)


@pytest.mark.parametrize("policy", ["baseline", "sslight"])
@pytest.mark.parametrize(("method", "backbone", "family"), PRESET_CASES)
def test_preset_views_match_seed_at_224(
    method: str, backbone: str, family: str, policy: str
) -> None:
    cfg = resolve({"method": method, "backbone": backbone, "views": {"policy": policy}})
    expected = SEED_VIEWS[(method, family, policy)]
    assert_views(views_of(cfg), expected)
    v = cfg.views
    assert v.policy == policy
    assert (v.global_crops.number, v.global_crops.size) == (2, 224)
    assert math.isclose(v.loss_weights.global_global + v.loss_weights.global_local, 1.0)


@pytest.mark.parametrize(("method", "backbone", "family"), PRESET_CASES)
def test_sslight_changes_only_the_four_view_fields(method: str, backbone: str, family: str) -> None:
    dicts = {
        policy: flatten(
            config_to_dict(
                resolve(
                    {
                        "method": method,
                        "backbone": backbone,
                        "views": {"policy": policy},
                        "output_dir": "runs/same",
                    }
                )
            )
        )
        for policy in ("baseline", "sslight")
    }
    assert dicts["baseline"].keys() == dicts["sslight"].keys()
    changed = {k for k in dicts["baseline"] if dicts["baseline"][k] != dicts["sslight"][k]}
    assert "views.policy" in changed
    assert changed <= VIEW_FIELDS_CHANGED_BY_SSLIGHT, changed - VIEW_FIELDS_CHANGED_BY_SSLIGHT
    assert (
        dicts["baseline"]["views.local_crops.number"]
        == dicts["sslight"]["views.local_crops.number"]
    )


@pytest.mark.parametrize("policy", ["baseline", "sslight"])
@pytest.mark.parametrize(("method", "backbone", "family"), PRESET_CASES)
def test_recipe_defaults_match_seed(method: str, backbone: str, family: str, policy: str) -> None:
    cfg = resolve({"method": method, "backbone": backbone, "views": {"policy": policy}})
    flat = flatten(config_to_dict(cfg))
    expected = {**SEED_COMMON, **SEED_RECIPES[(method, family)]}
    for key, value in expected.items():
        assert key in flat, key
        if isinstance(value, float):
            assert flat[key] == pytest.approx(value, rel=1e-12), key
        elif isinstance(value, bool):
            assert flat[key] is value, key
        else:
            assert flat[key] == value, key


def test_default_config_is_dino_mobilenet_sslight() -> None:
    cfg = resolve({})
    assert (cfg.method, cfg.backbone, cfg.views.policy) == ("dino", "mobilenet_v2", "sslight")
    assert_views(views_of(cfg), SEED_VIEWS[("dino", "cnn", "sslight")])
    assert cfg.output_dir == "runs/dino_mobilenet_v2_sslight"


def test_family_without_preset_asks_for_custom_views(monkeypatch: pytest.MonkeyPatch) -> None:
    from sslight.methods import dino

    monkeypatch.delitem(dino.BASELINE_VIEWS, "vit")
    with pytest.raises(ConfigError) as err:
        resolve({"backbone": "vit_tiny", "views": {"policy": "baseline"}}, source="x.yaml")
    message = str(err.value)
    assert message.startswith("x.yaml: views.policy: ")
    assert "custom" in message


def test_custom_policy_takes_views_verbatim_and_requires_them() -> None:
    views = {
        "policy": "custom",
        "global_crops": {"number": 2, "size": 64, "scale": [0.5, 1.0]},
        "local_crops": {"number": 0, "size": 32, "scale": [0.1, 0.5]},
        "loss_weights": {"global_global": 1.0, "global_local": 0.0},
    }
    cfg = resolve({"views": views})
    assert config_to_dict(cfg)["views"] == views
    with pytest.raises(ConfigError) as err:
        resolve({"views": {"policy": "custom"}}, source="c.yaml")
    assert str(err.value).startswith("c.yaml: views.")
    assert "missing" in str(err.value)


# ---------------------------------------------------------------------------------------------
# 2. Crop sizes follow data.image_size; user fields win over the preset
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backbone", "policy", "sizes"),
    [
        ("mobilenet_v2", "baseline", (32, 14)),
        ("mobilenet_v2", "sslight", (32, 18)),
        ("resnet18", "baseline", (32, 14)),
        ("resnet34", "sslight", (32, 18)),
        ("vit_tiny", "baseline", (32, 16)),
        ("vit_tiny", "sslight", (32, 16)),
    ],
)
def test_crop_sizes_at_32px(backbone: str, policy: str, sizes: tuple[int, int]) -> None:
    cfg = resolve({"backbone": backbone, "views": {"policy": policy}, "data": {"image_size": 32}})
    assert (cfg.views.global_crops.size, cfg.views.local_crops.size) == sizes
    assert cfg.data.image_size == 32


@pytest.mark.parametrize("image_size", [8, 16, 24, 32, 40, 48, 64, 96, 100, 128, 160, 224, 512])
@pytest.mark.parametrize("policy", ["baseline", "sslight"])
@pytest.mark.parametrize(("method", "backbone", "family"), PRESET_CASES)
def test_crop_sizes_scale_with_image_size(
    method: str, backbone: str, family: str, policy: str, image_size: int
) -> None:
    raw = {"method": method, "backbone": backbone, "views": {"policy": policy}}
    at_224 = resolve(raw).views
    cfg = resolve({**raw, "data": {"image_size": image_size}})
    v = cfg.views
    factor = image_size / 224
    patch = backbone_spec(backbone).patch_size
    for crops, ref in ((v.global_crops, at_224.global_crops), (v.local_crops, at_224.local_crops)):
        exact = ref.size * factor
        if patch:
            assert crops.size % patch == 0 and crops.size >= patch, crops.size
            assert abs(crops.size - exact) <= patch / 2 or crops.size == patch
        else:
            assert crops.size == max(1, round(exact))
        # Scaling never touches anything but the sizes.
        assert (crops.number, crops.scale) == (ref.number, ref.scale)
    if not patch:
        assert v.global_crops.size == image_size
    assert v.local_crops.size <= v.global_crops.size
    assert v.loss_weights == at_224.loss_weights


def test_image_size_override_scales_the_preset(tmp_path: Path) -> None:
    path = write(tmp_path, "backbone: resnet18\nviews: {policy: baseline}\n")
    cfg = load_config(path, ["data.image_size=32"])
    assert (cfg.views.global_crops.size, cfg.views.local_crops.size) == (32, 14)


@pytest.mark.parametrize(("method", "backbone", "family"), PRESET_CASES)
def test_user_fields_override_the_preset(method: str, backbone: str, family: str) -> None:
    base = {"method": method, "backbone": backbone, "views": {"policy": "baseline"}}
    preset = resolve(base).views
    cfg = resolve(apply_overrides(base, ["views.local_crops.number=2"]))
    assert cfg.views.local_crops.number == 2
    assert cfg.views.local_crops.size == preset.local_crops.size
    assert cfg.views.local_crops.scale == preset.local_crops.scale
    assert cfg.views.global_crops == preset.global_crops
    assert cfg.views.loss_weights == preset.loss_weights

    cfg = resolve(
        apply_overrides(
            base,
            [
                "views.global_crops.scale=[0.5, 1.0]",
                "views.loss_weights={global_global: 0.5, global_local: 0.5}",
                "data.image_size=32",
                "views.local_crops.size=16",
            ],
        )
    )
    assert cfg.views.global_crops.scale == (0.5, 1.0)
    assert (cfg.views.loss_weights.global_global, cfg.views.loss_weights.global_local) == (0.5, 0.5)
    assert cfg.views.local_crops.size == 16  # user value, not the 32 px preset
    assert cfg.views.local_crops.scale == preset.local_crops.scale


def test_user_recipe_values_override_method_defaults() -> None:
    cfg = resolve(
        {
            "backbone": "vit_tiny",
            "train": {"base_lr": 1e-3, "optimizer": "sgd"},
            "dino": {"out_dim": 1024},
        }
    )
    assert (cfg.train.base_lr, cfg.train.optimizer) == (1e-3, "sgd")
    assert cfg.dino.out_dim == 1024
    # Untouched recipe defaults stay.
    assert (cfg.train.min_lr, cfg.dino.use_bn_in_head, cfg.dino.drop_path_rate) == (
        1e-5,
        False,
        0.1,
    )


def test_shipped_smoke_configs_resolve() -> None:
    paths = sorted((REPO / "experiments" / "smoke").glob("*.yaml"))
    assert paths
    for path in paths:
        cfg = load_config(path)
        assert cfg.views.local_crops.size <= cfg.views.global_crops.size


# ---------------------------------------------------------------------------------------------
# 3. Dotted overrides
# ---------------------------------------------------------------------------------------------


def test_overrides_set_nested_keys_with_yaml_values() -> None:
    raw = {"train": {"epochs": 5}, "data": None}
    before = copy.deepcopy(raw)
    out = apply_overrides(
        raw,
        [
            "train.epochs=10",
            "train.base_lr=0.1",
            "train.min_lr=1.0e-6",
            "train.progress=false",
            "eval.knn.k=[1, 5]",
            "data.root=/data/a=b",
            "data.train_subset=null",
            "output_dir=runs/x",
            "a.b.c=text with spaces",
            "views.policy=baseline",
            "data.image_size=32",
        ],
    )
    assert raw == before  # the input is not modified
    assert out["train"] == {"epochs": 10, "base_lr": 0.1, "min_lr": 1e-6, "progress": False}
    assert out["eval"] == {"knn": {"k": [1, 5]}}
    assert out["data"] == {"root": "/data/a=b", "train_subset": None, "image_size": 32}
    assert out["output_dir"] == "runs/x"
    assert out["a"] == {"b": {"c": "text with spaces"}}
    assert out["views"] == {"policy": "baseline"}
    assert type(out["train"]["epochs"]) is int
    assert type(out["train"]["base_lr"]) is float


def test_override_order_last_wins_and_unparsable_yaml_stays_text() -> None:
    out = apply_overrides({}, ["seed=1", "seed=2", "output_dir=[unclosed"])
    assert out == {"seed": 2, "output_dir": "[unclosed"}


def test_overrides_apply_through_load_config(tmp_path: Path) -> None:
    path = write(tmp_path, "train: {epochs: 3, warmup_epochs: 0}\n")
    cfg = load_config(path, ["train.epochs=7", "eval.knn.k=[5]", "data.train_subset=0.5"])
    assert (cfg.train.epochs, cfg.eval.knn.k, cfg.data.train_subset) == (7, [5], 0.5)


@pytest.mark.parametrize("item", ["foo", "=1", "a..b=1", ".a=1", "a.=1", "", "."])
def test_malformed_override_is_config_error(item: str) -> None:
    with pytest.raises(ConfigError) as err:
        apply_overrides({}, [item])
    assert str(err.value).startswith("command line: ")
    assert "key=value" in str(err.value) or "override like" in str(err.value)


@pytest.mark.parametrize(
    ("raw", "item", "section"),
    [
        ({"output_dir": "runs/x"}, "output_dir.name=1", "output_dir"),
        ({"train": {"epochs": 3}}, "train.epochs.value=1", "train.epochs"),
        ({"eval": {"knn": {"k": [20]}}}, "eval.knn.k.0=5", "eval.knn.k"),
    ],
)
def test_override_under_a_non_section_is_config_error(
    raw: dict[str, Any], item: str, section: str
) -> None:
    with pytest.raises(ConfigError) as err:
        apply_overrides(raw, [item])
    message = str(err.value)
    assert message.startswith("command line: ")
    assert item.partition("=")[0] in message
    assert f"{section} is not a section" in message


def test_override_under_a_default_scalar_is_rejected_by_validation(tmp_path: Path) -> None:
    path = write(tmp_path, "method: dino\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, ["seed.value=1"])
    assert str(err.value).startswith(f"{path}: seed")


# ---------------------------------------------------------------------------------------------
# 4. Rejections: one ConfigError naming the file, the dotted key and what is allowed
# ---------------------------------------------------------------------------------------------

TOP_KEYS = sorted(RunConfig.model_fields)
TRAIN_KEYS = sorted(RunConfig.model_fields["train"].annotation.model_fields)

REJECTIONS = [
    pytest.param("epochs: 10\n", "epochs", ["unknown key", *TOP_KEYS], id="unknown-top-key"),
    pytest.param("train:\n  epoch: 10\n", "train.epoch", ["unknown key", *TRAIN_KEYS], id="typo"),
    pytest.param("dino: {out_dims: 8}\n", "dino.out_dims", ["out_dim"], id="unknown-dino-key"),
    pytest.param("train:\n  epochs: ten\n", "train.epochs", ["integer", "'ten'"], id="type"),
    pytest.param(
        "views: {local_crops: {number: many}}\n", "views.local_crops.number", ["many"], id="type2"
    ),
    pytest.param(
        "views: {global_crops: {scale: [0.9, 0.5]}}\n",
        "views.global_crops.scale",
        ["min <= max", "0.9", "0.5"],
        id="scale-min-gt-max",
    ),
    pytest.param(
        "views: {local_crops: {scale: [0.0, 0.3]}}\n",
        "views.local_crops.scale",
        ["0 < min"],
        id="scale-zero",
    ),
    pytest.param(
        "views: {global_crops: {scale: [0.5, 1.5]}}\n",
        "views.global_crops.scale",
        ["<= 1", "1.5"],
        id="scale-above-one",
    ),
    pytest.param(
        "views: {local_crops: {size: 256}}\n",
        "views",
        ["local_crops.size 256", "global_crops.size 224"],
        id="local-larger-than-global",
    ),
    pytest.param(
        "views: {loss_weights: {global_global: 0.5, global_local: 0.6}}\n",
        "views.loss_weights",
        ["sum to 1", "1.1"],
        id="weights-sum",
    ),
    pytest.param(
        "views: {global_crops: {number: 3}}\n",
        "views.global_crops",
        ["number must be 2", "3"],
        id="three-globals",
    ),
    pytest.param(
        "views: {local_crops: {number: 0}}\n",
        "views",
        ["global_local must be 0", "local_crops.number is 0"],
        id="no-locals-with-local-weight",
    ),
    pytest.param(
        "views: {policy: fancy}\n",
        "views.policy",
        ["fancy", "baseline", "sslight", "custom"],
        id="unknown-policy",
    ),
    pytest.param("views: [1, 2]\n", "views", ["mapping"], id="views-not-mapping"),
    pytest.param("method: byol\n", "method", ["byol", *METHODS.names()], id="unknown-method"),
    pytest.param(
        "backbone: resnet50\n", "backbone", ["resnet50", *BACKBONES.names()], id="unknown-backbone"
    ),
    pytest.param(
        "data: {dataset: imagenet21k}\n",
        "data.dataset",
        ["imagenet21k", *SOURCES.names()],
        id="unknown-dataset",
    ),
    pytest.param(
        "train: {optimizer: adam}\n", "train.optimizer", ["adam", "lars", "adamw", "sgd"], id="opt"
    ),
    pytest.param(
        "train: {epochs: 5, warmup_epochs: 10}\n",
        "train",
        ["warmup_epochs 10", "epochs 5"],
        id="warmup-longer-than-training",
    ),
    pytest.param("data: {train_subset: 0}\n", "data.train_subset", [">= 1"], id="subset-zero"),
    pytest.param(
        "data: {train_subset: 1.5}\n", "data.train_subset", ["(0, 1]", "1.5"], id="fraction>1"
    ),
    pytest.param("data: {image_size: 4}\n", "data.image_size", ["8", "4"], id="image-too-small"),
    pytest.param(
        "data: {views_device: tpu}\n",
        "data.views_device",
        ["tpu", "auto", "cpu", "cuda"],
        id="unknown-views-device",
    ),
    pytest.param(
        "data: {views_device: cuda}\ntrain: {device: cpu}\n",
        "train",
        ["data.views_device cuda", "train.device cpu"],
        id="views-on-cuda-training-on-cpu",
    ),
    pytest.param("seed: -1\n", "seed", ["-1"], id="negative-seed"),
    pytest.param("output_dir: null\n", "output_dir", ["string"], id="output-dir-null"),
]


@pytest.mark.parametrize(("text", "key", "fragments"), REJECTIONS)
def test_rejection_names_file_key_and_allowed_values(
    tmp_path: Path, text: str, key: str, fragments: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    error = err.value
    message = str(error)
    assert error.source == str(path)
    assert error.key == key
    assert message.startswith(f"{path}: {key}: "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "\n" not in message


def test_unknown_key_lists_allowed_keys_in_order(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  epoch: 10\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).endswith("unknown key; allowed keys: " + ", ".join(TRAIN_KEYS))


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "method: dino\nbackbone: resnet18\ntrain:\n  epochs: 1\n   batch: 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: malformed YAML: line 5")
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: cannot read file")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_yaml(tmp_path)
    assert str(err.value).startswith(f"{tmp_path}: cannot read file")


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just text\n", "str")])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: expected a mapping of keys, got {kind}"


def test_empty_file_is_the_default_config(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")) == resolve({})


def test_config_error_is_a_value_error() -> None:
    err = ConfigError("f.yaml", "train.epochs", "bad")
    assert isinstance(err, ValueError)
    assert str(err) == "f.yaml: train.epochs: bad"
    assert (err.source, err.key, err.problem) == ("f.yaml", "train.epochs", "bad")


# Regressions: each of these once failed.


@pytest.mark.parametrize("image_size", [32.0, "32"])
def test_image_size_written_as_float_or_string_still_scales(image_size: Any) -> None:
    cfg = resolve({"data": {"image_size": image_size}})
    assert cfg.data.image_size == 32
    assert cfg.views.global_crops.size == 32


def test_too_large_image_size_names_data_image_size() -> None:
    with pytest.raises(ConfigError) as err:
        resolve({"data": {"image_size": 2000}}, source="f.yaml")
    assert err.value.key == "data.image_size"


def test_huge_image_size_is_config_error() -> None:
    with pytest.raises(ConfigError):
        resolve({"data": {"image_size": 10**400}})


def test_wrong_type_in_union_field_names_the_plain_key() -> None:
    with pytest.raises(ConfigError) as err:
        resolve({"data": {"train_subset": "half"}}, source="f.yaml")
    assert err.value.key == "data.train_subset"


@pytest.mark.parametrize("views", [[], False, 0, ""])
def test_falsy_non_mapping_views_is_rejected(views: Any) -> None:
    with pytest.raises(ConfigError) as err:
        resolve({"views": views})
    assert err.value.key == "views"


def test_methods_import_first_in_a_fresh_interpreter() -> None:
    code = "import sslight.methods, sslight.config; sslight.config.resolve({})"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]


# ---------------------------------------------------------------------------------------------
# 5. The CLI surface
# ---------------------------------------------------------------------------------------------


def test_cli_bad_config_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "train:\n  epoch: 10\n")
    assert cli.main(["pretrain", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("sslight: error: ")
    assert str(path) in lines[0]
    assert "train.epoch" in lines[0]
    assert "unknown key" in lines[0]
    assert captured.out == ""


@pytest.mark.parametrize(
    ("argv_tail", "fragments"),
    [
        (["foo"], ["command line", "foo"]),
        (["train.epochs=ten"], ["train.epochs", "ten"]),
        (["backbone=resnet50", "--print-config"], ["backbone", "resnet50"]),
    ],
)
def test_cli_bad_overrides_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv_tail: list[str],
    fragments: list[str],
) -> None:
    path = write(tmp_path, "method: dino\n")
    assert cli.main(["pretrain", str(path), *argv_tail]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sslight: error: ")
    for fragment in fragments:
        assert fragment in err[0]


def test_cli_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "missing.yaml"
    assert cli.main(["pretrain", str(path), "--print-config"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"sslight: error: {path}: cannot read file")


def test_cli_print_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "backbone: vit_tiny\nviews: {policy: baseline}\noutput_dir: runs/t\n")
    assert cli.main(["pretrain", str(path), "data.image_size=32", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["views"] == {
        "policy": "baseline",
        "global_crops": {"number": 2, "size": 32, "scale": [0.25, 1.0]},
        "local_crops": {"number": 10, "size": 16, "scale": [0.05, 0.25]},
        "loss_weights": {"global_global": 2 / 22, "global_local": 20 / 22},
    }
    assert printed["output_dir"] == "runs/t"
    assert printed["train"]["optimizer"] == "adamw"
    # What is printed is the resolved config: feeding it back gives the same config.
    assert resolve(printed) == load_config(path, ["data.image_size=32"])


def test_cli_print_config_flag_before_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "method: dino\n")
    assert cli.main(["pretrain", str(path), "--print-config", "data.image_size=32"]) == 0
    assert json.loads(capsys.readouterr().out)["views"]["global_crops"]["size"] == 32


# ---------------------------------------------------------------------------------------------
# 6. config_key and config_to_dict
# ---------------------------------------------------------------------------------------------


def test_config_key_is_stable_across_loads_and_key_order(tmp_path: Path) -> None:
    a = write(tmp_path, "backbone: resnet18\ntrain: {epochs: 3, warmup_epochs: 1}\nseed: 4\n", "a")
    b = write(tmp_path, "seed: 4\ntrain: {warmup_epochs: 1, epochs: 3}\nbackbone: resnet18\n", "b")
    key = config_key(load_config(a))
    assert re.fullmatch(r"[0-9a-f]{16}", key)
    assert config_key(load_config(a)) == key
    assert config_key(load_config(b)) == key
    # Writing the preset out explicitly is the same run.
    explicit = config_to_dict(load_config(a))
    assert config_key(resolve(explicit)) == key
    assert config_key(resolve(yaml.safe_load(yaml.safe_dump(explicit)))) == key


def _mutations(value: Any, strings: list[str]) -> Iterator[Any]:
    """Candidate replacements for a leaf, different from it."""
    if isinstance(value, bool):
        yield not value
    elif isinstance(value, int):
        yield from (value + 1, value - 1, value * 2)
    elif isinstance(value, float):
        yield from (value / 2, value * 0.9, value + 0.5, 0.5)
    elif isinstance(value, str):
        yield value + "_x"
        yield from (s for s in strings if s != value)
    elif value is None:
        yield from (1, 0.5, "x")
    elif isinstance(value, list) and value:
        for new in _mutations(value[0], strings):
            yield [new, *value[1:]]
        yield [*value, value[-1]]
        yield value[:-1]


def _set(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    *parents, last = dotted.split(".")
    node = out
    for part in parents:
        node = node[part]
    node[last] = value
    return out


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "vit_tiny"])
def test_config_key_changes_with_every_value(backbone: str) -> None:
    cfg = resolve({"backbone": backbone})
    data = config_to_dict(cfg)
    key = config_key(cfg)
    strings = sorted(
        {*METHODS.names(), *BACKBONES.names(), *SOURCES.names()}
        | {"baseline", "sslight", "custom", "lars", "adamw", "sgd"}
        | {"cpu", "cuda", "fp32", "bf16", "on", "off"}
        | {"student", "teacher", "mlp", "linear", "epoch", "step"}
    )
    unchangeable = set()
    for dotted, value in flatten(data).items():
        for new in _mutations(value, strings):
            if new == value:
                continue
            try:
                changed = resolve(_set(data, dotted, new))
            except ConfigError:
                continue
            assert config_key(changed) != key, (dotted, value, new)
            break
        else:
            unchangeable.add(dotted)
    # Only values pinned by validation alone (2 globals; weights that must sum to 1; a single
    # registered method; init.weights, which needs stages without pretrain) have no valid
    # single-value change.
    allowed = {
        "views.global_crops.number",
        "views.loss_weights.global_global",
        "views.loss_weights.global_local",
        "init.weights",
    }
    family = backbone_spec(backbone).family
    if sum(family in METHODS.get(m).baseline_views for m in METHODS.names()) == 1:
        allowed.add("method")  # no other method has a preset for this family
    assert unchangeable <= allowed, unchangeable - allowed
    swapped = _set(data, "views.loss_weights", {"global_global": 0.5, "global_local": 0.5})
    assert config_key(resolve(swapped)) != key


@pytest.mark.parametrize("image_size", [224, 32])
@pytest.mark.parametrize("policy", ["baseline", "sslight"])
@pytest.mark.parametrize(("method", "backbone", "family"), PRESET_CASES)
def test_config_to_dict_round_trips(
    method: str, backbone: str, family: str, policy: str, image_size: int
) -> None:
    cfg = resolve(
        {
            "method": method,
            "backbone": backbone,
            "views": {"policy": policy},
            "data": {"image_size": image_size},
        }
    )
    data = config_to_dict(cfg)
    json.dumps(data)  # plain JSON-able data, as checkpoints and config.yaml need
    again = resolve(data)
    assert again == cfg
    assert config_to_dict(again) == data
    assert config_key(again) == config_key(cfg)
    from_yaml = resolve(yaml.safe_load(yaml.safe_dump(data)))
    assert from_yaml == cfg


def test_resolved_config_is_frozen() -> None:
    cfg = resolve({})
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError
        cfg.train.epochs = 1  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# 7. Arbitrary input: a config or a ConfigError, never anything else
# ---------------------------------------------------------------------------------------------


def _all_field_names(model: Any, seen: set[str] | None = None) -> set[str]:
    names = seen if seen is not None else set()
    for name, field in getattr(model, "model_fields", {}).items():
        names.add(name)
        _all_field_names(field.annotation, names)
    return names


KNOWN_KEYS = sorted(_all_field_names(RunConfig))
KNOWN_VALUES = sorted(
    {*METHODS.names(), *BACKBONES.names(), *SOURCES.names(), "baseline", "sslight", "custom"}
)

keys = st.sampled_from(KNOWN_KEYS) | st.text(max_size=8)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(KNOWN_VALUES)
    | st.sampled_from([0, 1, 2, 8, 16, 32, 224, 0.05, 0.3, 0.5, 1.0, 1.5])
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, values, max_size=6))
def test_resolve_returns_a_config_or_raises_config_error(raw: dict[str, Any]) -> None:
    before = copy.deepcopy(raw)
    try:
        cfg = resolve(raw, source="fuzz.yaml")
    except ConfigError as err:
        event("ConfigError")
        assert str(err).startswith("fuzz.yaml: ")
    else:
        event("config")
        assert isinstance(cfg, RunConfig)
        assert resolve(config_to_dict(cfg)) == cfg
    assert raw == before  # resolve never modifies its input


BASE = config_to_dict(resolve({}))
plausible = (
    st.booleans()
    | st.integers(-1, 300)
    | st.floats(-0.5, 1.5)
    | st.sampled_from(KNOWN_VALUES)
    | st.lists(st.floats(0, 1.2), min_size=2, max_size=2)
)
LEAVES = sorted(flatten(BASE))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["mobilenet_v2", "vit_tiny"]),
    st.sampled_from(["baseline", "sslight", "custom"]),
    st.dictionaries(st.sampled_from(LEAVES), st.one_of(plausible, plausible, values), max_size=3),
)
def test_resolve_of_an_edited_valid_config_never_crashes(
    backbone: str, policy: str, edits: dict[str, Any]
) -> None:
    """Random values at real keys reach the deep validators; both outcomes must be clean."""
    raw = _set(_set(BASE, "backbone", backbone), "views.policy", policy)
    for dotted, value in edits.items():
        raw = _set(raw, dotted, value)
    try:
        cfg = resolve(raw, source="edit.yaml")
    except ConfigError as err:
        event("ConfigError")
        assert str(err).startswith("edit.yaml: ")
        assert err.key.split(".")[0] in RunConfig.model_fields
    else:
        event("config")
        assert resolve(config_to_dict(cfg)) == cfg
