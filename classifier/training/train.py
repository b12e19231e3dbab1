"""The trainer: fine-tunes a :class:`~flagstream.classifier.bases.encoder.MultiLabelEncoder` on (text, targets, weight).

Kept apart from the model (``transformer.py``) and from evaluation (``evaluate.py``): it knows about
batches, masked multi-label loss, the schedule, seeds and checkpoints, nothing about sources or
metrics. CPU-friendly: bf16 autocast (AMX), length-bucketed batches to cut padding, a step budget
that fits the 45-minute default run, and a checkpoint every ``checkpoint_every`` steps that
``resume=True`` continues from exactly (same batch order, optimizer and scheduler state).
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from flagstream.classifier.manifest import DEFAULT_MAX_LENGTH

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    max_length: int = DEFAULT_MAX_LENGTH
    batch_size: int = 32
    lr: float = 8e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    # LP-FT (Kumar et al., 2022): the first ``probe_ratio`` of the steps train the head alone (encoder lr 0), so
    # the full fine-tune starts from a fitted head instead of a random one whose large early gradients distort
    # the pretrained features; those features are what a never-seen source is scored with.
    probe_ratio: float = 0.1
    max_steps: int = 4000  # 2.2 epochs of the training split: 20-21 min on 2 idle cores (the shipped 1.3.0 and 1.4.0 runs)
    epochs: float = 1.0  # used when max_steps == 0
    seed: int = 13
    checkpoint_every: int = 150
    max_pos_weight: float = 4.0
    bf16: bool = True  # bf16 autocast where the CPU runs it natively (AMX / AVX512-BF16); fp32 elsewhere
    time_budget_s: float = 0.0  # 0 = no budget; else stop (and still save) after this many seconds
    threads: int = 0
    log_every: int = 25  # a progress line (step, loss, s/step, ETA) in the log every N steps, for unattended runs

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled, then sorted by length inside chunks of 50 batches: little padding, still random."""
    rng = np.random.default_rng(seed + 1000 * epoch)
    order = rng.permutation(len(lengths))
    chunk = batch_size * 50
    batches: list[list[int]] = []
    for s in range(0, len(order), chunk):
        part = sorted(order[s:s + chunk].tolist(), key=lambda i: lengths[i])
        batches.extend(part[b:b + batch_size] for b in range(0, len(part), batch_size))
    perm = rng.permutation(len(batches))
    return [batches[i] for i in perm]


def lr_lambdas(total: int, warmup_ratio: float, probe_steps: int) -> list[Any]:
    """Per param group (encoder decay, encoder no-decay, head): linear warm-up then linear decay to 0.

    The encoder's schedule starts after ``probe_steps`` (LP-FT: the head is fitted first); the head's
    spans the whole run. Plain functions of the step, so a resumed scheduler is exact.
    """
    probe = min(max(0, probe_steps), max(0, total - 1))

    def ramp(start: int) -> Any:
        span = max(1, total - start)
        warm = max(1, int(span * warmup_ratio))

        def f(s: int) -> float:
            s -= start
            if s < 0:
                return 0.0
            return (s + 1) / warm if s < warm else max(0.0, (span - s) / max(1, span - warm))
        return f

    body, head = ramp(probe), ramp(0)
    return [body, body, head]


def pos_weights(targets: np.ndarray, weights: np.ndarray, cap: float) -> torch.Tensor:
    """sqrt(neg/pos) per label (weighted), capped: recall on rare positives without wild overconfidence."""
    out = []
    for j in range(targets.shape[1]):
        known = ~np.isnan(targets[:, j])
        pos = float((weights[known] * (targets[known, j] == 1)).sum())
        neg = float((weights[known] * (targets[known, j] == 0)).sum())
        out.append(min(cap, max(1.0, math.sqrt(neg / pos))) if pos > 0 else 1.0)
    return torch.tensor(out, dtype=torch.float32)


def masked_bce(logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor, pos_weight: torch.Tensor) -> torch.Tensor:
    """BCE over known labels only (NaN = the source says nothing), weighted per row."""
    known = ~torch.isnan(y)
    yz = torch.where(known, y, torch.zeros_like(y))
    loss = nn.functional.binary_cross_entropy_with_logits(logits, yz, pos_weight=pos_weight, reduction="none")
    mask = known.float() * w.unsqueeze(1)
    return (loss * mask).sum() / mask.sum().clamp(min=1.0)


class Trainer:
    def __init__(self, model: nn.Module, tokenizer: Any, config: TrainConfig, run_dir: Path | None = None) -> None:
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.run_dir = Path(run_dir) if run_dir else None

    def _ckpt_path(self) -> Path | None:
        return self.run_dir / "checkpoint.safetensors" if self.run_dir else None

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        names = {n for n, p in self.model.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.model.state_dict().items() if k in names}

    def fit(self, texts: Sequence[str], targets: np.ndarray, weights: np.ndarray | None = None,
            resume: bool = False, progress: bool = True) -> dict[str, Any]:
        """Train in place; returns a summary (steps, seconds, final loss, whether it resumed)."""
        cfg = self.config
        seed_everything(cfg.seed)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        n = len(texts)
        weights = np.ones(n, dtype=np.float32) if weights is None else np.asarray(weights, dtype=np.float32)
        enc = self.tokenizer(list(texts), truncation=True, max_length=cfg.max_length)
        ids = enc["input_ids"]
        lengths = [len(x) for x in ids]
        steps_per_epoch = math.ceil(n / cfg.batch_size)
        total = cfg.max_steps or max(1, int(steps_per_epoch * cfg.epochs))
        pw = pos_weights(targets, weights, cfg.max_pos_weight)

        head_params = list(self.model.head.parameters())
        head_ids = {id(p) for p in head_params}
        body = [p for p in self.model.parameters() if p.requires_grad and id(p) not in head_ids]
        decay = [p for p in body if p.ndim >= 2]
        no_decay = [p for p in body if p.ndim < 2]
        opt = torch.optim.AdamW([
            {"params": decay, "weight_decay": cfg.weight_decay, "lr": cfg.lr},
            {"params": no_decay, "weight_decay": 0.0, "lr": cfg.lr},
            {"params": head_params, "weight_decay": 0.0, "lr": cfg.head_lr},
        ])
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambdas(total, cfg.warmup_ratio, int(total * cfg.probe_ratio)))

        step = 0
        ckpt = self._ckpt_path()
        resumed = False
        if resume and ckpt is not None and ckpt.exists():
            state = load_checkpoint(ckpt)
            self.model.load_state_dict(state["model"], strict=False)
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            step = int(state["step"])
            torch.set_rng_state(state["torch_rng"])
            resumed = True
            log.info("resumed from checkpoint", extra={"step": step})

        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover
            tqdm = None
        bar = tqdm(total=total, initial=step, desc="train", unit="step", disable=not progress) if tqdm else None
        from flagstream.classifier.inference.runtime import native_bf16

        bf16 = cfg.bf16 and native_bf16()  # emulated bf16 autocast is ~10x slower than fp32 (measured on AVX2)
        self.model.train()
        start_step = step
        t0 = time.monotonic()
        ema = None
        epoch_batches: dict[int, list[list[int]]] = {}
        stopped_early = False
        while step < total:
            epoch, pos = divmod(step, steps_per_epoch)
            if epoch not in epoch_batches:
                epoch_batches = {epoch: make_batches(lengths, cfg.batch_size, cfg.seed, epoch)}
            batch = epoch_batches[epoch][pos]
            width = -(-max(lengths[i] for i in batch) // 16) * 16  # few distinct shapes: oneDNN reuses kernels
            input_ids = torch.zeros((len(batch), width), dtype=torch.long)
            attn = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):
                input_ids[r, : lengths[i]] = torch.tensor(ids[i])
                attn[r, : lengths[i]] = 1
            y = torch.from_numpy(targets[batch].astype(np.float32))
            w = torch.from_numpy(weights[batch])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = self.model(input_ids=input_ids, attention_mask=attn).logits
            loss = masked_bce(logits.float(), y, w, pw)
            loss.backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            lv = float(loss.detach())
            ema = lv if ema is None else 0.98 * ema + 0.02 * lv
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{ema:.4f}")
            if cfg.log_every and (step % cfg.log_every == 0 or step == total):
                self._log_progress(step, total, ema, time.monotonic() - t0, step - start_step)
            if ckpt is not None and (step % cfg.checkpoint_every == 0 or step == total):
                self._save_checkpoint(ckpt, opt, sched, step)
            if cfg.time_budget_s and time.monotonic() - t0 > cfg.time_budget_s and step < total:
                stopped_early = True
                if ckpt is not None:
                    self._save_checkpoint(ckpt, opt, sched, step)
                log.warning("time budget reached; stopping early", extra={"step": step, "total": total})
                break
        if bar is not None:
            bar.close()
        self.model.eval()
        return {"steps": step, "total_steps": total, "seconds": round(time.monotonic() - t0, 1), "final_loss": ema,
                "resumed": resumed, "stopped_early": stopped_early, "pos_weight": pw.tolist(), "rows": n,
                "precision": "bf16 autocast" if bf16 else "fp32"}

    @staticmethod
    def _log_progress(step: int, total: int, loss: float | None, seconds: float, done: int) -> None:
        """One plain-text progress line (the values in the message itself, so any log format shows them): a run
        redirected to a file has no progress bar to look at."""
        per = seconds / max(1, done)
        log.info("train progress: step %d/%d, loss %.4f, %.2f s/step, ETA %.1f min", step, total,
                 float("nan") if loss is None else loss, per, per * (total - step) / 60)

    def _save_checkpoint(self, path: Path, opt: torch.optim.Optimizer, sched: Any, step: int) -> None:
        save_checkpoint(path, self._trainable_state(), opt.state_dict(), sched.state_dict(), step, torch.get_rng_state())


# Checkpoints are safetensors like every other weight file of the project (never pickle): tensors under
# "model." / "optim.<param>.<key>" / "rng", everything else (step, param groups, scheduler) as JSON metadata.

def save_checkpoint(path: Path, model_state: dict[str, torch.Tensor], optim_state: dict[str, Any],
                    sched_state: dict[str, Any], step: int, rng: torch.Tensor) -> None:
    import json

    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v.detach().contiguous() for k, v in model_state.items()}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in optim_state["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"optim.{pid}.{key}"] = val.detach().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = val
    tensors["rng"] = rng.contiguous()
    meta = {"step": str(step), "param_groups": json.dumps(optim_state["param_groups"]),
            "optim_scalars": json.dumps(scalars), "scheduler": json.dumps(sched_state, default=_no_callables)}
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)


def _no_callables(obj: Any) -> Any:
    return None  # LambdaLR keeps its lambdas out of state_dict; anything else unserialisable is dropped


def load_checkpoint(path: Path) -> dict[str, Any]:
    import json

    from safetensors import safe_open

    model: dict[str, torch.Tensor] = {}
    optim: dict[int, dict[str, Any]] = {}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        for name in f.keys():
            t = f.get_tensor(name)
            if name.startswith("model."):
                model[name[len("model."):]] = t
            elif name.startswith("optim."):
                _, pid, key = name.split(".", 2)
                optim.setdefault(int(pid), {})[key] = t
            elif name == "rng":
                rng = t
    for pid, vals in json.loads(meta["optim_scalars"]).items():
        optim.setdefault(int(pid), {}).update(vals)
    return {"model": model, "optimizer": {"state": optim, "param_groups": json.loads(meta["param_groups"])},
            "scheduler": json.loads(meta["scheduler"]), "step": int(meta["step"]), "torch_rng": rng}
