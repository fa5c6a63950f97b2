"""precision=auto: bf16 autocast only where the device has native bf16 (emulated bf16 on an AVX2
CPU was 11-17x slower than fp32), fp16 on GPUs without bf16, fp32 otherwise; an explicit bf16
request on such a device is kept but warned about."""

import pytest
import torch
from hydra import compose, initialize_config_dir

from diffusion_lit.lit import precision
from diffusion_lit.lit.build import build_module
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
