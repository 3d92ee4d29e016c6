"""The fast path of a generative run's Ray Train workers: bf16 autocast, torch.compile and channels_last.

The run spec's ``perf:`` section (:class:`genlab.specs.PerfSpec`) says which; all are off by default, and then
nothing here touches the algorithm (a run trains exactly as it always has). They are applied in one place, to the
nets a method's ``train_step`` calls (``GenerativeAlgorithm.train_nets``), through the contract's own
``distribute(wrap)``, the hook that already puts DDP around them; methods know nothing of it:

- ``channels_last``: the nets with 4-d weights (conv layers) are converted in place to
  ``torch.channels_last``, and their 4-d float inputs (the image batches) are made channels_last at the net's door.
  Nets without 4-d weights (dense layers) are left as they are. Dropout and noise layers fill NHWC tensors in
  memory order, so they drop or perturb other pixels than on NCHW ones from the same seed (same distribution).
- ``precision: bf16``: each training net's forward runs under ``torch.autocast(device.type, torch.bfloat16)``, and
  its floating outputs come back as fp32, so the losses are computed in fp32 and ``backward`` runs outside autocast.
  Weights, gradients and the optimizers' state stay fp32 (autocast casts copies for its matmuls and convs);
  evaluation, sampling and the EMA use ``nets``, unwrapped, in fp32.
- ``compile``: ``torch.compile`` of the wrapped training net (outermost, around DDP when there are several workers,
  as PyTorch recommends), drawing its random numbers as eager mode does (:data:`COMPILE_OPTIONS`). Evaluation runs
  the nets uncompiled.

A training net becomes ``compile(DDP(FastForward(net)))``, each layer only where asked for. The checkpoint, the
optimizers and the logged models keep using ``nets`` (the same parameters).

:func:`device_problems` says why a device cannot run a setting (one line naming the field and the fix): the
pre-flight asks it about this machine's devices before Ray starts, and :func:`apply` again on each worker (on a
cluster the workers' GPUs are not visible from the driver).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

from genlab.errors import SpecError

if TYPE_CHECKING:
    from genlab.algorithm import GenerativeAlgorithm
    from genlab.specs import PerfSpec


COMPILE_OPTIONS = {"fallback_random": True}
"""Inductor's settings for the training nets: random numbers (noise layers, dropout, a VAE's samples) from torch's own
generator, as in eager mode, so that a compiled run draws the same noise as an uncompiled one from the same seed (and
on a CPU, inductor's own generator made Improved-GAN's digits step 2x slower: docs/performance.md)."""


class FastForward(nn.Module):
    """A training net's forward with its 4-d float inputs made channels_last (``channels_last``) and/or run under
    bf16 autocast on ``autocast`` (a device type), its floating outputs returned as fp32. Holds ``net`` as its one
    submodule: the parameters are the net's own."""

    def __init__(self, net: nn.Module, *, autocast: str | None = None, channels_last: bool = False):
        super().__init__()
        self.net = net
        self.autocast = autocast
        self.channels_last = channels_last

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.channels_last:
            args, kwargs = tree_map(_channels_last, (args, kwargs))
        if self.autocast is None:
            return self.net(*args, **kwargs)
        with torch.autocast(self.autocast, dtype=torch.bfloat16):
            out = self.net(*args, **kwargs)
        return tree_map(_fp32, out)


def _channels_last(t: Any) -> Any:
    if isinstance(t, torch.Tensor) and t.dim() == 4 and t.is_floating_point():
        return t.contiguous(memory_format=torch.channels_last)
    return t


def _fp32(t: Any) -> Any:
    if isinstance(t, torch.Tensor) and t.dtype in (torch.bfloat16, torch.float16):
        return t.float()
    return t


def has_conv_weights(net: nn.Module) -> bool:
    """Whether ``net`` holds 4-d parameters (conv and transposed-conv weights: what channels_last changes)."""
    return any(p.dim() == 4 for p in net.parameters())


def is_default(perf: PerfSpec | None) -> bool:
    return perf is None or (perf.precision == "fp32" and not perf.compile and not perf.channels_last)


def apply(algo: GenerativeAlgorithm, perf: PerfSpec | None, device: torch.device | str,
          ddp: Callable[[nn.Module], nn.Module] | None = None) -> str | None:
    """Put ``perf``'s fast path (and ``ddp``, the DDP wrapper when there are several workers) around ``algo``'s
    training nets, after its data-dependent init or restore. Raises :class:`SpecError` when ``device`` cannot run a
    setting. Returns what it did in a few words (for the worker's log), None when ``perf`` is all off; then only
    ``ddp`` is applied, as before the fast path existed."""
    device = torch.device(device)
    if is_default(perf):
        if ddp is not None:
            algo.distribute(ddp)
        return None
    problems = device_problems(perf, device)
    if problems:
        raise SpecError("\n".join(problems))
    conv = [net for net in algo.nets.values() if has_conv_weights(net)] if perf.channels_last else []
    for net in conv:
        net.to(memory_format=torch.channels_last)
    autocast = device.type if perf.precision == "bf16" else None

    def wrap(net: nn.Module) -> nn.Module:
        to_nhwc = any(net is c for c in conv)
        if autocast is not None or to_nhwc:
            net = FastForward(net, autocast=autocast, channels_last=to_nhwc)
        if ddp is not None:
            net = ddp(net)
        return torch.compile(net, options=COMPILE_OPTIONS) if perf.compile else net

    algo.distribute(wrap)
    names = {id(net): name for name, net in algo.nets.items()}
    done = []
    if autocast is not None:
        done.append(f"bf16 autocast on {device.type} (weights, optimizer state, losses and evaluation in fp32)")
    if perf.channels_last:
        done.append("channels_last: " + (", ".join(names[id(n)] for n in conv) if conv
                                          else "no net has conv weights, nothing converted"))
    if perf.compile:
        done.append("torch.compile: " + ", ".join(algo.nets) + " (the first steps wait for the compilation)")
    return "; ".join(done)


# ------------------------------------------------------------------------------------------- what a device can run


def device_problems(perf: PerfSpec | None, device: torch.device | str) -> list[str]:
    """Why ``device`` (a worker's: ``cpu`` or a CUDA device) cannot run ``perf``'s settings, one line each naming
    the field and the fix; empty when it can."""
    if is_default(perf):
        return []
    device = torch.device(device)
    problems = []
    if perf.precision == "bf16":
        if not torch.amp.is_autocast_available(device.type):
            problems.append(f"perf.precision: bf16 autocast is not available on {device.type} in torch "
                            f"{torch.__version__}; set perf.precision: fp32")
        elif device.type == "cuda" and not cuda_bf16(device):
            name, (major, minor) = torch.cuda.get_device_name(device), torch.cuda.get_device_capability(device)
            problems.append(f"perf.precision: bf16 needs a GPU with bfloat16 math (NVIDIA compute capability 8.0 or "
                            f"newer: A100, L4, H100, RTX 30xx...); {name} is {major}.{minor}. Set perf.precision: "
                            f"fp32 (or run on such GPUs)")
    if perf.compile:
        why = compile_unavailable(device.type)
        if why:
            problems.append(f"perf.compile: {why}, or set perf.compile: false")
    return problems


def cuda_bf16(device: torch.device) -> bool:
    """Whether a CUDA device does bf16 in hardware (bf16 emulated on older GPUs is slower than fp32)."""
    with torch.cuda.device(device):
        return torch.cuda.is_bf16_supported(including_emulation=False)


def compile_unavailable(device_type: str) -> str | None:
    """Why torch.compile (its default backend, inductor) cannot compile for ``device_type`` here, and what to
    install; None when it can."""
    if not torch._dynamo.is_dynamo_supported():
        return (f"torch.compile does not support Python {sys.version_info.major}.{sys.version_info.minor} with "
                f"torch {torch.__version__}; use a Python that it supports")
    if device_type == "cpu" and not cxx_compiler():
        return ("torch.compile's CPU backend (inductor) needs a C++ compiler and none was found (g++, clang++ or "
                "$CXX); install one (apt-get install g++)")
    if device_type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return (f"torch.compile's GPU backend (inductor) needs triton, which is not installed with torch "
                    f"{torch.__version__} here; pip install the triton that matches this torch")
    return None


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would use for CPU code ($CXX, else g++ or clang++ on the PATH), or None."""
    for name in (os.environ.get("CXX"), "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None
