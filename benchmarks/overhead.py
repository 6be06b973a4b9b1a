"""What m3l costs on top of plain PyTorch.

1. Training steps/s of the demo net through m3l (Experiment -> Lightning, default callbacks
   and TensorBoard logger) against a hand-written PyTorch loop over the same data, net,
   batch size and number of steps, on CPU. Runs alternate and the medians are compared, for
   the whole run (m3l's includes Trainer setup and the final checkpoint) and for the steady
   state (the steps after the first few).
2. Wall time of ``python -m m3l.run.train --help`` against ``python -c "import lightning"``.

    python benchmarks/overhead.py [--steps 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch


WARMUP = 5  # steps left out of the steady-state rate (first-call allocations, thread pools)


def _overrides(steps: int) -> list[str]:
    # enough patches for `steps` batches of 16 from the 9 training photos in one epoch
    return [f"data.patches_per_image={-(-steps * 16 // 9) + 16}"]


def _rates(stamps: list[float], start: float, end: float, steps: int) -> tuple[float, float]:
    """(whole-run steps/s, steady-state steps/s after WARMUP steps)."""
    return steps / (end - start), (steps - WARMUP) / (end - stamps[WARMUP])


def m3l_run(steps: int, runs_dir: str) -> tuple[float, float]:
    import lightning as L

    from m3l import Experiment, compose

    class Clock(L.Callback):
        def __init__(self) -> None:
            self.stamps: list[float] = []

        def on_train_batch_start(self, *args) -> None:
            self.stamps.append(time.perf_counter())

        def on_train_batch_end(self, *args) -> None:
            self.end = time.perf_counter()

    os.environ["M3L_RUNS_DIR"] = runs_dir
    exp = Experiment(
        compose(
            "demo",
            [
                *_overrides(steps),
                "trainer.max_epochs=1",
                f"+trainer.limit_train_batches={steps}",
                "+trainer.limit_val_batches=0",
                "trainer.num_sanity_val_steps=0",
                "trainer.enable_model_summary=false",
            ],
        )
    )
    clock = Clock()
    trainer = exp.make_trainer(extra_callbacks=[clock])
    exp.data.setup("fit")
    start = time.perf_counter()
    trainer.fit(exp.net, datamodule=exp.data)
    end = time.perf_counter()
    assert len(clock.stamps) == steps, f"ran {len(clock.stamps)} steps, expected {steps}"
    whole, _ = _rates(clock.stamps, start, end, steps)
    _, steady = _rates(clock.stamps, start, clock.end, steps)
    return whole, steady


def hand_loop(steps: int) -> tuple[float, float]:
    from m3l import Experiment, compose

    exp = Experiment(compose("demo", [*_overrides(steps), "logger=none"]))
    data = exp.data
    data.setup("fit")
    net = exp.net.net  # the plain nn.Module inside RestorationModule
    loss_fn = torch.nn.MSELoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    stamps: list[float] = []
    start = time.perf_counter()
    for step, batch in enumerate(data.train_dataloader()):
        if step == steps:
            break
        stamps.append(time.perf_counter())
        pred = batch["input"] + net(batch["input"])
        loss = loss_fn(pred, batch["target"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    end = time.perf_counter()
    assert len(stamps) == steps, f"ran {len(stamps)} steps, expected {steps}"
    return _rates(stamps, start, end, steps)


def command_time(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)
    torch.manual_seed(0)
    m3l_rates, hand_rates = [], []
    with tempfile.TemporaryDirectory() as runs_dir:
        for _ in range(args.repeats):
            hand_rates.append(hand_loop(args.steps))
            m3l_rates.append(m3l_run(args.steps, runs_dir))
    help_times = [command_time(["-m", "m3l.run.train", "--help"]) for _ in range(5)]
    import_times = [command_time(["-c", "import lightning"]) for _ in range(5)]

    print(
        f"\nTraining overhead: demo net (DnCNN 8x32), batch 16, 64x64 patches, {args.steps} steps, "
        f"{torch.get_num_threads()} threads, median of {args.repeats} (runs alternate)"
    )
    print(
        "| loop | whole run steps/s | steady steps/s (after {WARMUP}) | ratio whole | ratio steady |".replace(
            "{WARMUP}", str(WARMUP)
        )
    )
    print("|---|---:|---:|---:|---:|")
    hand_w, hand_s = (statistics.median(r[k] for r in hand_rates) for k in (0, 1))
    m3l_w, m3l_s = (statistics.median(r[k] for r in m3l_rates) for k in (0, 1))
    print(f"| hand-written PyTorch | {hand_w:.2f} | {hand_s:.2f} | 1.00 | 1.00 |")
    print(
        f"| m3l (Lightning, callbacks, TensorBoard) | {m3l_w:.2f} | {m3l_s:.2f} | "
        f"{m3l_w / hand_w:.3f} | {m3l_s / hand_s:.3f} |"
    )
    print("whole run: Trainer setup, checkpoint and logger teardown included; steady: the steps only")
    h, i = statistics.median(help_times), statistics.median(import_times)
    print("\nStartup, median of 5")
    print("| command | seconds | ratio |")
    print("|---|---:|---:|")
    print(f"| python -c 'import lightning' | {i:.2f} | 1.00 |")
    print(f"| python -m m3l.run.train --help | {h:.2f} | {h / i:.2f} |")


if __name__ == "__main__":
    main()
