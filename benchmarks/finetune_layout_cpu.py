"""Input memory layout for fine-tuning on the CPU: contiguous NCHW against channels_last.

``alamp_fast.finetune.train`` feeds the ResNet a C-contiguous NCHW float32 batch. The
alternative is channels_last (NHWC memory, NCHW shape: ``x.contiguous(memory_format=
torch.channels_last)`` with the model converted the same way), which is what a permuted view
of the NHWC images looks like to torch. This script times one SGD training step (forward,
cross-entropy, backward, optimiser step) and one eval forward pass in each layout, in the same
process, alternating the layouts so that a change of machine load hits both, and writes the
median wall-clock and process CPU times and their ratios to ``benchmarks/results/finetune_layout_cpu.json`` with the load
average before and after.

    python benchmarks/finetune_layout_cpu.py            # a few seconds per case
    python benchmarks/finetune_layout_cpu.py --repeats 30 --threads 2

CUDA is not measured here (no GPU on the machines this runs on).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# (name, batch, side, width, small_input): the test suite's shapes, the FT scheme on
# CIFAR-sized images with a narrow and the full-width network, and a 64-pixel ImageNet stem
CASES = [
    ("test-shape b8 16px w4", 8, 16, 4, True),
    ("cifar b64 32px w16", 64, 32, 16, True),
    ("cifar b64 32px w64", 64, 32, 64, True),
    ("imagenet-stem b32 64px w64", 32, 64, 64, False),
]


def load_average():
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _time_case(torch, resnet18, batch, side, width, small, layout, repeats, warmup):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = resnet18(num_classes=10, small_input=small, width=width)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.rand(batch, 3, side, side, generator=gen).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train_step():
        model.train()
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def eval_step():
        model.eval()
        with torch.no_grad():
            model(x)

    out = {}
    for name, step in (("train_step", train_step), ("eval_forward", eval_step)):
        for _ in range(warmup):
            step()
        wall, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        out[name] = (wall, cpu)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=15, help="timed steps per layout and round")
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the two layouts")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", type=Path, default=RESULTS / "finetune_layout_cpu.json")
    ap.add_argument("--cases", nargs="*", help="case names to run (default: all)")
    args = ap.parse_args(argv)

    import torch

    from alamp_fast.finetune.resnet import resnet18

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = load_average()
    rows = []
    cases = [c for c in CASES if c[0] in args.cases] if args.cases else CASES

    def write(complete: bool):
        result = {
            "what": "median ms per ResNet-18 training step / eval forward, by input memory layout "
            "(wall clock; *_cpu: process CPU time, less sensitive to other jobs' load)",
            "command": "python benchmarks/finetune_layout_cpu.py " + " ".join(argv or sys.argv[1:]),
            "complete": complete,
            "machine": {
                "processor": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
            },
            "versions": {"torch": torch.__version__, "python": platform.python_version()},
            "mkldnn_enabled": bool(torch.backends.mkldnn.is_available()),
            "repeats": args.repeats,
            "rounds": args.rounds,
            "load_average_before": load_before,
            "load_average_after": load_average(),
            "cases": rows,
            "cuda": "not measured (no GPU on this machine)",
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")

    for name, batch, side, width, small in cases:
        samples = {"nchw_contiguous": {}, "channels_last": {}}
        for _ in range(args.rounds):
            for layout in samples:
                got = _time_case(
                    torch, resnet18, batch, side, width, small, layout, args.repeats, args.warmup
                )
                for step, (wall, cpu) in got.items():
                    samples[layout].setdefault(step, {"wall": [], "cpu": []})
                    samples[layout][step]["wall"].extend(wall)
                    samples[layout][step]["cpu"].extend(cpu)
        row = {"case": name, "batch": batch, "side": side, "width": width, "small_input": small}
        for step in ("train_step", "eval_forward"):
            row[step] = {}
            for clock in ("wall", "cpu"):
                nchw = statistics.median(samples["nchw_contiguous"][step][clock]) * 1e3
                cl = statistics.median(samples["channels_last"][step][clock]) * 1e3
                suffix = "" if clock == "wall" else "_cpu"
                row[step].update(
                    {
                        f"nchw_contiguous_ms{suffix}": round(nchw, 3),
                        f"channels_last_ms{suffix}": round(cl, 3),
                        f"channels_last_over_nchw{suffix}": round(cl / nchw, 3),
                    }
                )
        rows.append(row)
        tr, ev = row["train_step"], row["eval_forward"]
        print(
            f"{name:28s} train NCHW {tr['nchw_contiguous_ms']:8.2f} ms, channels_last "
            f"{tr['channels_last_ms']:8.2f} ms (x{tr['channels_last_over_nchw']:.2f}, CPU time "
            f"x{tr['channels_last_over_nchw_cpu']:.2f}) | eval NCHW {ev['nchw_contiguous_ms']:8.2f}"
            f" ms, channels_last {ev['channels_last_ms']:8.2f} ms "
            f"(x{ev['channels_last_over_nchw']:.2f}, CPU time x{ev['channels_last_over_nchw_cpu']:.2f})",
            flush=True,
        )
        write(complete=False)  # a slow machine keeps what it measured
    write(complete=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
