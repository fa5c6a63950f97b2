"""Class conditioning and classifier-free guidance: the UNet's null label, the guidance formula,
and the LightningModule's conversions from x0/v outputs to the eps that samplers receive."""

import pytest
import torch
from hydra import compose, initialize_config_dir

from diffusion_lit.diffusion.guidance import guided_eps
from diffusion_lit.diffusion.process import x0_and_eps
from diffusion_lit.lit.build import build_module
from diffusion_lit.models.unet import UNet
from diffusion_lit.utils.errors import UserError
from diffusion_lit.utils.paths import CONFIG_DIR


def toy_eps(x, t, labels):
    """A conditional 'network' whose output reveals the label it was given."""
    return x * 0.5 + labels.to(x.dtype).reshape(-1, 1, 1, 1) + 0.001 * t.to(x.dtype).reshape(-1, 1, 1, 1)


def _randomise_zero_initialised(net: torch.nn.Module) -> None:
    """The U-Net zero-initialises its output and residual convs (and the class embedding), so an
    untrained net outputs zeros; give those weights random values so outputs reveal the inputs."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in net.parameters():
            if not parameter.any():
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))


def test_guidance_scales_one_and_zero_are_the_conditional_and_unconditional_predictions():
    x = torch.randn(4, 1, 2, 2)
    t = torch.tensor([5, 5, 9, 9])
    labels = torch.tensor([0, 1, 2, 1])
    null = torch.full_like(labels, 3)
    torch.testing.assert_close(guided_eps(toy_eps, labels, 1.0, 3)(x, t), toy_eps(x, t, labels), rtol=0, atol=0)
    torch.testing.assert_close(guided_eps(toy_eps, labels, 0.0, 3)(x, t), toy_eps(x, t, null), rtol=0, atol=0)
    guided = guided_eps(toy_eps, labels, 2.5, 3)(x, t)
    expected = toy_eps(x, t, null) + 2.5 * (toy_eps(x, t, labels) - toy_eps(x, t, null))
    torch.testing.assert_close(guided, expected)
    with pytest.raises(UserError, match="guidance_scale must be a number >= 0"):
        guided_eps(toy_eps, labels, -1.0, 3)


def test_unet_class_embedding_starts_neutral_and_then_conditions():
    net = UNet(in_channels=1, image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
               attention_resolutions=(), num_heads=2, norm_groups=4, num_classes=3)  # fmt: skip
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 7])
    # Zero-initialised: every label (and the null label, 3) gives the unconditional output.
    with torch.no_grad():
        net.conv_out.weight.normal_()
    torch.testing.assert_close(net(x, t, torch.tensor([0, 2])), net(x, t))
    _randomise_zero_initialised(net)
    assert not torch.allclose(net(x, t, torch.tensor([0, 0])), net(x, t, torch.tensor([2, 2])))
    torch.testing.assert_close(net(x, t, torch.tensor([3, 3])), net(x, t))  # None = null label
    unconditional = UNet(in_channels=1, image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                         attention_resolutions=(), num_heads=2, norm_groups=4)  # fmt: skip
    with pytest.raises(UserError, match="labels were given to an unconditional net"):
        unconditional(x, t, torch.tensor([0, 1]))


def test_unet_class_embedding_normal_init_tells_classes_apart_from_the_first_steps():
    # The output conv and the residual branches' last convs start at zero, so no untrained net
    # reads its labels. Step 1 moves only the output conv, step 2 the residual convs too; a
    # zero-initialised class embedding gets no gradient until both are non-zero, so after two
    # steps every label still gives the same output, while from N(0, 1) they already differ.
    options = dict(in_channels=1, image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                   attention_resolutions=(), num_heads=2, norm_groups=4, num_classes=3)  # fmt: skip
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([3, 7, 3, 7])
    labels, target = torch.tensor([0, 1, 2, 0]), torch.randn(4, 1, 8, 8)
    differs = {}
    for init in ("zeros", "normal"):
        torch.manual_seed(0)
        net = UNet(**options, class_embed_init=init)
        if init == "normal":
            weight = net.class_embed.weight.detach()
            assert 0.7 < weight.std().item() < 1.3  # N(0, 1), like nn.Embedding's own init
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(2):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(net(x, t, labels), target).backward()
            optimizer.step()
        with torch.no_grad():
            differs[init] = not torch.allclose(net(x[:2], t[:2], torch.tensor([0, 0])),
                                               net(x[:2], t[:2], torch.tensor([2, 2])))  # fmt: skip
    assert differs == {"zeros": False, "normal": True}
    with pytest.raises(UserError, match="class_embed_init must be 'zeros' or 'normal'"):
        UNet(**options, class_embed_init="uniform")


def _module(prediction: str, num_classes: int = 3):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["model=tiny", "formulation=vp", "data.image_size=8", f"model.num_classes={num_classes}",
                       f"model.prediction={prediction}", "schedule.num_timesteps=50"],
        )  # fmt: skip
    module = build_module(cfg, (1, 8, 8))
    _randomise_zero_initialised(module.net)
    return module.eval()


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_module_gives_samplers_eps_whatever_the_net_predicts(prediction):
    module = _module(prediction)
    x, t, labels = torch.randn(3, 1, 8, 8), torch.tensor([2, 25, 48]), torch.tensor([0, 1, 2])
    with torch.no_grad():
        expected = x0_and_eps(prediction, module.schedule, module.net(x, t, labels), x, t)[1]
        torch.testing.assert_close(module.eps_fn(labels, guidance_scale=1.0)(x, t), expected)
        unconditional = x0_and_eps(prediction, module.schedule, module.net(x, t), x, t)[1]
        torch.testing.assert_close(module.eps_fn(labels, guidance_scale=0.0)(x, t), unconditional)


def test_module_samples_classes_in_turn_and_checks_labels():
    module = _module("eps")
    generator = torch.Generator().manual_seed(0)
    samples = module.sample(4, generator=generator)
    assert samples.shape == (4, 1, 8, 8) and samples.abs().max() <= 1
    with pytest.raises(UserError, match=r"labels must lie in \[0, 2\]"):
        module.sample(2, labels=torch.tensor([0, 3]))
    images = torch.rand(4, 1, 8, 8) * 2 - 1
    with pytest.raises(UserError, match="class-conditional .* but the data has no labels"):
        module.diffusion_loss(images)
    assert torch.isfinite(module.diffusion_loss(images, torch.tensor([0, 1, 2, 0])))
    with pytest.raises(UserError, match="model is unconditional"):
        _module("eps", num_classes=0).eps_fn(torch.tensor([0]))


def test_label_dropout_uses_the_null_label_while_training():
    module = _module("eps").train()
    module.cond_drop_prob = 0.5
    seen = []
    forward = module.net.forward
    module.net.forward = lambda x, t, labels=None: (seen.append(labels.clone()), forward(x, t, labels))[1]
    torch.manual_seed(0)
    module.diffusion_loss(torch.zeros(1000, 1, 8, 8), torch.zeros(1000, dtype=torch.long))
    dropped = (seen[0] == module.net.null_label).float().mean().item()
    assert 0.45 < dropped < 0.55 and set(seen[0].tolist()) == {0, module.net.null_label}
    module.eval()
    seen.clear()
    module.diffusion_loss(torch.zeros(8, 1, 8, 8), torch.zeros(8, dtype=torch.long), generator=torch.Generator())
    assert set(seen[0].tolist()) == {0}  # never dropped for validation
