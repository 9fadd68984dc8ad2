"""The PyTorch twin of ``bench_importance.py --parts torch``: GraSP's Hg on VGG-13, timed.

Runs in the benchmark's own environment (``bash scripts/setup_bench_env.sh``
makes ``.venv-bench`` with PyTorch; PyTorch is not a dependency of tfprune).
It builds the same CIFAR VGG-13 as ``tfprune.models.build("vgg13")`` (bias-free
3x3 convolutions, BatchNorm, ReLU, five 2x2 max-pools, one linear classifier)
and computes what ``tfprune.score(model, "grasp", samples_per_class=10,
num_samples=100)`` computes by default, in PyTorch:

1. over the memory of 10 images per class in one batch, g: the gradient of
   the cross-entropy of logits / T, taken with ``create_graph=True``;
2. Hg: the gradient of ||g||^2 / 2 (double backward; g is that of the same
   memory, so this is H g, one nested pass as tfprune's fused default), for
   the kernels only;
3. the score ``-theta * Hg`` per weight, copied to NumPy.

BatchNorm is in inference mode (``model.eval()``). The parent process talks to
it over stdin/stdout so the two frameworks alternate in one run: the twin
prints ``ready`` after a warm-up, then answers each ``run`` line with the
seconds one scoring took.

Usage (by bench_importance.py): python scripts/torch_twin.py --width 0.25
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch import nn
from torch.nn import functional

VGG13 = (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def scaled(width: int, multiplier: float) -> int:
    """tfprune's ``scaled_width``: rounded, at least 1."""
    return max(1, int(round(width * multiplier)))


def vgg13(multiplier: float, classes: int = 10) -> nn.Sequential:
    layers, channels = [], 3
    for item in VGG13:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        width = scaled(item, multiplier)
        layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                   nn.ReLU()]
        channels = width
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels, classes))


def grasp_scores(model, weights, images, labels, temperature: float = 200.0):
    loss = functional.cross_entropy(model(images) / temperature, labels)
    gradient = torch.autograd.grad(loss, list(model.parameters()), create_graph=True)
    half_norm = sum((g * g).sum() for g in gradient) / 2
    hessian_gradient = torch.autograd.grad(half_norm, weights)
    return [(-w.detach() * hg).numpy() for w, hg in zip(weights, hessian_gradient, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=float, required=True)
    parser.add_argument("--samples-per-class", type=int, default=10)
    parser.add_argument("--num-samples", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = vgg13(args.width).eval()
    # g of every parameter, Hg of the kernels (convolutions and the classifier) only, as
    # tfprune's outer tape: BatchNorm and bias rows of Hg are read by no measure.
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.num_samples, 3, 32, 32, generator=generator)
    labels = torch.arange(args.num_samples) % 10
    memory = torch.cat([torch.nonzero(labels == c).flatten()[:args.samples_per_class]
                        for c in range(10)])
    run = lambda: grasp_scores(model, weights, images[memory], labels[memory])  # noqa: E731
    run()  # warm-up
    print(f"ready torch {torch.__version__}, {sum(p.numel() for p in weights):,} kernel weights",
          flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        started = time.perf_counter()
        run()
        print(f"{time.perf_counter() - started:.6f}", flush=True)


if __name__ == "__main__":
    main()
