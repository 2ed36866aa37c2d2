"""Training: the loop, augmentation, optimiser and learning-rate schedule, and precision.

:class:`Trainer` keeps all images in memory as tensors and runs a plain loop (no loader
processes), holds out a seeded, stratified validation split, keeps the best epoch's weights and
can stop early. The ``train-cnn`` stage drives it with a progress reporter and a state file (the
full state saved atomically after every epoch, so a killed run resumes where it stopped);
:meth:`CNNClassifier.fit <fmnist_cluster.cnn.CNNClassifier.fit>` runs it with neither.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fmnist_cluster.artefacts import NULL_PROGRESS, Progress, array_digest
from fmnist_cluster.cnn.checkpoint import cpu_state, read_state, write_state
from fmnist_cluster.cnn.network import Network
from fmnist_cluster.config import PRECISIONS, AugmentConfig, CnnTrainConfig, LayerSpec
from fmnist_cluster.data import stratified_indices
from fmnist_cluster.device import resolve_device, torch_threads

RUN_KEYS = ("seconds", "images_per_s")
"""Keys of a history entry that time the run: they differ from run to run, so ``train-cnn``
keeps them out of ``metrics.json`` (its manifest records the totals)."""

# --------------------------------------------------------------------------------------
# precision
# --------------------------------------------------------------------------------------


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 convolutions natively (CPU: AVX-512 BF16 or AMX)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``auto``, ``fp32`` or ``bf16`` into the precision training uses on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}'; valid: {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return precision


# --------------------------------------------------------------------------------------
# augmentation
# --------------------------------------------------------------------------------------


def augment_batch(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Apply the label-preserving augmentations of ``config`` to a batch (N, 1, H, W).

    Random draws come from ``generator`` only, so a seeded generator repeats them exactly.
    Hand-written rather than torchvision's RandomHorizontalFlip/RandomCrop/RandomErasing: those
    draw once per call (the same flip for a whole batch) from torch's global generator, and
    applied image by image they take 9x as long (12.9 against 1.4 ms for 128 images, 1 thread).
    """
    n, _, h, w = x.shape
    if config.flip:
        mirror = torch.rand(n, generator=generator) < 0.5
        x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
    if config.shift > 0:
        s = config.shift
        padded = F.pad(x, (s, s, s, s))
        dy = torch.randint(0, 2 * s + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * s + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(h))[:, :, None]
        cols = (dx[:, None] + torch.arange(w))[:, None, :]
        x = padded[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)
    if config.erase > 0:
        apply = torch.rand(n, generator=generator) < config.erase
        eh = torch.randint(h // 7, h // 2 + 1, (n,), generator=generator)
        ew = torch.randint(w // 7, w // 2 + 1, (n,), generator=generator)
        y0 = (torch.rand(n, generator=generator) * (h - eh + 1)).long()
        x0 = (torch.rand(n, generator=generator) * (w - ew + 1)).long()
        ys, xs = torch.arange(h), torch.arange(w)
        in_y = (ys[None, :] >= y0[:, None]) & (ys[None, :] < (y0 + eh)[:, None])
        in_x = (xs[None, :] >= x0[:, None]) & (xs[None, :] < (x0 + ew)[:, None])
        mask = in_y[:, :, None] & in_x[:, None, :] & apply[:, None, None]
        x = x.masked_fill(mask[:, None], 0.0)
    return x.contiguous()


# --------------------------------------------------------------------------------------
# optimiser and schedule
# --------------------------------------------------------------------------------------


def make_optimizer(params: Any, train: CnnTrainConfig) -> torch.optim.Optimizer:
    """The optimiser ``train.optimizer`` with the rate, momentum and weight decay of ``train``."""
    if train.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=train.lr,
            momentum=train.momentum,
            nesterov=train.nesterov and train.momentum > 0,
            weight_decay=train.weight_decay,
        )
    if train.optimizer == "adam":
        return torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay)
    return torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)


def make_scheduler(
    opt: torch.optim.Optimizer, train: CnnTrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule ``train.schedule`` over the whole run, stepped after every batch.

    ``onecycle`` rises along a cosine from 4 % of ``train.lr`` to ``train.lr`` over the first ``train.warmup``
    of the steps and falls along a cosine to 0.1 % of it; ``cosine`` falls along a cosine to 0;
    ``step`` multiplies the rate by 0.1 at 50 % and at 75 % of the steps.
    """
    total = max(1, train.epochs * steps_per_epoch)
    schedulers = torch.optim.lr_scheduler
    if train.schedule == "constant":
        return schedulers.ConstantLR(opt, factor=1.0, total_iters=0)
    if train.schedule == "cosine":
        return schedulers.CosineAnnealingLR(opt, T_max=total)
    if train.schedule == "step":
        return schedulers.MultiStepLR(opt, milestones=[-(-total // 2), -(-3 * total // 4)], gamma=0.1)
    warm = max(1, round(train.warmup * total))
    # OneCycleLR warms up along a cosine too (one anneal_strategy for both phases), where an
    # earlier hand-written schedule rose linearly: best validation accuracy of the demo config,
    # 2 data sets x 3 seeds, 87.67 % against 88.06 % (paired difference -0.39 +- 0.46 points,
    # within noise), so the library piece is used.
    # OneCycleLR reaches its last rate at its step total_steps - 1: one step more than the run
    # takes keeps the peak at step `warm` and the floor at the end of the run for any length,
    # even one step (with total_steps equal to the run, short runs divide by zero in torch).
    return schedulers.OneCycleLR(
        opt,
        max_lr=train.lr,
        total_steps=total + 1,
        pct_start=(warm + 1) / (total + 1),
        anneal_strategy="cos",
        div_factor=25.0,
        final_div_factor=40.0,
        cycle_momentum=False,
    )


# --------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------


def logits(model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """The network's outputs for ``x`` in eval mode, in batches, as float32 on the CPU."""
    model.eval()
    outs = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            outs.append(model(x[start : start + batch_size].to(device)).float().cpu())
    return torch.cat(outs) if outs else torch.zeros((0, 0))


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the network on ``x``, ``y``."""
    out = logits(model, x, batch_size, device)
    loss = float(F.cross_entropy(out, y, reduction="mean"))
    acc = int((out.argmax(1) == y).sum()) / max(1, len(y))
    return loss, acc


# --------------------------------------------------------------------------------------
# the training loop
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingRun:
    """What a training run learned and measured.

    Attributes
    ----------
    network : Network
        The kept weights (the best epoch's, or the last's), in eval mode on the training device.
    precision : {'fp32', 'bf16'}
        Arithmetic the training forward passes used.
    history : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc`` (with a
        validation split), ``lr``, ``seconds``, ``images_per_s``.
    best_epoch : int
        1-based epoch whose weights were kept.
    resumed_from : int
        Epochs taken from a saved training state (0 for a fresh run).
    train_images_per_s : float
        Training throughput over all epochs (augmentation, forward, backward, step).
    n_train, n_val : int
        Images trained on and held out for validation.
    """

    network: Network
    precision: str
    history: list[dict[str, Any]]
    best_epoch: int
    resumed_from: int
    train_images_per_s: float
    n_train: int
    n_val: int


class Trainer:
    """Trains a network on images held in memory, with optional progress and resumable state.

    Parameters
    ----------
    progress : Progress
        Receives one bar over all training steps, with the last epoch's metrics.
    state_path : path or None
        Where to save the full training state after each epoch (atomically), for resuming.
    resume : bool
        Continue from the state in ``state_path``, which must come from the same settings and data.
    """

    def __init__(
        self, progress: Progress = NULL_PROGRESS, state_path: Path | str | None = None, resume: bool = False
    ) -> None:
        if resume and state_path is None:
            raise ValueError("resume needs a state_path to read the training state from")
        self.progress = progress
        self.state_path = None if state_path is None else Path(state_path)
        self.resume = resume

    def train(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        n_classes: int,
        architecture: list[LayerSpec],
        train: CnnTrainConfig,
        augment: AugmentConfig,
        device: str = "auto",
        threads: int | None = None,
        seed: int = 0,
    ) -> TrainingRun:
        """Train a new network on images ``x`` (N, 1, 28, 28, float32) with labels ``y`` in 0..K-1.

        Weights, validation split, shuffling, augmentation and dropout all follow ``seed``: on
        the CPU, the same seed, data and thread count give identical weights. torch's global
        random state is the caller's again afterwards.
        """
        dev = resolve_device(device)
        precision = resolve_precision(train.precision, dev)
        fingerprint = {
            "architecture": [s.model_dump(mode="json") for s in architecture],
            "train": train.model_dump(mode="json"),
            "augment": augment.model_dump(mode="json"),
            "random_state": int(seed),
            "n_classes": int(n_classes),
            "n_images": len(y),
            "data_sha256": array_digest(x, y) if self.state_path is not None else None,
            "precision": precision,
        }
        forked = list(range(torch.cuda.device_count())) if dev.type == "cuda" else []  # manual_seed seeds them all
        with torch_threads(threads), torch.random.fork_rng(devices=forked):
            torch.manual_seed(seed)
            layout = torch.channels_last if precision == "bf16" else torch.contiguous_format
            net = Network(architecture, n_classes).to(dev, memory_format=layout)
            train_idx, val_idx = _split(y, train.val_fraction, seed)
            loop = _Loop(self, net, train, augment, dev, precision, seed, fingerprint)
            loop.run(x, y, train_idx, val_idx)
        return TrainingRun(
            network=net.to(memory_format=torch.contiguous_format),
            precision=precision,
            history=loop.history,
            best_epoch=int(loop.best["epoch"]),
            resumed_from=loop.start_epoch,
            train_images_per_s=loop.trained / loop.train_seconds if loop.train_seconds > 0 else float("nan"),
            n_train=len(train_idx),
            n_val=len(val_idx),
        )


class _Loop:
    """One training run's mutable state: optimiser, schedule, history, best weights, timing."""

    def __init__(
        self,
        trainer: Trainer,
        net: Network,
        train: CnnTrainConfig,
        augment: AugmentConfig,
        device: torch.device,
        precision: str,
        seed: int,
        fingerprint: dict[str, Any],
    ) -> None:
        self.trainer, self.net, self.train, self.augment = trainer, net, train, augment
        self.device, self.precision, self.seed, self.fingerprint = device, precision, seed, fingerprint
        self.layout = torch.channels_last if precision == "bf16" else torch.contiguous_format
        self.opt = make_optimizer(net.parameters(), train)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=train.label_smoothing)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"acc": -1.0, "epoch": 0, "state": None}
        self.start_epoch = 0
        self.train_seconds, self.trained = 0.0, 0

    def run(self, x: np.ndarray, y: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray) -> None:
        train, trainer, net = self.train, self.trainer, self.net
        x_all = torch.from_numpy(np.ascontiguousarray(x))
        y_all = torch.from_numpy(y.astype(np.int64))
        x_tr, y_tr = x_all[train_idx], y_all[train_idx]
        x_va, y_va = (x_all[val_idx], y_all[val_idx]) if len(val_idx) else (None, None)
        bs = min(train.batch_size, len(x_tr))
        n_steps = len(x_tr) // bs + (1 if len(x_tr) % bs > 1 else 0)
        self.sched = make_scheduler(self.opt, train, n_steps)
        if trainer.resume:
            self._restore()
        bar = trainer.progress.task("train-cnn", total=train.epochs * n_steps)
        if self.start_epoch:
            bar.advance(self.start_epoch * n_steps, epoch=self.start_epoch, **_bar_fields(self.history[-1]))
        epoch = self.start_epoch
        while epoch < train.epochs and not self._stopped_early():
            record = self._epoch(epoch, x_tr, y_tr, bs, n_steps, bar)
            if x_va is not None:
                record["val_loss"], record["val_acc"] = evaluate(net, x_va, y_va, train.eval_batch_size, self.device)
                score = record["val_acc"]
            else:
                score = float(epoch)  # no validation: the last epoch is the best
            self.history.append(record)
            epoch += 1
            if score > self.best["acc"] or not train.restore_best:
                self.best = {"acc": score, "epoch": epoch, "state": cpu_state(net)}
            if trainer.state_path is not None:
                self._save(epoch)
            bar.advance(0, epoch=epoch, **_bar_fields(record))
        bar.close()
        if self.best["state"] is not None:
            net.load_state_dict(self.best["state"])
        net.eval()

    def _epoch(
        self, epoch: int, x_tr: torch.Tensor, y_tr: torch.Tensor, bs: int, n_steps: int, bar: Any
    ) -> dict[str, Any]:
        net, opt, augment, device, layout = self.net, self.opt, self.augment, self.device, self.layout
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        torch.manual_seed(self.seed * 1_000_003 + epoch + 500_009)
        net.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        tick = time.perf_counter()
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.int64)
        seen = 0
        lr = opt.param_groups[0]["lr"]
        for step in range(n_steps):
            idx = perm[step * bs : (step + 1) * bs]
            xb, yb = x_tr[idx], y_tr[idx]
            if augment.flip or augment.shift or augment.erase:
                xb = augment_batch(xb, augment, gen)
            xb = xb.to(device, memory_format=layout, non_blocking=True)
            yb = yb.to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                out = net(xb)
            out = out.float()
            loss = self.loss_fn(out, yb)
            loss.backward()
            opt.step()
            self.sched.step()
            with torch.no_grad():
                loss_sum += loss.detach().double().cpu() * len(yb)
                correct += (out.argmax(1) == yb).sum().cpu()
            seen += len(yb)
            if (step + 1) % 25 == 0 or step + 1 == n_steps:
                done = 25 if (step + 1) % 25 == 0 else (step + 1) % 25
                bar.advance(done, epoch=epoch + 1, loss=float(loss_sum) / seen, acc=float(correct) / seen)
        seconds = time.perf_counter() - tick
        if not math.isfinite(float(loss_sum)) or not all(torch.isfinite(p).all() for p in net.parameters()):
            raise ValueError(
                f"training diverged in epoch {epoch + 1} (the loss or the weights became NaN or infinite) "
                f"with train.lr={self.train.lr} and train.weight_decay={self.train.weight_decay}; lower train.lr "
                "(or train.weight_decay; the previous model, if any, is kept)"
            )
        self.train_seconds += seconds
        self.trained += seen
        return {
            "epoch": epoch + 1,
            "train_loss": float(loss_sum) / seen,
            "train_acc": int(correct) / seen,
            "lr": float(lr),
            "seconds": round(seconds, 3),
            "images_per_s": round(seen / seconds, 1) if seconds > 0 else None,
        }

    def _stopped_early(self) -> bool:
        patience = self.train.early_stopping
        if patience is None or not self.history or "val_acc" not in self.history[-1]:
            return False
        return len(self.history) - int(self.best["epoch"]) >= patience

    def _save(self, epoch: int) -> None:
        assert self.trainer.state_path is not None
        write_state(
            self.trainer.state_path,
            {
                "fingerprint": self.fingerprint,
                "epoch": epoch,
                "model": cpu_state(self.net),
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(),
                "history": self.history,
                "best_acc": self.best["acc"],
                "best_epoch": self.best["epoch"],
                "best_model": self.best["state"],
                "train_seconds": self.train_seconds,
                "trained": self.trained,
            },
        )

    def _restore(self) -> None:
        assert self.trainer.state_path is not None
        state = read_state(self.trainer.state_path, self.fingerprint)
        self.net.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.history = list(state["history"])
        self.best = {"acc": float(state["best_acc"]), "epoch": int(state["best_epoch"]), "state": state["best_model"]}
        self.start_epoch = int(state["epoch"])
        self.train_seconds, self.trained = float(state["train_seconds"]), int(state["trained"])


def _bar_fields(record: dict[str, Any]) -> dict[str, float]:
    fields = {"loss": record["train_loss"], "acc": record["train_acc"]}
    if "val_acc" in record:
        fields.update(val_loss=record["val_loss"], val_acc=record["val_acc"])
    return fields


def _split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n_val = round(len(y) * fraction)
    if n_val < 1 or len(y) - n_val < 2:
        return np.arange(len(y)), np.arange(0)
    val = stratified_indices(y, n_val, seed + 7)
    mask = np.ones(len(y), bool)
    mask[val] = False
    return np.flatnonzero(mask), val
