"""Turn the short CPU trainings into the shipped safetensors files and their model cards.

    python src/m3l/hub_weights/make_weights.py NAME=CHECKPOINT ...

NAME is a hub entry (m3l.hub.REGISTRY); CHECKPOINT the ``last.ckpt`` of its training run.
Per-image PSNR is measured on the held-out sample photos (m3l/data/samples/val, whole
images) with the training config's validation degradation, next to the degraded input
(and BM3D for denoising when the ``bm3d`` package is installed).
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from m3l import compose
from m3l.experiment import Experiment
from m3l.hub import REGISTRY, WEIGHTS_DIR, sha256_of
from m3l.models import metrics as M

# the training command of each entry (m3l's own configs plus overrides)
RECIPES = {
    "dncnn_color_blind": ["data=samples_blind"],
    "arcnn_color_jpeg": ["data=samples_jpeg", "net=arcnn", "net.residual=true", "net.optimizer._target_=torch.optim.Adam",
                         "net.optimizer.lr=5e-4", "~net.optimizer.momentum"],
    "nafnet_small_color_deblur": ["data=samples_deblur", "net=nafnet_small"],
}


def evaluate(name: str, module: torch.nn.Module) -> list[dict]:
    exp = Experiment(compose("demo", [*RECIPES[name], "data.val_patch_size=null", "paths.runs_dir=/tmp/m3l_cards"]))
    data = exp.data
    data.setup("test")
    loader = data.test_dataloader()
    loader = loader[0] if isinstance(loader, (list, tuple)) else loader
    rows = []
    for batch in loader:
        x, target = batch["input"], batch["target"]
        with torch.no_grad():
            y = module.restore(x).clamp(0, 1)
        row = {"image": batch["relpath"][0], "size": f"{x.shape[-1]}x{x.shape[-2]}",
               "input": float(M.psnr(x.clamp(0, 1), target)), "output": float(M.psnr(y, target))}
        if name == "dncnn_color_blind":
            try:
                import bm3d

                sigma = float(batch["meta"]["sigma"][0])
                den = bm3d.bm3d_rgb(x[0].permute(1, 2, 0).numpy(), sigma)
                row["bm3d"] = float(M.psnr(torch.from_numpy(den).permute(2, 0, 1)[None].float().clamp(0, 1), target))
            except ImportError:
                pass
        rows.append(row)
    return rows


def main(pairs: list[str]) -> None:
    for pair in pairs:
        name, ckpt = pair.split("=", 1)
        payload = torch.load(ckpt, map_location="cpu", weights_only=True)
        state = {k: v.contiguous().float() for k, v in payload["state_dict"].items() if k.startswith("net.")}
        module = REGISTRY[name]
        from m3l.hub import load

        target = WEIGHTS_DIR / f"{name}.safetensors"
        save_file(state, str(target), metadata={"m3l_entry": name})
        model = load(name, pretrained=True, weights=target)
        rows = evaluate(name, model)
        info = {"name": name, "sha256": sha256_of(target), "bytes": target.stat().st_size, "epochs": payload.get("epoch", 0) + 1,
                "steps": payload.get("global_step"), "rows": rows, "recipe": RECIPES[name],
                "hardware": f"{platform.processor() or platform.machine()}, 2 shared CPU cores, no GPU",
                "torch": torch.__version__}
        print(json.dumps(info))
        _ = module


if __name__ == "__main__":
    main(sys.argv[1:])
