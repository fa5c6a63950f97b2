"""precision=auto: bf16 autocast only where the device has native bf16 (emulated bf16 on an AVX2
CPU was 11-17x slower than fp32) and, for a training run, where its own step measures faster
(native bf16 ran at 0.61x of fp32 on a Xeon without AMX), fp16 on GPUs without bf16, fp32
otherwise; an explicit bf16 request on a device without it is kept but warned about."""

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from diffusion_lit.lit import precision
from diffusion_lit.lit.build import build_module
from diffusion_lit.runs.training import measured_bf16_speedup, precision_of_resumed_run
from diffusion_lit.utils.paths import CONFIG_DIR


@pytest.fixture
def native(monkeypatch):
    """Pretend the devices do (or do not) have native bf16: ``native(cpu=..., cuda=...)``."""

    def pretend(cpu: bool, cuda: bool | None = None) -> None:
        answers = {"cpu": cpu, "cuda": cuda}
        monkeypatch.setattr(precision, "native_bf16", lambda device_type: bool(answers.get(device_type)))
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda is not None)
        precision.warn_slow_bf16.cache_clear()

    yield pretend
    precision.warn_slow_bf16.cache_clear()


@pytest.mark.parametrize(
    ("cpu", "cuda", "accelerator", "expected"),
    [
        (True, None, "auto", "bf16-mixed"),  # AVX-512 BF16 / AMX CPU
        (False, None, "auto", "32-true"),  # AVX2 CPU: emulated bf16 is far slower than fp32
        (False, None, "cpu", "32-true"),
        (False, True, "auto", "bf16-mixed"),  # Ampere+ GPU
        (True, False, "gpu", "16-mixed"),  # V100 / T4: fp16 with loss scaling
        (True, True, "cpu", "bf16-mixed"),  # accelerator=cpu on a GPU machine: the CPU decides
        (True, None, "mps", "32-true"),
    ],
)
def test_auto_precision_follows_the_device(native, cpu, cuda, accelerator, expected):
    native(cpu=cpu, cuda=cuda)
    assert precision.resolve_trainer_precision("auto", accelerator) == expected


def test_an_explicit_precision_is_kept_and_emulated_bf16_is_warned_about(native, capsys):
    native(cpu=False)
    assert precision.resolve_trainer_precision("32-true", "auto") == "32-true"
    assert capsys.readouterr().out == ""
    assert precision.resolve_trainer_precision("bf16-mixed", "auto") == "bf16-mixed"
    warning = capsys.readouterr().out
    assert "without native bf16" in warning and "trainer.precision=auto" in warning
    precision.resolve_trainer_precision("bf16-mixed", "auto")
    assert capsys.readouterr().out == ""  # once per setting, not per call
    native(cpu=True)
    precision.resolve_trainer_precision("bf16-mixed", "auto")
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("has_bf16", [True, False])
def test_auto_sample_precision_runs_the_net_in_bf16_only_where_native(native, has_bf16):
    native(cpu=has_bf16)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["model=tiny", "data.image_size=16", "schedule.num_timesteps=50", "model.sample_precision=auto"],
        )
    module = build_module(cfg, (1, 16, 16))
    seen = []
    module.net.register_forward_hook(lambda net, args, output: seen.append(output.dtype))
    with torch.inference_mode():
        eps = module.conditional_eps(torch.randn(2, 1, 16, 16), torch.tensor([3, 40]), None)
    assert seen == [torch.bfloat16 if has_bf16 else torch.float32]
    assert eps.dtype == torch.float32


def test_native_bf16_answers_for_this_machine():
    # Whatever the CPU, the check runs and gives a bool; no GPU here means no CUDA bf16.
    assert isinstance(precision.native_bf16("cpu"), bool)
    assert precision.native_bf16("mps") is False
    if not torch.cuda.is_available():
        assert precision.native_bf16("cuda") is False


@pytest.mark.parametrize(
    ("speedup", "expected"), [(0.61, "32-true"), (1.05, "32-true"), (1.45, "bf16-mixed"), (None, "bf16-mixed")]
)
def test_auto_keeps_native_bf16_only_where_the_runs_own_step_measures_faster(native, speedup, expected, capsys):
    native(cpu=True)
    asked = []

    def measure(device_type: str) -> float | None:
        asked.append(device_type)
        return speedup

    assert precision.resolve_trainer_precision("auto", "cpu", measure) == expected
    assert asked == ["cpu"]
    if speedup is not None:
        assert f"{speedup:.2f}x" in capsys.readouterr().out


def test_auto_never_times_emulated_bf16_nor_an_explicit_choice(native):
    native(cpu=False)

    def measure(device_type: str) -> float:
        pytest.fail("bf16 timed where it is emulated or not asked for")

    assert precision.resolve_trainer_precision("auto", "cpu", measure) == "32-true"
    native(cpu=True)
    assert precision.resolve_trainer_precision("32-true", "cpu", measure) == "32-true"
    assert precision.resolve_trainer_precision("bf16-mixed", "cpu", measure) == "bf16-mixed"


def test_bf16_speedup_is_fp32_time_over_bf16_time_and_leaves_the_random_state_alone():
    import time

    def step(bf16: bool) -> None:
        torch.rand(3)  # a step draws noise and timesteps
        time.sleep(0.04 if bf16 else 0.01)

    torch.manual_seed(0)
    expected_next = torch.rand(4)
    torch.manual_seed(0)
    speedup = precision.bf16_speedup(step, "cpu", repeats=2)
    assert 0.1 < speedup < 0.5  # 0.25 if the sleeps were exact
    assert torch.equal(torch.rand(4), expected_next)


def test_a_runs_measurement_uses_a_copy_of_its_module_and_leaves_training_as_it_was():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["model=tiny", "data.image_size=16", "data.batch_size=4"])
    torch.manual_seed(0)
    expected_next = torch.rand(4)
    torch.manual_seed(0)
    speedup = measured_bf16_speedup(cfg, (1, 16, 16), "cpu")
    assert speedup is not None and speedup > 0
    assert torch.equal(torch.rand(4), expected_next)
    cfg.trainer.devices = 2  # DDP: each process would measure on its own and might choose differently
    assert measured_bf16_speedup(cfg, (1, 16, 16), "cpu") is None


def test_a_resumed_run_goes_on_in_the_precision_its_checkpoint_recorded(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    checkpoint = {"state_dict": {}, "diffusion_lit": {"config": {"trainer": {"precision": "32-true"}}}}
    torch.save(checkpoint, run / "checkpoints" / "last.ckpt")
    cfg = OmegaConf.create({"ckpt_path": "last", "paths": {"output_dir": str(run)}})
    assert precision_of_resumed_run(cfg) == "32-true"
    cfg.ckpt_path = str(run / "checkpoints" / "last.ckpt")
    assert precision_of_resumed_run(cfg) == "32-true"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run / "checkpoints" / "last.ckpt").rename(elsewhere / "last.ckpt")
    cfg.ckpt_path = "last"
    cfg.callbacks = {"checkpoint": {"dirpath": str(elsewhere)}}  # "last" is where the checkpoint callback writes
    assert precision_of_resumed_run(cfg) == "32-true"
    cfg.ckpt_path = None  # a new run measures
    assert precision_of_resumed_run(cfg) is None
    cfg.ckpt_path, cfg.callbacks = "last", None
    cfg.paths.output_dir = str(tmp_path / "new")  # nothing to resume here yet
    assert precision_of_resumed_run(cfg) is None
