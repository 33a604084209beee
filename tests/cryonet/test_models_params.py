"""Parameter and FLOP counts against independent references (built on the meta device: fast)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from cryonet.models import PRESETS, create_model, resolve_config
from cryonet.models.resnet import RESNETS, build_resnet


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# torchvision's published totals (ImageNet models, 3 input bands) minus the 1000-way fc layer.
TORCHVISION_RESNET = {
    "resnet18": 11_689_512 - 513_000,
    "resnet34": 21_797_672 - 513_000,
    "resnet50": 25_557_032 - 2_049_000,
    "resnet101": 44_549_160 - 2_049_000,
    "resnet152": 60_192_808 - 2_049_000,
}


@pytest.mark.parametrize("name", sorted(RESNETS))
def test_resnet_encoder_counts_match_torchvision(name: str) -> None:
    with torch.device("meta"):
        enc = build_resnet(name, 3)
    assert n_params(enc) == TORCHVISION_RESNET[name]


def test_resnet_any_in_channels_changes_only_the_stem() -> None:
    with torch.device("meta"):
        enc = build_resnet("resnet101", 30)
    assert n_params(enc) == TORCHVISION_RESNET["resnet101"] + 64 * (30 - 3) * 7 * 7


def test_resnet50_flops_match_published() -> None:
    # torchvision: 4.09 GMAC for ResNet-50 at 224x224 (the fc adds only 2 MMAC).
    with torch.device("meta"):
        enc = build_resnet("resnet50", 3)
        with FlopCounterMode(display=False) as fc:
            enc(torch.empty(1, 3, 224, 224))
    assert fc.get_total_flops() / 2 == pytest.approx(4.09e9, rel=0.01)


def _unetpp_scse_reference(in_channels: int, num_classes: int, attention: bool) -> int:
    """Hand count of UNet++/ResNet-101/scSE from its description (no torch involved)."""

    def conv(cin: int, cout: int, k: int, bias: bool) -> int:
        return cin * cout * k * k + (cout if bias else 0)

    def conv_bn_relu(cin: int, cout: int) -> int:
        return conv(cin, cout, 3, False) + 2 * cout

    def scse(c: int) -> int:
        h = c // 16
        return conv(c, h, 1, True) + conv(h, c, 1, True) + conv(c, 1, 1, True)

    def node(up: int, skip: int, out: int) -> int:
        n = conv_bn_relu(up + skip, out) + conv_bn_relu(out, out)
        if attention:
            n += scse(out) + (scse(up + skip) if skip else 0)
        return n

    encoder = TORCHVISION_RESNET["resnet101"] + 64 * (in_channels - 3) * 49
    enc = [64, 256, 512, 1024, 2048]  # levels 0..4 (strides 2..32)
    # Nested nodes X[i][j] keep width enc[i]; the main diagonal (i + j == 4) has 256..32.
    diag = {3: 256, 2: 128, 1: 64, 0: 32}
    width = {(i, 0): enc[i] for i in range(5)}
    decoder = 0
    for j in range(1, 5):
        for i in range(5 - j):
            width[i, j] = diag[i] if i + j == 4 else enc[i]
            decoder += node(width[i + 1, j - 1], j * enc[i], width[i, j])
    decoder += node(32, 0, 16)  # final node to full resolution
    head = conv(16, num_classes, 3, True)
    return encoder + decoder + head


def test_cryonet_paper_parameter_count() -> None:
    with torch.device("meta"):
        model = create_model("cryonet", 30, 5)  # paper preset: ResNet-101
        plain = create_model("cryonet", 30, 5, attention=False)
    n = n_params(model)
    assert n == _unetpp_scse_reference(30, 5, attention=True)
    assert n_params(plain) == _unetpp_scse_reference(30, 5, attention=False)
    assert abs(n - 70e6) / 70e6 < 0.03  # the paper: "about 70 M trainable parameters"
    # UNet++/ResNet-101 without scSE: about 68.1 M in the reference implementation.
    assert n_params(plain) == pytest.approx(68.06e6, rel=0.001)


def test_cryonet_paper_flops() -> None:
    # The reference UNet++/ResNet-101/scSE: about 127 GFLOP per 256x256 forward pass.
    with torch.device("meta"):
        model = create_model("cryonet-paper", 30, 5).eval()
        with FlopCounterMode(display=False) as fc:
            model(torch.empty(1, 30, 256, 256))
    assert fc.get_total_flops() == pytest.approx(127e9, rel=0.02)


@pytest.mark.parametrize(
    ("encoder", "total_m", "encoder_m"),
    [("mit_b0", 3.8, 3.3), ("mit_b1", 13.7, 13.1), ("mit_b2", 27.5, 24.2)],
)
def test_segformer_counts_match_paper(encoder: str, total_m: float, encoder_m: float) -> None:
    # SegFormer paper / official MiT code, ADE20K setting (3 bands, 150 classes), to 0.1 M.
    with torch.device("meta"):
        model = create_model("segformer", 3, 150, encoder=encoder)
    assert n_params(model) / 1e6 == pytest.approx(total_m, abs=0.051)
    assert n_params(model.encoder) / 1e6 == pytest.approx(encoder_m, abs=0.1)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_builds_and_config_round_trips(preset: str) -> None:
    with torch.device("meta"):
        model = create_model(preset, 30, 5)
        again = create_model(**model.config)
    assert model.config["name"] in ("cryonet", "unet", "deeplabv3plus", "segformer")
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in again.state_dict().items()}
    assert again.config == model.config


def test_registry_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="unknown model 'unet3'.*cryonet"):
        resolve_config("unet3", 30, 5)
    with pytest.raises(ValueError, match="'segformer' does not accept encoder 'resnet50'"):
        resolve_config("segformer", 30, 5, encoder="resnet50")
    with pytest.raises(TypeError, match="'unet' has no option.*deep_supervision"):
        resolve_config("unet", 30, 5, deep_supervision=True)


def test_preset_options_can_be_overridden() -> None:
    cfg = resolve_config("cryonet-tiny", 12, 3, encoder="resnet34", deep_supervision=True)
    assert cfg["name"] == "cryonet" and cfg["encoder"] == "resnet34"
    assert cfg["in_channels"] == 12 and cfg["deep_supervision"] is True
    assert cfg["decoder_channels"] == list(PRESETS["cryonet-tiny"]["decoder_channels"])


@pytest.mark.slow
def test_cryonet_paper_forward_backward_cpu() -> None:
    torch.manual_seed(0)
    model = create_model("cryonet", 30, 5).train()
    x = torch.randn(2, 30, 64, 64)
    y = model(x)
    assert y.shape == (2, 5, 64, 64)
    y.square().mean().backward()
    assert model.encoder.conv1.weight.grad.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["deeplabv3plus-paper", "unet-paper", "segformer-b2"])
def test_paper_baselines_forward_cpu(preset: str) -> None:
    model = create_model(preset, 30, 5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 30, 96, 80)).shape == (1, 5, 96, 80)


def _per_pixel_accuracy(full_resolution: int, steps: int = 60) -> float:
    """Fit the last decoder node (and the branch) to labels that are per-pixel noise.

    The label is the sign of band 0 of random inputs: no spatial structure at all. The
    encoder and the coarse decoder stay frozen at their random initialisation, so what the
    last node can learn depends only on what reaches it at full resolution.
    """
    torch.manual_seed(0)
    model = create_model(
        "unet", 4, 2, encoder="resnet18", decoder_channels=(16, 16, 16, 16, 8),
        full_resolution=full_resolution,
    ).train()  # fmt: skip
    model.requires_grad_(False)
    trained = [model.decoder[-1], model.head]
    if model.full_res is not None:
        trained.append(model.full_res)
    params = [p for m in trained for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=1e-2)
    for _ in range(steps):
        x = torch.randn(4, 4, 32, 32)
        loss = F.cross_entropy(model(x), (x[:, 0] > 0).long())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x = torch.randn(8, 4, 32, 32)
    with torch.no_grad():
        pred = model(x).argmax(1)
    return float((pred == (x[:, 0] > 0)).float().mean())


def test_full_resolution_branch_keeps_one_pixel_details() -> None:
    # Only a last node that sees every input pixel at full resolution can map per-pixel
    # noise; behind the stride-2 ResNet stem of the plain U-Net it stays near chance (0.5).
    assert _per_pixel_accuracy(8) > 0.95
    assert _per_pixel_accuracy(0) < 0.7
    for preset in ("unet-tiny", "cryonet-tiny"):  # wired in both decoders: every weight learns
        torch.manual_seed(0)
        model = create_model(preset, 4, 5, full_resolution=8).train()
        assert model.config["full_resolution"] == 8
        assert create_model(**model.config).state_dict().keys() == model.state_dict().keys()
        model(torch.randn(2, 4, 32, 32)).square().mean().backward()
        unused = [n for n, p in model.named_parameters() if p.grad is None]
        assert unused == [] and model.full_res[0][0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="full_resolution must be >= 0"):
        create_model("unet-tiny", 30, 5, full_resolution=-1)
