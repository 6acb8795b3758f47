"""Trial throughput: the shared engine against the original AlexNet tutorial's training loop, side by side in one run.

The original AlexNet tutorial's loop: a Dataset that builds a PIL image per sample and runs torchvision transforms
(ToTensor, random flips), a DataLoader, and per-step `.tolist()` / `.item()` host syncs. The
engine: uint8 tensors on the training device, crops and flips in whole batches, one host sync
per epoch. Same model, same data (CIFAR-shaped: 3x32x32, 10 classes), same batch size, same
optimizer; images per second over timed epochs after one warm-up epoch.

    python benchmarks/throughput.py                    # CPU, small_cnn (width 32)
    python benchmarks/throughput.py --model resnet18 --width 16 --images 4096 --device cuda
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F


def synthetic_cifar(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.int64)
    return images, labels


def engine_images_per_s(images, labels, args) -> float:
    from tunelab.trainables.classifier import Classifier, ClassifierConfig
    from tunelab.trainables.splits import ArraySplit, DatasetBundle, channel_stats
    from tunelab.trainables.engine import prepare, train_one_epoch

    train = ArraySplit(torch.from_numpy(images), torch.from_numpy(labels))
    mean, std = channel_stats(train.images[:1024])
    data = DatasetBundle("synthetic", train, train, train, [str(i) for i in range(10)], mean, std,
                         default_hflip=True, image_size=32)
    config = ClassifierConfig(model=args.model, width=args.width, batch_size=args.batch_size, device=args.device,
                              optimizer="adam", lr=1e-3, schedule="none", epochs=args.epochs + 1,
                              crop_padding=0, compile=args.compile)
    run = prepare(Classifier(), config, data)
    timings = []
    for epoch in range(args.epochs + 1):
        _sync(args.device)
        began = time.perf_counter()
        train_one_epoch(run, torch.Generator(device=run.device).manual_seed(epoch))
        _sync(args.device)
        timings.append(time.perf_counter() - began)
    return len(images) * args.epochs / sum(timings[1:])


class Seed002Dataset(torch.utils.data.Dataset):
    """As the original AlexNet tutorial wrote it: a PIL image per sample, torchvision transforms per sample."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        from PIL import Image

        img = np.rollaxis(self.images[index], 0, 3)
        return self.transform(Image.fromarray(img)), torch.tensor(self.labels[index], dtype=torch.long)


def seed002_images_per_s(images, labels, args) -> float:
    from torchvision import transforms

    from tunelab.trainables.models import ModelOptions, build_model

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(ModelOptions(name=args.model, width=args.width), 10).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-4)
    transform = transforms.Compose([transforms.ToTensor(), transforms.RandomHorizontalFlip()])
    loader = torch.utils.data.DataLoader(Seed002Dataset(images, labels, transform), batch_size=args.batch_size,
                                         shuffle=True, drop_last=True)
    timings = []
    for _ in range(args.epochs + 1):
        model.train()
        losses = []
        _sync(args.device)
        began = time.perf_counter()
        for x, t in loader:
            x, t = x.to(device), t.to(device)
            optimizer.zero_grad()
            logits, _ = model(x)
            loss = F.cross_entropy(logits, t)
            loss.backward()
            optimizer.step()
            losses.append(loss.tolist())  # the tutorial's per-step host syncs
            _acc = (logits.argmax(1) == t).sum().item() / t.shape[0]
        _sync(args.device)
        timings.append(time.perf_counter() - began)
    return len(images) // args.batch_size * args.batch_size * args.epochs / sum(timings[1:])


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (after one warm-up)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    images, labels = synthetic_cifar(args.images)
    engine = engine_images_per_s(images, labels, args)
    seed = seed002_images_per_s(images, labels, args)
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, device {args.device}, "
          f"torch {torch.__version__}")
    print(f"model {args.model} width {args.width}, {args.images} images 3x32x32, batch {args.batch_size}, "
          f"{args.epochs} timed epochs")
    print(f"tutorial loop : {seed:9.1f} images/s")
    print(f"tunelab engine: {engine:9.1f} images/s")
    print(f"ratio engine / tutorial loop: {engine / seed:.2f}x")


if __name__ == "__main__":
    main()
