"""The speed options of the training module change how the net runs, not what it computes:
channels_last and torch.compile give the same loss and gradients and the same checkpoint keys;
the non-finite-loss check still stops a diverged run."""

import pytest
import torch
from hydra import compose, initialize_config_dir

from diffusion_lit.lit.build import build_module
from diffusion_lit.utils.paths import CONFIG_DIR


def _module(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["model=tiny", "data.image_size=16", "schedule.num_timesteps=50", *overrides],
        )
    torch.manual_seed(0)
    module = build_module(cfg, (1, 16, 16))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # the U-Net zero-initialises some convs: make every weight matter
        for parameter in module.net.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return module


def _loss_and_grads(module, images):
    module.zero_grad()
    loss = module.diffusion_loss(images, None, generator=torch.Generator().manual_seed(2))
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in module.net.named_parameters()}


def _assert_same_computation(reference, other):
    images = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    loss, grads = _loss_and_grads(reference, images)
    other_loss, other_grads = _loss_and_grads(other, images)
    torch.testing.assert_close(other_loss, loss, rtol=1e-5, atol=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(other_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert list(other.state_dict()) == list(reference.state_dict())


def test_channels_last_computes_the_same_loss_and_gradients():
    reference, other = _module(), _module("model.channels_last=true")
    assert other.net.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    _assert_same_computation(reference, other)
    # Its checkpoints load into a plain (NCHW) net and the reverse.
    _module().load_state_dict(other.state_dict())
    other.load_state_dict(reference.state_dict())


def test_bf16_sampling_runs_the_net_in_bf16_and_stays_close_to_fp32():
    full, half = _module(), _module("model.sample_precision=bf16-mixed")
    half.load_state_dict(full.state_dict())
    seen = []
    half.net.register_forward_hook(lambda net, args, output: seen.append(output.dtype))
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([1, 10, 25, 49])
    with torch.inference_mode():
        eps_full, eps_half = full.conditional_eps(x, t, None), half.conditional_eps(x, t, None)
        samples = [m.sample(4, generator=torch.Generator().manual_seed(5)) for m in (full, half)]
    assert len(seen) > 1 and set(seen) == {torch.bfloat16}  # every call of the bf16 module's net
    assert eps_half.dtype == torch.float32  # the sampler's maths stays float32
    assert (eps_half - eps_full).abs().max() < 0.05 * eps_full.abs().max()  # bf16 keeps ~3 significant digits
    assert not torch.equal(eps_half, eps_full)
    assert (samples[1] - samples[0]).abs().mean() < 0.05


def test_unknown_sample_precision_is_a_clear_error():
    with pytest.raises(Exception, match="sample_precision must be one of"):
        _module("model.sample_precision=fp8")


def test_a_non_finite_loss_stops_training_with_advice():
    module = _module()
    with torch.no_grad():
        module.net.conv_in.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="lower optimizer.lr"):
        module.training_step(torch.zeros(2, 1, 16, 16), 0)


@pytest.mark.slow
def test_compiled_training_forward_computes_the_same_loss_and_gradients():
    # torch.compile needs a C compiler and takes tens of seconds on a CPU: a slow test.
    reference, other = _module(), _module("model.compile=true")
    _assert_same_computation(reference, other)
    with torch.no_grad():  # sampling and validation use the plain net
        torch.testing.assert_close(other.sample(2, torch.Generator().manual_seed(0)),
                                   reference.sample(2, torch.Generator().manual_seed(0)))  # fmt: skip
