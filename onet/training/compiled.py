"""`train.compile`: the training step's forward and backward through torch.compile.

Why: the eager step of the thesis models is well over a thousand operator
calls, each dispatched from Python (the image model's forward and backward:
about 1,700, some 500 of them computing kernels, plus the optimizer's; counted
with torch.profiler on a CPU), and on a GPU the step looks bound by issuing them
rather than by arithmetic (the image model at batch 64 on an H200: 26 ms per
step against a FLOP bound of 2.9 ms, and bf16 autocast, which halves the
matmul time, saved only a quarter of it). torch.compile fuses the
elementwise work around the matmuls (batch norm, the CBN affine, ReLU) into
fewer kernels, and in one CUDA process (mode "reduce-overhead") replays the
whole forward + backward as a CUDA graph, one launch a step. Under torchrun the
default mode (no CUDA graphs: DistributedDataParallel's all-reduces run between
the graph's pieces).

Under compilation the model runs its plain modules: the CPU-only fused decoder
passes and small-grid convolutions (ctypes calls, custom autograd functions) are
what fusion would do and cannot be traced. On a CPU those eager passes are the
faster: the compiled step of the thesis models ran at 0.64-0.80x the eager one's
speed on 2 cores (README, "Compiling the training step"), so `auto` compiles on
CUDA only; `true` compiles on a CPU too.

The first step decides: if compiling it fails (no C++ compiler for inductor,
an operation it cannot lower), the module's buffers (batch-norm statistics)
are put back as they were before it, its gradients dropped, and training goes
on eagerly from the same batch, with the reason logged once. Not under
torchrun: a backward pass that stopped part-way may have started some of its
gradient all-reduces, and a second one would pair up with them; there the
error stops the run (train.compile=false avoids it).
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn

from onet.utils.batch import describe


def resolve_compile(value: bool | str, dev: torch.device) -> tuple[bool, str]:
    """(compile or not, why) for train.compile=value (true, false or "auto") on `dev`."""
    if value == "auto":
        on = dev.type == "cuda"
        return on, ("train.compile=auto: on for CUDA" if on else
                    f"train.compile=auto: off on {dev.type} (onet's fused CPU passes already fuse the decoder)")
    if not isinstance(value, bool):
        raise ValueError(f"train.compile must be true, false or auto, got {value!r}")
    return value, f"train.compile={str(value).lower()}"


class LossModule(nn.Module):
    """The model's training loss as forward(batch) -> (loss, parts): what DistributedDataParallel
    wraps (so it synchronises the gradients) and what torch.compile traces, loss included."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict):
        return self.model.compute_loss(batch)


class TrainingStep:
    """One training step's forward and backward: `step(batch) -> (loss, parts)`.

    The loss module runs under `autocast()` (a context manager factory: the trainer's
    precision) and the backward pass goes through `scaler` when given (fp16's GradScaler).
    Without `compile` the module is called as it is; with it, through torch.compile (see the
    module docstring for the mode and for what happens when the first step fails to compile).
    """

    def __init__(self, module: nn.Module, dev: torch.device, *, compile: bool, distributed: bool = False,
                 autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                 scaler: torch.amp.GradScaler | None = None, log: Callable[[str], None] | None = print):
        self.module = module
        self.autocast, self.scaler = autocast, scaler
        self.log = log
        self.fn: nn.Module | Callable = module
        self.cuda_graphs = False
        self.trial = False  # the first compiled step is still to come
        self.failure: str | None = None
        self.distributed = distributed
        if compile:
            self.cuda_graphs = dev.type == "cuda" and not distributed
            self.fn = torch.compile(module, mode="reduce-overhead" if self.cuda_graphs else None)
            self.trial = True

    @property
    def compiled(self) -> bool:
        """Whether steps run compiled (after a failed first step: False)."""
        return self.fn is not self.module

    def describe(self) -> str:
        if not self.compiled:
            return "eager" if self.failure is None else f"eager (torch.compile failed: {self.failure})"
        mode = "mode reduce-overhead: CUDA graphs" if self.cuda_graphs else "default mode"
        return f"torch.compile ({mode}); the first step compiles, which takes a minute or more"

    def _run(self, batch) -> tuple:
        with self.autocast():
            loss, parts = self.fn(batch)
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()
        return loss, parts

    def __call__(self, batch) -> tuple:
        if self.cuda_graphs:
            # the last step's outputs (loss, parts) are no longer read: their graph memory may be reused
            torch.compiler.cudagraph_mark_step_begin()
        if not self.trial:
            return self._run(batch)
        self.trial = False
        before = [b.detach().clone() for b in self.module.buffers()]
        try:
            return self._run(batch)  # inductor compiles the backward graph on its first use
        except Exception as exc:  # eagerly below: a fault of the step itself raises there again
            self.failure = describe(exc)[:300]
            if self.distributed:
                raise RuntimeError(f"train.compile: torch.compile failed on the first step under torchrun "
                                   f"({self.failure}); train with train.compile=false") from exc
        with torch.no_grad():
            for buffer, saved in zip(self.module.buffers(), before):
                buffer.copy_(saved)
        for p in self.module.parameters():
            p.grad = None
        self.fn, self.cuda_graphs = self.module, False
        if self.log is not None:
            self.log(f"train.compile: torch.compile failed on the first step ({self.failure}); training eagerly")
        return self._run(batch)
