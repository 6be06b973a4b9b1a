"""What m3l costs on top of plain PyTorch.

1. Training steps/s of the demo net through m3l (Experiment -> Lightning, default callbacks
   and TensorBoard logger) against a hand-written PyTorch loop over the same data, net,
   batch size and number of steps, on CPU. Runs alternate and the medians are compared.
2. Wall time of ``python -m m3l.run.train --help`` against ``python -c "import lightning"``.

    python benchmarks/overhead.py [--steps 40] [--repeats 3]
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


def m3l_run(steps: int, runs_dir: str) -> float:
    from m3l import Experiment, compose

    os.environ["M3L_RUNS_DIR"] = runs_dir
    exp = Experiment(compose("demo", [
        "trainer.max_epochs=1", f"+trainer.limit_train_batches={steps}", "+trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0", "trainer.enable_model_summary=false",
    ]))
    trainer = exp.make_trainer()
    exp.data.setup("fit")
    start = time.perf_counter()
    trainer.fit(exp.net, datamodule=exp.data)
    return steps / (time.perf_counter() - start)


def hand_loop(steps: int) -> float:
    from m3l import Experiment, compose

    exp = Experiment(compose("demo", ["logger=none"]))
    data = exp.data
    data.setup("fit")
    net = exp.net.net  # the plain nn.Module inside RestorationModule
    loss_fn = torch.nn.MSELoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    start = time.perf_counter()
    for step, batch in enumerate(data.train_dataloader()):
        if step == steps:
            break
        pred = batch["input"] + net(batch["input"])
        loss = loss_fn(pred, batch["target"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps / (time.perf_counter() - start)


def command_time(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
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

    hand, m3l = statistics.median(hand_rates), statistics.median(m3l_rates)
    print(f"\nTraining overhead: demo net (DnCNN 8x32), batch 16, 64x64 patches, {args.steps} steps, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print("| loop | steps/s (median) | runs | ratio to hand loop |")
    print("|---|---:|---|---:|")
    print(f"| hand-written PyTorch | {hand:.2f} | {', '.join(f'{r:.2f}' for r in hand_rates)} | 1.00 |")
    print(f"| m3l (Lightning, callbacks, TensorBoard) | {m3l:.2f} | {', '.join(f'{r:.2f}' for r in m3l_rates)} | {m3l / hand:.3f} |")
    h, i = statistics.median(help_times), statistics.median(import_times)
    print("\nStartup, median of 5")
    print("| command | seconds | ratio |")
    print("|---|---:|---:|")
    print(f"| python -c 'import lightning' | {i:.2f} | 1.00 |")
    print(f"| python -m m3l.run.train --help | {h:.2f} | {h / i:.2f} |")


if __name__ == "__main__":
    main()
