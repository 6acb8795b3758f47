"""GPU figures in one command: the engine against a plain PyTorch loop, and four 0.25-GPU trials.

    python benchmarks/gpu.py                  # on a machine with a CUDA GPU; writes benchmarks/gpu_results.json
    python benchmarks/gpu.py --smoke-cpu      # exercises the same code on the CPU (tiny, no figures worth keeping)

1. A CIFAR-10-shaped epoch (50,000 synthetic uint8 images 3x32x32, 10 classes) of ResNet-18 (full
   width, CIFAR stem), batch 512, Adam, bf16 autocast and channels_last in both loops:
   - tunelab's engine (`train_one_epoch`: data resident on the GPU, crops and flips in batches),
   - a plain PyTorch loop as a user would write it: TensorDataset + DataLoader (4 workers, pinned
     memory), normalisation and the same random flip per batch on the GPU.
   Images per second over 2 timed epochs after a warm-up epoch, same model and optimizer.
2. Four trials of `tunelab tune` with `--gpus-per-trial 0.25` on CIFAR-format files of the same
   synthetic data, then one trial with the whole GPU: training images per second of all trials
   together (from each trial's own epoch times, so Ray's start-up is not counted), GPU utilisation
   sampled by nvidia-smi every 0.5 s over the whole command (mean and 95th percentile), and each
   trial process's peak memory against its cap.

On a machine without a CUDA GPU it says so in one line and exits 0.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.throughput import engine_images_per_s, synthetic_cifar  # noqa: E402


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def plain_loop_images_per_s(images, labels, args) -> float:
    """The same model, optimizer, augmentation and precision in a DataLoader loop."""
    from tunelab.trainables.batches import Augment, Normalizer
    from tunelab.trainables.splits import channel_stats
    from tunelab.trainables.models import ModelOptions, build_model

    device = torch.device(args.device)
    model = build_model(ModelOptions(name="resnet18", width=args.width), 10).to(device)
    if device.type == "cuda" or args.smoke_cpu:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    mean, std = channel_stats(torch.from_numpy(images[:1024]))
    normalize = Normalizer(mean, std, device, channels_last=True)
    augment = Augment(crop_padding=0, hflip=True)  # what the engine does in throughput.py's config
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                         num_workers=args.workers, pin_memory=device.type == "cuda",
                                         persistent_workers=args.workers > 0)
    generator = torch.Generator(device=device).manual_seed(0)
    timings = []
    for _ in range(args.epochs + 1):
        _sync(args.device)
        began = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                logits, _ = model(normalize(augment(x, generator)))
                loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _sync(args.device)
        timings.append(time.perf_counter() - began)
    return len(images) * args.epochs / sum(timings[1:])


def write_cifar_files(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """The synthetic data as CIFAR-10 python batches, so `tunelab tune --dataset cifar10` reads it."""
    folder.mkdir(parents=True, exist_ok=True)
    flat = images.reshape(len(images), -1)
    parts = np.array_split(np.arange(len(images) - 10000), 5)
    for i, index in enumerate(parts, start=1):
        with open(folder / f"data_batch_{i}", "wb") as handle:
            pickle.dump({b"data": flat[index], b"labels": labels[index].tolist()}, handle, protocol=2)
    test = np.arange(len(images) - 10000, len(images))
    with open(folder / "test_batch", "wb") as handle:
        pickle.dump({b"data": flat[test], b"labels": labels[test].tolist()}, handle, protocol=2)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, handle, protocol=2)


def sample_gpu(stop: threading.Event, utilisation: list[float], memory: dict[int, float]) -> None:
    """nvidia-smi every 0.5 s: GPU utilisation (%) and each compute process's peak memory (MiB)."""
    while not stop.is_set():
        try:
            util = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                  capture_output=True, text=True, timeout=5).stdout.split()
            apps = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                                   "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            return
        if util:
            utilisation.append(float(util[0]))
        for line in apps.strip().splitlines():
            pid, used = (int(float(v)) for v in line.split(","))
            memory[pid] = max(memory.get(pid, 0), used)
        stop.wait(0.5)


def gpu_trials(images, labels, args, gpus_per_trial: float, num_samples: int) -> dict:
    """`tunelab tune` with `num_samples` trials of `gpus_per_trial` GPUs each, all at once."""
    total_mib = torch.cuda.get_device_properties(0).total_memory / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        write_cifar_files(Path(tmp) / "cifar-10-batches-py", images, labels)
        command = [sys.executable, "-m", "tunelab", "tune", "classifier", "--dataset", "cifar10", "--data-dir", tmp,
                   "--num-samples", str(num_samples), "--max-concurrent", str(num_samples),
                   "--gpus-per-trial", str(gpus_per_trial), "--cpus-per-trial", "2",
                   "--scheduler", "fifo", "--max-epochs", str(args.trial_epochs), "--storage", f"{tmp}/runs",
                   "--name", "gpu", "--set", "model=resnet18", "--set", f"width={args.width}",
                   "--set", f"batch_size={args.batch_size}", "--json"]
        utilisation: list[float] = []
        memory: dict[int, float] = {}
        stop = threading.Event()
        sampler = threading.Thread(target=sample_gpu, args=(stop, utilisation, memory), daemon=True)
        began = time.perf_counter()
        sampler.start()
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "RAY_ADDRESS": "local"},
                                cwd=HERE.parent)
        stop.set()
        sampler.join()
        wall = time.perf_counter() - began
        if result.returncode != 0:
            raise SystemExit(f"tunelab tune failed ({result.returncode}): {result.stderr[-2000:]}")
        epoch_s = [steady_epoch_seconds(p) for p in Path(tmp, "runs", "gpu").glob("*/progress.csv")]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    trial_mib = sorted(memory.values(), reverse=True)[:num_samples]
    train_images = len(images) - 10000 - round(0.1 * (len(images) - 10000))  # CIFAR train minus val_fraction 0.1
    cap = total_mib * gpus_per_trial
    return {"trials": summary["trials"], "gpus_per_trial": gpus_per_trial, "statuses": summary["statuses"],
            "wall_s": round(wall, 1),
            # every trial trains at once, so their rates add up (median epoch after the first)
            "train_images_per_s_all_trials": round(sum(train_images / s for s in epoch_s)),
            "epoch_s_per_trial": [round(s, 2) for s in epoch_s],
            "gpu_util_mean_pct": round(statistics.fmean(utilisation), 1) if utilisation else None,
            "gpu_util_p95_pct": round(float(np.percentile(utilisation, 95)), 1) if utilisation else None,
            "peak_mib_per_process": trial_mib, "cap_mib": round(cap),
            "all_within_cap": all(m <= cap + 1 for m in trial_mib)}


def steady_epoch_seconds(progress_csv: Path) -> float:
    import pandas as pd

    seconds = pd.read_csv(progress_csv)["time/epoch_s"].tolist()
    return float(statistics.median(seconds[1:] or seconds))  # the first epoch pays cudnn's autotuning


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke-cpu", action="store_true", help="run the loops tiny on the CPU (checks the code)")
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--trial-epochs", type=int, default=6)
    parser.add_argument("--no-trials", action="store_true", help="only the engine vs DataLoader loop figures")
    parser.add_argument("--out", default=str(HERE / "gpu_results.json"))
    args = parser.parse_args(argv)
    if args.smoke_cpu:
        args.device, args.images, args.width, args.epochs, args.workers = "cpu", 256, 8, 1, 0
        args.batch_size = min(args.batch_size, 64)
    elif not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA GPU visible; nothing measured (run it where one is)")
        return 0
    else:
        args.device = "cuda"
    images, labels = synthetic_cifar(args.images)
    args.model, args.compile = "resnet18", False
    engine = engine_images_per_s(images, labels, args)
    plain = plain_loop_images_per_s(images, labels, args)
    figures = {"device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu (smoke)",
               "torch": torch.__version__, "images": args.images, "batch_size": args.batch_size,
               "model": f"resnet18 width {args.width}", "engine_images_per_s": round(engine),
               "plain_dataloader_images_per_s": round(plain), "engine_vs_plain": round(engine / plain, 3)}
    if args.device == "cuda" and not args.no_trials:
        figures["quarter_gpu_trials"] = gpu_trials(images, labels, args, 0.25, 4)
        figures["one_whole_gpu_trial"] = gpu_trials(images, labels, args, 1.0, 1)
        figures["quarter_vs_whole_throughput"] = round(
            figures["quarter_gpu_trials"]["train_images_per_s_all_trials"]
            / figures["one_whole_gpu_trial"]["train_images_per_s_all_trials"], 3)
    print(json.dumps(figures, indent=2))
    if args.device == "cuda":
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
