"""The formulation study's scripts on tiny inputs: compare.py's sampler[:steps][,key=value]
entries and combine.py's side-by-side table and figure."""

import importlib.util
import json
from pathlib import Path

import pytest

from diffusion_lit.utils.errors import UserError

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_entries_take_sampler_options():
    compare = _load(EXPERIMENTS / "samplers" / "compare.py")
    assert compare.parse_config("heun:18,spacing=karras,s_churn=40") == ("heun", 18, ["spacing=karras", "s_churn=40"])
    assert compare.parse_config("ddpm") == ("ddpm", None, [])
    cfg = compare.sampler_config("heun", 10, ["spacing=karras"])
    assert cfg.steps == 10 and cfg.spacing == "karras" and cfg._target_.endswith("heun_sample")
    with pytest.raises(UserError, match="sampler\\[:steps\\]"):
        compare.parse_config("ddim:fifty")


def test_combine_puts_the_studies_side_by_side(tmp_path):
    combine = _load(EXPERIMENTS / "formulations" / "combine.py")
    rows = {
        "vp": [{"sampler": "ddpm", "label": "ddpm 100", "network_calls": 100, "triangle_validity": 0.9,
                "triangle_validity_se": 0.02}],
        "edm": [{"sampler": "ddpm", "label": "ddpm 100", "network_calls": 100, "triangle_validity": 0.8,
                 "triangle_validity_se": 0.025},
                {"sampler": "heun", "label": "heun 18", "network_calls": 35, "triangle_validity": 0.6}],
    }  # fmt: skip
    specs = []
    for name, study in rows.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(study))
        specs.append(f"{name}={tmp_path / name}")
    studies = combine.load_studies(specs)
    table = combine.write_table(studies, "triangle_validity", tmp_path)
    assert "| ddpm 100 | 100 | 0.900 ± 0.020 | 0.800 ± 0.025 |" in table
    assert "| heun 18 | 35 |  | 0.600 |" in table
    combine.plot(studies, "triangle_validity", tmp_path / "figure.png")
    assert (tmp_path / "figure.png").stat().st_size > 0
    with pytest.raises(UserError, match="name=<folder"):
        combine.load_studies([f"vp={tmp_path / 'missing'}"])
