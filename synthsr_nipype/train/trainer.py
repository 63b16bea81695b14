"""The training loop: synthetic batches from label maps -> U-Net -> L1/L2 against the synthetic T1.

Reproducibility: the network is initialised from ``seed``; the batch of step ``s`` is ``generator.sample(n,
seed=step_seed(seed, s))`` and nothing else draws random numbers, so resuming from a checkpoint (weights,
optimizer state, step) continues exactly as the uninterrupted run would (bit-identical on the CPU).
Validation uses its own generator on the held-out label maps with the fixed seeds ``validation_seed + i``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..atomic import atomic_target
from ..errors import SynthSRError
from ..model.card import read_card_model, spec_from_dict
from ..model.device import pick_device
from ..synth import GeneratorConfig, SynthGenerator
from .config import ConfigError, TrainConfig, split_label_maps
from .unet import TrainableUNet, load_inference_weights

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
CHECKPOINT_GLOB = "checkpoint-*.pt"
KEEP_CHECKPOINTS = 3  # step checkpoints kept besides best.pt
LOG_COLUMNS = ("step", "loss", "val_loss", "val_t1_loss", "val_t1_linear", "steps_per_s", "elapsed_s")


def step_seed(seed: int, step: int) -> int:
    """Seed of the batch of ``step``: independent streams for every (seed, step) pair."""
    return int(np.random.SeedSequence([int(seed), int(step)]).generate_state(1, dtype=np.uint32)[0])


def t1_inputs(config: GeneratorConfig) -> GeneratorConfig:
    """``config`` with every input channel drawn from the target's contrast prior (same class table)."""
    channels = tuple(dataclasses.replace(c, contrast=config.target.contrast, classes=config.target.classes)
                     for c in config.channels)
    return dataclasses.replace(config, channels=channels)


def linear_fit(inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per sample, the least-squares fit ``target ~ sum_c a_c * input_c + b`` evaluated on the inputs."""
    fitted = []
    for x, y in zip(inputs, target):
        design = torch.cat([x.reshape(x.shape[0], -1), torch.ones(1, x[0].numel(), device=x.device)]).T.double()
        coef = torch.linalg.lstsq(design, y.reshape(-1, 1).double()).solution
        fitted.append((design @ coef).reshape(y.shape).to(y.dtype))
    return torch.stack(fitted)


def initial_seed(seed: int, index: int) -> int:
    """Seeds of the samples that measure ``initial_weights``' BatchNorm statistics (apart from every step's)."""
    return int(np.random.SeedSequence([int(seed), 2, int(index)]).generate_state(1, dtype=np.uint32)[0])


@dataclass
class StepResult:
    step: int
    loss: float
    val_loss: float | None = None
    #: on T1-contrast validation samples: the network's loss and that of the linear baseline
    val_t1: tuple[float, float] | None = None
    checkpoint: Path | None = None


@dataclass
class TrainState:
    """What a checkpoint holds besides the weights: where the run is and how validation went."""

    step: int = 0
    best_val_loss: float = math.inf
    best_step: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """One training run; ``run_dir`` receives checkpoints, ``log.csv`` and (when installed) TensorBoard events."""

    def __init__(self, config: TrainConfig, run_dir: str | os.PathLike[str] | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir if run_dir is not None else config.output)
        self.device = pick_device(config.device)
        if config.threads:
            torch.set_num_threads(int(config.threads))
        self.train_maps, self.val_maps = split_label_maps(config)
        # the augmentation's tensors live here; its random numbers are drawn on the CPU either way
        # (synth.random), so a batch stays a function of its seed
        self.generator_device = self.device if config.generator_device == "device" else torch.device("cpu")
        try:
            self.generator_config = GeneratorConfig.from_dict(config.generator)
            self.generator = SynthGenerator(label_maps=self.train_maps, config=self.generator_config,
                                            device=self.generator_device)
            self.val_generator = (SynthGenerator(label_maps=self.val_maps, config=self.generator_config,
                                                 device=self.generator_device) if self.val_maps else None)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"generator: {exc}") from None
        self.t1_generator = None
        if self.val_maps and self.generator_config.target.contrast != "uniform":
            try:
                self.t1_generator = SynthGenerator(label_maps=self.val_maps, device=self.generator_device,
                                                   config=t1_inputs(self.generator_config))
            except (ValueError, OSError) as exc:
                raise ConfigError(f"generator (T1-contrast validation): {exc}") from None
        self._stage_generators: dict[str, SynthGenerator] = {}
        self.label_map_hashes = {
            "training": _hashes(self.generator),
            "validation": _hashes(self.val_generator) if self.val_generator is not None else []}
        self.spec = config.network.spec(len(self.generator_config.channels))
        multiple = 2 ** (self.spec.n_levels - 1)
        for step in [0, *(int(st["from_step"]) for st in config.stages)]:
            crop = self.generator_at(step).config.crop
            if any(c % multiple for c in crop):
                raise ConfigError(f"generator crop {list(crop)} (from step {step}) is not a multiple of {multiple}, "
                                  f"which a {self.spec.n_levels}-level U-Net needs")
        torch.manual_seed(config.seed)
        self.net = TrainableUNet(self.spec).to(self.device).train()
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.learning_rate)
        self.state = TrainState()

    # ------------------------------------------------------------------ steps
    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.config.loss == "l2":
            return F.mse_loss(prediction.float(), target)
        return F.l1_loss(prediction.float(), target)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.config.bf16 and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self) -> float:
        """One optimiser step on the batch of the next step number; returns its loss."""
        step = self.state.step
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.learning_rate_at(step)
        batch = self.generator_at(step).sample(self.config.batch_size, seed=step_seed(self.config.seed, step))
        inputs = batch.inputs.to(self.device, non_blocking=True)
        target = batch.target.to(self.device, non_blocking=True)
        with self._autocast():
            loss = self.loss(self.net(inputs), target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.state.step = step + 1
        return float(loss.detach())

    def generator_at(self, step: int) -> SynthGenerator:
        """The training generator of ``step`` (``config.stages`` may change it from a step on)."""
        section = self.config.generator_at(step)
        if section == self.config.generator:
            return self.generator
        key = repr(sorted(section.items()))
        if key not in self._stage_generators:
            try:
                self._stage_generators[key] = SynthGenerator(label_maps=self.train_maps,
                                                             device=self.generator_device,
                                                             config=GeneratorConfig.from_dict(section))
            except (ValueError, OSError) as exc:
                raise ConfigError(f"stages: generator at step {step}: {exc}") from None
        return self._stage_generators[key]

    @torch.no_grad()
    def validate(self) -> float | None:
        """Mean loss over the fixed validation batches (eval mode: BatchNorm running statistics)."""
        if self.val_generator is None:
            return None
        self.net.eval()
        try:
            losses = []
            for i in range(self.config.validation_batches):
                batch = self.val_generator.sample(self.config.batch_size, seed=self.config.validation_seed + i)
                with self._autocast():
                    losses.append(float(self.loss(self.net(batch.inputs.to(self.device)),
                                                  batch.target.to(self.device))))
            return float(np.mean(losses))
        finally:
            self.net.train()

    @torch.no_grad()
    def validate_t1(self) -> tuple[float, float] | None:
        """On validation samples whose inputs have the target's contrast (T1 in, T1 out): the network's mean
        loss and that of the least-squares linear rescaling of the input, the baseline a network must beat
        (a model below it has learnt less than "copy the input and fix its intensities")."""
        if self.t1_generator is None:
            return None
        self.net.eval()
        try:
            ours, linear = [], []
            for i in range(self.config.validation_batches):
                batch = self.t1_generator.sample(self.config.batch_size, seed=self.config.validation_seed + i)
                inputs, target = batch.inputs.to(self.device), batch.target.to(self.device)
                with self._autocast():
                    ours.append(float(self.loss(self.net(inputs), target)))
                linear.append(float(self.loss(linear_fit(inputs, target), target)))
            return float(np.mean(ours)), float(np.mean(linear))
        finally:
            self.net.train()

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_payload(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.state.step,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "config": self.config.as_dict(),
            "generator": self.generator_config.as_dict(),
            "generator_now": self.generator_at(max(self.state.step - 1, 0)).config.as_dict(),
            "spec": self.spec.__dict__,
            "label_maps": self.label_map_hashes,
            "best_val_loss": self.state.best_val_loss,
            "best_step": self.state.best_step,
            "history": self.state.history,
        }

    def save_checkpoint(self, best: bool = False) -> Path:
        """``checkpoint-<step>.pt`` (the last few kept); with ``best``, ``best.pt`` as well."""
        folder = self.run_dir / "checkpoints"
        payload = self.checkpoint_payload()
        path = _save_atomic(payload, folder / f"checkpoint-{self.state.step:07d}.pt")
        if best:
            _save_atomic(payload, folder / "best.pt")
        for old in sorted(folder.glob(CHECKPOINT_GLOB))[:-KEEP_CHECKPOINTS]:
            old.unlink()
        return path

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Continue from ``path``: weights, optimizer state, step and validation history."""
        payload = load_checkpoint(path)
        if spec_from_dict(payload["spec"]) != self.spec:
            raise ConfigError(f"{path}: checkpoint network {payload['spec']} differs from the config's")
        self.net.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.state = TrainState(step=int(payload["step"]), best_val_loss=float(payload["best_val_loss"]),
                                best_step=payload["best_step"], history=list(payload["history"]))

    def latest_checkpoint(self) -> Path | None:
        found = sorted((self.run_dir / "checkpoints").glob(CHECKPOINT_GLOB))
        return found[-1] if found else None

    def start_from_weights(self, path: str | os.PathLike[str]) -> int:
        """Weights of an exported model of the same architecture as step 0's (see ``load_inference_weights``);
        its BatchNorm statistics are measured on training samples of seeds no training step draws."""
        try:
            spec, state, _card = read_card_model(path)
        except (OSError, ValueError, SynthSRError) as exc:
            raise ConfigError(f"initial_weights: {path}: {exc}") from None
        if spec != self.spec:
            raise ConfigError(f"initial_weights: {path}: its network ({spec.n_levels} levels, "
                              f"{spec.down_widths[0][-1]} features) differs from the config's "
                              f"({self.spec.n_levels} levels, {self.spec.down_widths[0][-1]} features)")
        generator = self.generator_at(0)
        batches = (generator.sample(1, seed=initial_seed(self.config.seed, i)).inputs.to(self.device)
                   for i in range(max(1, int(self.config.initial_batches))))
        used = load_inference_weights(self.net, {k: v.to(self.device) for k, v in state.items()}, batches)
        self.net.train()
        log.info("started from %s (BatchNorm statistics over %d samples)", path, used)
        return used

    # ------------------------------------------------------------------ the loop
    def fit(self, steps: int | None = None, progress: bool = True,
            on_step: Callable[[StepResult], None] | None = None,
            time_budget_s: float | None = None) -> TrainState:
        """Train until ``steps`` (default: the config's) steps have been made in total, or, with
        ``time_budget_s``, until that many seconds have passed: the step under way finishes, is validated and
        checkpointed as a last step would be, and the run ends (``state.step`` below ``steps``)."""
        total = int(steps if steps is not None else self.config.steps)
        if self.state.step == 0 and self.config.initial_weights:
            self.start_from_weights(self.config.initial_weights)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        logger = RunLog(self.run_dir, resume_step=self.state.step)
        bar = _progress(total, self.state.step, progress)
        start = time.perf_counter()
        done_here = 0
        stop = _InterruptAfterStep()
        try:
            while self.state.step < total:
                with stop:
                    loss = self.train_step()
                done_here += 1
                if not math.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss} at step {self.state.step}; lower learning_rate")
                result = StepResult(self.state.step, loss)
                elapsed = time.perf_counter() - start
                rate = done_here / elapsed if elapsed > 0 else 0.0
                out_of_time = time_budget_s is not None and elapsed >= time_budget_s
                at_end = self.state.step == total or out_of_time
                if self.val_generator is not None and (self.state.step % self.config.validate_every == 0 or at_end):
                    result.val_loss = self.validate()
                    result.val_t1 = self.validate_t1()
                best = result.val_loss is not None and result.val_loss < self.state.best_val_loss
                if best:
                    self.state.best_val_loss, self.state.best_step = result.val_loss, self.state.step
                row = {"step": self.state.step, "loss": loss, "val_loss": result.val_loss,
                       "val_t1_loss": result.val_t1[0] if result.val_t1 else None,
                       "val_t1_linear": result.val_t1[1] if result.val_t1 else None,
                       "steps_per_s": rate, "elapsed_s": elapsed}
                if result.val_loss is not None:
                    self.state.history.append({"step": self.state.step, "val_loss": result.val_loss})
                if self.state.step % self.config.checkpoint_every == 0 or at_end:
                    result.checkpoint = self.save_checkpoint(best=best)
                elif best:
                    _save_atomic(self.checkpoint_payload(), self.run_dir / "checkpoints" / "best.pt")
                logger.write(row)
                if bar is not None:
                    bar.update(1)
                    postfix = {"loss": f"{loss:.4f}", "steps/s": f"{rate:.3f}"}
                    if self.state.best_step is not None:
                        postfix["val"] = f"{self.state.best_val_loss:.4f}@{self.state.best_step}"
                    bar.set_postfix(postfix)
                if on_step is not None:
                    on_step(result)
                if stop.requested:
                    raise KeyboardInterrupt
                if out_of_time:
                    log.info("time budget of %.0f s spent at step %d", time_budget_s, self.state.step)
                    break
        finally:
            logger.close()
            if bar is not None:
                bar.close()
        return self.state


class _InterruptAfterStep:
    """Inside the block, Ctrl-C (SIGINT) only asks to stop: the step finishes, so the weights, Adam's moments and
    the step counter a checkpoint then records belong together.  Outside the main thread: no change."""

    def __init__(self) -> None:
        self.requested = False

    def __enter__(self) -> "_InterruptAfterStep":
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._ask)
        return self

    def _ask(self, signum, frame) -> None:  # noqa: ARG002 - signal handler API
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise ConfigError(f"{path}: cannot read checkpoint ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path}: not a synthsr-train checkpoint (format {CHECKPOINT_FORMAT})")
    return payload


def _hashes(generator: SynthGenerator) -> list[dict[str, str]]:
    return [{"file": name, "sha256": sha} for name, sha in generator.label_hashes.items()]


def _save_atomic(payload: dict[str, Any], path: Path) -> Path:
    with atomic_target(path, keep_suffix=False) as tmp:
        torch.save(payload, tmp)
    return path


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, mininterval=1.0)


class RunLog:
    """``log.csv`` (rows after the resumed step are dropped, so a resumed run's log reads as one run) and
    TensorBoard scalars when ``torch.utils.tensorboard`` can be imported."""

    def __init__(self, run_dir: Path, resume_step: int = 0) -> None:
        self.path = run_dir / "log.csv"
        rows = []
        if self.path.is_file():
            with open(self.path, newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resume_step]
        self._handle = open(self.path, "w", newline="")  # noqa: SIM115  (open for the whole run; closed by close())
        self._csv = csv.DictWriter(self._handle, fieldnames=LOG_COLUMNS)
        self._csv.writeheader()
        self._csv.writerows(rows)
        self._handle.flush()
        self._tensorboard = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            pass
        else:
            self._tensorboard = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step + 1)

    def write(self, row: dict[str, Any]) -> None:
        self._csv.writerow({k: ("" if v is None else v) for k, v in row.items()})
        self._handle.flush()
        if self._tensorboard is not None:
            self._tensorboard.add_scalar("loss/train", row["loss"], row["step"])
            if row.get("val_loss") is not None:
                self._tensorboard.add_scalar("loss/validation", row["val_loss"], row["step"])
            self._tensorboard.add_scalar("steps_per_s", row["steps_per_s"], row["step"])

    def close(self) -> None:
        self._handle.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
