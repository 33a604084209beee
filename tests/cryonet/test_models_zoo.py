"""Shared behaviour tests for every registered model (forward/backward, shapes, padding, dtypes)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cryonet.models import MODELS, create_model

IN_CHANNELS, NUM_CLASSES = 30, 5
S = 32  # side of the small inputs (the deepest feature is 1x1); forward/backward uses 64


def _first_conv(model: nn.Module) -> nn.Conv2d:
    """The first conv that consumes the input bands."""
    return next(
        m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels == IN_CHANNELS
    )


class BaseModelTester:
    """Every architecture in the registry gets these tests through a subclass."""

    preset: str  # a small preset of the architecture under test
    architecture: str

    def build(self, seed: int = 0, **kwargs: object) -> nn.Module:
        torch.manual_seed(seed)
        return create_model(self.preset, IN_CHANNELS, NUM_CLASSES, **kwargs)

    def test_preset_is_architecture(self) -> None:
        assert self.build().config["name"] == self.architecture

    def test_forward_backward(self) -> None:
        model = self.build().train()
        x = torch.randn(2, IN_CHANNELS, 64, 64, requires_grad=True)
        y = model(x)
        assert y.shape == (2, NUM_CLASSES, 64, 64)
        assert torch.isfinite(y).all()
        target = torch.randint(0, NUM_CLASSES, (2, 64, 64))
        F.cross_entropy(y, target).backward()
        first = _first_conv(model)
        assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0
        assert x.grad is not None and x.grad.abs().sum() > 0
        unused = [n for n, p in model.named_parameters() if p.grad is None]
        assert unused == [], f"parameters without gradient: {unused}"

    def test_deterministic_with_seed(self) -> None:
        x = torch.randn(2, IN_CHANNELS, S, S)
        outs = []
        for _ in range(2):
            model = self.build(seed=123).train()
            torch.manual_seed(7)
            outs.append(model(x))
        torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
        other = _first_conv(self.build(seed=124)).weight
        assert not torch.equal(other, _first_conv(model).weight)

    @pytest.mark.parametrize("hw", [(33, 31), (7, 40)])
    def test_any_size_is_padded_and_cropped(self, hw: tuple[int, int]) -> None:
        model = self.build().eval()
        h, w = hw
        x = torch.randn(2, IN_CHANNELS, h, w)
        with torch.no_grad():
            y = model(x)
            # Reference: replicate-pad by hand to the next multiple of 32, run, crop.
            ph, pw = -h % 32, -w % 32
            ref = model(F.pad(x, (0, pw, 0, ph), mode="replicate"))[..., :h, :w]
        assert y.shape == (2, NUM_CLASSES, h, w)
        torch.testing.assert_close(y, ref)

    def test_batch_elements_are_independent_in_eval(self) -> None:
        model = self.build().eval()
        x = torch.randn(3, IN_CHANNELS, S, S)
        with torch.no_grad():
            full, single = model(x)[1:2], model(x[1:2])
        # Different batch sizes take different kernels; allow float32 round-off only.
        torch.testing.assert_close(single, full, rtol=1e-3, atol=1e-4 * full.abs().max().item())

    def test_wrong_channels_rejected(self) -> None:
        model = self.build()
        with pytest.raises(ValueError, match="30 input channels.*12 channels"):
            model(torch.randn(1, 12, S, S))
        with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
            model(torch.randn(IN_CHANNELS, S, S))

    def test_channels_last_matches(self) -> None:
        model = self.build().eval()
        x = torch.randn(2, IN_CHANNELS, S, S)
        with torch.no_grad():
            ref = model(x)
            model = model.to(memory_format=torch.channels_last)
            y = model(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4)

    def test_bf16_autocast_cpu(self) -> None:
        model = self.build().eval()
        x = torch.randn(2, IN_CHANNELS, S, S)
        with torch.no_grad():
            ref = model(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = model(x).float()
        corr = torch.corrcoef(torch.stack([y.flatten(), ref.flatten()]))[0, 1]
        assert corr > 0.95
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = model(x)
        y.float().sum().backward()
        assert y.shape == ref.shape and torch.isfinite(y).all()
        assert _first_conv(model).weight.grad is not None


class TestCryoNet(BaseModelTester):
    preset, architecture = "cryonet-tiny", "cryonet"

    def test_deep_supervision(self) -> None:
        model = self.build(deep_supervision=True).train()
        outs = model.forward_aux(torch.randn(2, IN_CHANNELS, 40, 72))
        assert len(outs) == 4
        assert all(o.shape == (2, NUM_CLASSES, 40, 72) for o in outs)
        sum(o.mean() for o in outs).backward()
        assert all(p.grad is not None for p in model.parameters())
        with pytest.raises(RuntimeError, match="deep_supervision"):
            self.build().forward_aux(torch.randn(1, IN_CHANNELS, 32, 32))

    def test_scse_in_every_decoder_node(self) -> None:
        from cryonet.models.scse import SCSE

        model = self.build()
        nodes = list(model.decoder.nodes.values()) + [model.decoder.final]
        assert len(nodes) == 11  # 10 nested nodes X[i][j], i + j <= 4, plus the final one
        assert all(isinstance(n.attention_out, SCSE) for n in nodes)


class TestUNet(BaseModelTester):
    preset, architecture = "unet-tiny", "unet"


class TestDeepLabV3Plus(BaseModelTester):
    preset, architecture = "deeplabv3plus-tiny", "deeplabv3plus"

    def test_output_stride_16(self) -> None:
        model = self.build()
        feats = model.encoder(torch.randn(2, IN_CHANNELS, 64, 64))
        assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 4]


class TestSegFormer(BaseModelTester):
    preset, architecture = "segformer-tiny", "segformer"

    def test_stage_strides(self) -> None:
        feats = self.build().encoder(torch.randn(2, IN_CHANNELS, 64, 64))
        assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]


def test_every_registered_model_is_tested() -> None:
    tested = {cls.architecture for cls in BaseModelTester.__subclasses__()}
    assert tested == set(MODELS)


def test_benchmark_script_runs(tmp_path) -> None:
    import importlib.util
    import json
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_models.py"
    spec = importlib.util.spec_from_file_location("bench_models", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "b.json"
    args = ["--device", "cpu", "--models", "segformer-tiny", "--size", "32", "--threads", "1"]
    assert bench.main([*args, "--iters", "1", "--warmup", "0", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert row["model"] == "segformer-tiny" and row["train_img_per_s"] > 0


def test_scse_matches_definition() -> None:
    from cryonet.models.scse import SCSE

    torch.manual_seed(0)
    block = SCSE(32, reduction=16)
    x = torch.randn(2, 32, 5, 7)
    # Roy et al. 2019, written out with plain tensor algebra.
    c1, c2, s = block.cse[1], block.cse[3], block.sse[0]
    z = x.mean(dim=(2, 3))  # (N, C) global average pool
    gate_c = torch.sigmoid(
        torch.relu(z @ c1.weight[:, :, 0, 0].T + c1.bias) @ c2.weight[:, :, 0, 0].T + c2.bias
    )
    gate_s = torch.sigmoid(torch.einsum("nchw,c->nhw", x, s.weight[0, :, 0, 0]) + s.bias)
    ref = x * gate_c[:, :, None, None] + x * gate_s[:, None]
    torch.testing.assert_close(block(x), ref)
    assert c1.out_channels == 2


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "preset", ["cryonet-tiny", "unet-tiny", "deeplabv3plus-tiny", "segformer-tiny"]
)
def test_autocast_channels_last_cuda(preset: str, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model = create_model(preset, IN_CHANNELS, NUM_CLASSES).cuda()
    model = model.to(memory_format=torch.channels_last).train()
    x = torch.randn(4, IN_CHANNELS, 96, 80, device="cuda").to(memory_format=torch.channels_last)
    target = torch.randint(0, NUM_CLASSES, (4, 96, 80), device="cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    with torch.autocast("cuda", dtype=dtype):
        y = model(x)
        loss = F.cross_entropy(y, target)
    scaler.scale(loss).backward()
    assert y.shape == (4, NUM_CLASSES, 96, 80) and torch.isfinite(y).all()
    assert torch.isfinite(_first_conv(model).weight.grad).all()
