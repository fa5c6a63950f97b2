"""The formulation study's scripts on tiny inputs: compare.py's sampler[:steps][,key=value]
entries and combine.py's side-by-side table and figure."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from diffusion_lit.utils.errors import UserError

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _load(path: Path):
    # With the script's folder on sys.path, as `python <script>` has it (scripts import their siblings).
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
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
    assert combine.load_studies([f"vp={tmp_path / 'vp' / 'results.json'}"])["vp"] == rows["vp"]  # or the file
    with pytest.raises(UserError, match="name=<folder"):
        combine.load_studies([f"vp={tmp_path / 'missing'}"])


def test_best_per_budget_takes_the_best_row_within_each_budget(tmp_path, monkeypatch):
    best = _load(EXPERIMENTS / "formulations" / "best_per_budget.py")
    rows = [
        {"sampler": "flow_euler", "label": "flow_euler 1", "network_calls": 1, "triangle_validity": 0.1},
        {"sampler": "flow_euler", "label": "flow_euler 4", "network_calls": 4, "triangle_validity": 0.7},
        {"sampler": "flow_midpoint", "label": "flow_midpoint 2", "network_calls": 4, "triangle_validity": 0.8},
        {"sampler": "ddpm", "label": "ddpm 100", "network_calls": 100, "triangle_validity": 0.6},
    ]
    assert best.best_within(rows, 4, "triangle_validity")["label"] == "flow_midpoint 2"
    assert best.best_within(rows, 100, "triangle_validity")["label"] == "flow_midpoint 2"  # at most 100 calls
    assert best.best_within(rows, 0, "triangle_validity") is None
    distances = [{"label": "a", "network_calls": 4, "fid": 40.0}, {"label": "b", "network_calls": 4, "fid": 60.0}]
    assert best.best_within(distances, 4, "fid")["label"] == "a"  # a distance: the lowest is best
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.json").write_text(json.dumps(rows[:2]))
    (tmp_path / "more.json").write_text(json.dumps(rows[2:]))
    name, merged = best.load(f"flow=tmp/a+{tmp_path / 'more.json'}".replace("tmp/a", str(tmp_path / "a")))
    assert name == "flow" and len(merged) == 4
    monkeypatch.setattr("sys.argv", ["x", "--studies", f"flow={tmp_path / 'a'}", "--budgets", "1", "4",
                                     "--out", str(tmp_path / "out")])  # fmt: skip
    best.main()
    table = (tmp_path / "out" / "best_per_budget.md").read_text()
    assert "0.700" in table and (tmp_path / "out" / "best_per_budget.png").is_file()
    with pytest.raises(UserError, match="name=<folder or .json>"):
        best.load("flow=nowhere")


def test_formulation_tables_refuse_fids_of_two_feature_networks():
    combine = _load(EXPERIMENTS / "formulations" / "combine.py")

    def row(sha, fid):
        return {"sampler": "ddim", "steps": 20, "label": "ddim 20", "network_calls": 20, "fid": fid,
                "triangle_validity": 0.9, "protocol": {"extractor_sha256": sha}}  # fmt: skip

    mixed = {"vp": [row("a" * 64, 42.9)], "flow": [row("b" * 64, 67.4)]}
    with pytest.raises(UserError, match="2 different feature networks"):
        combine.check_one_feature_network(mixed, "fid")
    combine.check_one_feature_network(mixed, "triangle_validity")  # not a feature metric: no network to agree on
    combine.check_one_feature_network({"vp": [row("a" * 64, 66.0)], "flow": [row("a" * 64, 67.4)]}, "fid")
