"""ASHA over a torchvision ResNet-18 on upsampled digits: learning rate, weight decay, augmentation and its strength.

Needs torchvision (``pip install torchhpo[vision]``). scikit-learn's bundled digits (nothing downloads) become
3 x 32 x 32 uint8 images; every training image is augmented afresh each epoch by ``torchvision.transforms.v2``:
not at all, by ``RandomAffine`` (rotation, shift and zoom that grow with ``magnitude``) or by ``RandAugment`` at
``magnitude`` (0-30). ASHA stops poor trials at 1 and 3 epochs, pausing those that wait for a rung and resuming
them from their checkpoint.

    python recipes/vision_digits.py                          # CPU, 20 trials of up to 9 epochs
    python recipes/vision_digits.py --device cuda --trials 60 --epochs 27   # one GPU
    python recipes/vision_digits.py --device cuda:0,cuda:1 --trials 60     # a worker process per GPU
    python recipes/vision_digits.py --searcher tpe --storage runs/vision.db  # resumable: rerun to go on
    python recipes/vision_digits.py --smoke                  # seconds: FakeData 16 x 16, 4 trials x 3 epochs
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import torchhpo as th
from torchhpo.problems import DigitsData, digits_data, evaluate

# --- configuration (every value has a flag below) ---------------------------------------------------------------
TRIALS = 20
EPOCHS = 9               # ASHA's largest budget: rungs at 1, 3, 9 epochs with eta = 3
N_TRAIN = 500            # training images (the rest of the 1,797 digits: 500 to validate, 797 to test)
IMAGE_SIZE = 32          # the 8 x 8 digits are upsampled to IMAGE_SIZE x IMAGE_SIZE
BATCH_SIZE = 64
MAX_MAGNITUDE = 30       # RandAugment's magnitudes are 0..30 (its 31 bins); RandomAffine's scale with m / 30
STORAGE = ""             # a .db path to keep (and resume) the study; "" keeps it in memory
SMOKE_IMAGES = 16        # --smoke: FakeData images per split (train, validation, test)
SMOKE_SIZE = 16          # --smoke: their height and width in pixels
# ------------------------------------------------------------------------------------------------------------------

space = th.Space({
    "lr": th.Float(1e-3, 3e-1, log=True),
    "weight_decay": th.Float(1e-6, 1e-2, log=True),
    "augment": th.Choice(["none", "affine", "randaugment"]),
    "magnitude": th.Int(0, MAX_MAGNITUDE),
})


def to_images(X: torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """``n x 1 x h x w`` floats in [0, 1] -> ``n x 3 x size x size`` uint8, grey in three channels (bilinear
    upsampling): the images torchvision's models take and its v2 transforms (RandAugment: uint8 only) augment."""
    up = nn.functional.interpolate(X, size=(size, size), mode="bilinear", align_corners=False)
    return (up.clamp(0.0, 1.0) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()


def digits_images(n_train: int = N_TRAIN, size: int = IMAGE_SIZE) -> DigitsData:
    """The digits split of ``torchhpo.problems.digits_data`` as ``n x 3 x size x size`` uint8 images."""
    d = digits_data(n_train=n_train)
    return DigitsData(to_images(d.X_train, size), d.y_train, to_images(d.X_val, size), d.y_val,
                      to_images(d.X_test, size), d.y_test)


def fake_images(n: int, size: int) -> DigitsData:
    """Three splits of ``n`` random images from ``torchvision.datasets.FakeData`` (for a seconds-long run)."""
    from torchvision.datasets import FakeData
    from torchvision.transforms import v2

    splits = []
    for offset in (0, n, 2 * n):  # FakeData seeds image i with i + random_offset: disjoint splits
        fake = FakeData(size=n, image_size=(3, size, size), num_classes=10, transform=v2.PILToTensor(),
                        random_offset=offset)
        pairs = [fake[i] for i in range(n)]
        splits += [torch.stack([image for image, _ in pairs]), torch.tensor([int(label) for _, label in pairs])]
    return DigitsData(*splits)


def augmentation(name: str, magnitude: int) -> Any:
    """A v2 transform of one ``3 x H x W`` uint8 image: identity, RandomAffine or RandAugment at ``magnitude``."""
    from torchvision.transforms import v2

    m = magnitude / MAX_MAGNITUDE
    if name == "affine":
        return v2.RandomAffine(degrees=30 * m, translate=(0.2 * m, 0.2 * m), scale=(1 - 0.3 * m, 1 + 0.3 * m))
    if name == "randaugment":
        return v2.RandAugment(num_ops=2, magnitude=magnitude, num_magnitude_bins=MAX_MAGNITUDE + 1)
    return v2.Identity()


def build_model() -> nn.Module:
    """torchvision's ResNet-18 for 10 classes, untrained; its 3 x 3 max-pool is dropped, because at 32 x 32 the
    stem's stride and the pool would leave layer 4 a 1 x 1 map."""
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=10)
    model.maxpool = nn.Identity()
    return model


def as_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> floats in [0, 1], what the model trains on."""
    return images.float().div(255)


def make_train(data: DigitsData, seed: int) -> Callable[[dict, th.Trial], float]:
    """The training function over ``data``: SGD with momentum, reports validation loss after each epoch,
    checkpoints so that a trial ASHA paused resumes where it stopped."""

    def train(config: dict, trial: th.Trial) -> float:
        torch.manual_seed(seed + trial.number)
        model = build_model().to(trial.device)
        opt = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9, weight_decay=config["weight_decay"])
        gen = torch.Generator().manual_seed(seed + trial.number)
        saved = trial.load()
        if saved is not None:  # resumed after a pause: go on where it stopped
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["opt"])
            gen.set_state(saved["gen"])
        augment = augmentation(config["augment"], config["magnitude"])
        X_val, y_val = as_input(data.X_val).to(trial.device), data.y_val.to(trial.device)
        loss = float("inf")
        for _ in trial.epochs():
            model.train()
            for idx in torch.randperm(len(data.y_train), generator=gen).split(BATCH_SIZE):
                if len(idx) < 2:  # batch norm needs two samples
                    continue
                X = torch.stack([augment(image) for image in data.X_train[idx]])  # a fresh draw per image
                opt.zero_grad(set_to_none=True)
                out = model(as_input(X).to(trial.device))
                nn.functional.cross_entropy(out, data.y_train[idx].to(trial.device)).backward()
                opt.step()
            loss, _ = evaluate(model, X_val, y_val)
            trial.save({"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state()})
            trial.report(loss)  # may raise TrialPruned / TrialPaused: let it propagate
        return loss

    return train


def main(argv: list[str] | None = None) -> th.Study:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=TRIALS)
    p.add_argument("--epochs", type=int, default=EPOCHS, help="ASHA's largest budget (rungs at 1, 3, 9, ...)")
    p.add_argument("--searcher", default="random", choices=["random", "sobol", "tpe"])
    p.add_argument("--device", default="auto", help='"cpu", "cuda", "auto", or several: "cuda:0,cuda:1"')
    p.add_argument("--storage", default=STORAGE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="4 trials x 3 epochs on FakeData: a few seconds")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    try:
        import torchvision  # noqa: F401
    except ImportError as e:  # an optional dependency: the hint says how to get it
        sys.exit(f"vision_digits.py needs torchvision ({e}); install it with: pip install 'torchhpo[vision]'")
    if a.smoke:  # 3 epochs: ASHA still decides a rung (at 1)
        a.trials, a.epochs = 4, 3
    data = fake_images(SMOKE_IMAGES, SMOKE_SIZE) if a.smoke else digits_images()
    study = th.Study(space, mode="min", searcher=a.searcher, scheduler=th.ASHA(1, a.epochs, seed=a.seed),
                     storage=a.storage or None, name="vision_digits", seed=a.seed, max_epochs=a.epochs)
    devices = a.device.split(",")  # several: a worker process each; one: trials run in this process
    where = {"devices": devices} if len(devices) > 1 else {"executor": th.Inline(a.device)}
    study.optimize(make_train(data, a.seed), n_trials=a.trials, progress=not a.no_progress and sys.stderr.isatty(),
                   **where)
    best = study.best
    model = build_model()
    model.load_state_dict(study.checkpoint(best)["model"])  # its weights after its last epoch
    _, test_acc = evaluate(model, as_input(data.X_test), data.y_test)
    pruned = sum(t.status is th.Status.PRUNED for t in study.trials)
    print(f"{len(study.trials)} trials ({pruned} pruned); best validation loss {best.value:.4f} (trial "
          f"{best.number}): {best.config}; its test accuracy {test_acc:.4f}")
    return study


if __name__ == "__main__":
    main()
