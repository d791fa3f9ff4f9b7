"""Megatron-Core's runtime for a Llama: parallel state and seeds, on GPUs or, through a shim, on CPU.

`init_model_parallel(tp, pp, seed)` is the one way into Megatron's parallel state here: it applies
the CPU shim when CUDA is absent, initializes the tensor/pipeline-parallel groups, and seeds the
RNG trackers (Megatron's CUDA tracker on GPUs, a CPU tracker with the same per-rank offsets
otherwise). `single_process_megatron()` does the same for one process without torchrun (the
converters). Call it after `torch.distributed.init_process_group`.

Why a shim:
Megatron-Core assumes a GPU in a few places: `torch.cuda.current_device()` as a tensor device,
tensors created with `device="cuda"`, `.cuda()` calls, `torch.cuda.synchronize()`, a CUDA RNG
tracker, and a `torch.cuda.FloatTensor` assertion in gradient clipping. `apply_cpu_shim()` maps
each of those to the CPU; on a machine with CUDA it does nothing, so the same training code runs
on GPUs untouched. The shim lasts for the whole process (torch functions are patched and a
TorchFunctionMode stays on the mode stack): a process that used it cannot later use CUDA. What
else CPU runs need (use_cpu_initialization, fusions off, an explicit causal mask, gloo) is set
where the model config is built (`mcore_llama/build.py`). The private Megatron names it patches
are listed in `PATCHED_MEGATRON_NAMES` (a test checks they still exist in the installed version).
"""

from __future__ import annotations

import contextlib

import torch
from torch.overrides import TorchFunctionMode

_APPLIED = False

# (module, attribute) pairs of Megatron-Core internals that the shim and the CPU seeding replace.
PATCHED_MEGATRON_NAMES = (
    ("megatron.core.tensor_parallel.random", "_CUDA_RNG_STATE_TRACKER"),
    ("megatron.core.tensor_parallel.random", "_CUDA_RNG_STATE_TRACKER_INITIALIZED"),
    ("megatron.core.tensor_parallel.random", "initialize_rng_tracker"),
    ("megatron.core.tensor_parallel.random", "get_cuda_rng_tracker"),
    ("megatron.core.tensor_parallel.random", "_DATA_PARALLEL_RNG_TRACKER_NAME"),
    ("megatron.core.tensor_parallel.random", "_MODEL_PARALLEL_RNG_TRACKER_NAME"),
    ("megatron.core.tensor_parallel.random", "_EXPERT_PARALLEL_RNG_TRACKER_NAME"),
    ("megatron.core.optimizer.clip_grads", "clip_grad_by_total_norm_fp32"),
    ("megatron.core.optimizer.optimizer", "clip_grad_by_total_norm_fp32"),
)


def _is_cuda_device(device) -> bool:
    if isinstance(device, int):  # Megatron passes torch.cuda.current_device() (an int) as device.
        return True
    if isinstance(device, str):
        return device.startswith("cuda")
    return isinstance(device, torch.device) and device.type == "cuda"


class _CudaToCpu(TorchFunctionMode):
    """Rewrites `device="cuda"` (and `.cuda()` / `.to("cuda")`) on every torch call to the CPU."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.cuda:
            return args[0]
        if _is_cuda_device(kwargs.get("device")):
            kwargs["device"] = "cpu"
        if func is torch.Tensor.to and len(args) > 1 and _is_cuda_device(args[1]):
            args = (args[0], "cpu", *args[2:])
        return func(*args, **kwargs)


class CpuRNGStatesTracker:
    """Megatron's CudaRNGStatesTracker with the CPU generator in place of the CUDA one.

    Named states (the tensor-model-parallel and data-parallel seeds) fork the default CPU
    generator and restore it afterwards, exactly as the CUDA tracker does with the CUDA generator.
    """

    def __init__(self, *_, **__):
        self.reset()

    def reset(self):
        self.states_: dict[str, torch.Tensor] = {}
        self.seeds_: set[int] = set()
        self._is_initialized = False

    def is_initialized(self):
        return self._is_initialized

    def get_states(self):
        return dict(self.states_)

    def set_states(self, states):
        self._is_initialized = True
        self.states_ = dict(states)

    def add(self, name, seed):
        if seed in self.seeds_:
            raise ValueError(f"seed {seed} already exists")
        if name in self.states_:
            raise ValueError(f"rng state {name} already exists")
        self._is_initialized = True
        self.seeds_.add(seed)
        self.states_[name] = torch.Generator().manual_seed(seed).get_state()

    @contextlib.contextmanager
    def fork(self, name="model-parallel-rng"):
        if name not in self.states_:
            raise KeyError(f"rng state {name} is not added")
        outer = torch.get_rng_state()
        torch.set_rng_state(self.states_[name])
        try:
            yield
        finally:
            self.states_[name] = torch.get_rng_state()
            torch.set_rng_state(outer)


def _clip_grad_by_total_norm_cpu(parameters, max_norm, total_norm, use_decoupled_grad=False):
    """Megatron's version asserts `torch.cuda.FloatTensor` grads; the arithmetic is the same."""
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    clip_coeff = max_norm / (total_norm + 1.0e-6)
    if clip_coeff < 1.0:
        for param in parameters:
            grad = param.decoupled_grad if use_decoupled_grad else param.grad
            if grad is not None:
                grad.detach().mul_(clip_coeff)


def cpu_rng_seed(seed: int) -> None:
    """`model_parallel_cuda_manual_seed` for the CPU: same seed offsets per TP/EP/DP rank."""
    from megatron.core import parallel_state
    from megatron.core.tensor_parallel import random as mrandom

    torch.manual_seed(seed)
    tracker = mrandom.get_cuda_rng_tracker()
    tracker.reset()
    tp_rank = parallel_state.get_tensor_model_parallel_rank()
    ep_rank = parallel_state.get_expert_model_parallel_rank()
    etp_rank = parallel_state.get_expert_tensor_parallel_rank()
    tracker.add(mrandom._DATA_PARALLEL_RNG_TRACKER_NAME, seed)
    tracker.add(mrandom._MODEL_PARALLEL_RNG_TRACKER_NAME, seed + 2718 + tp_rank)
    tracker.add(mrandom._EXPERT_PARALLEL_RNG_TRACKER_NAME, seed + 1024 + 100 * ep_rank + etp_rank)


def apply_cpu_shim() -> bool:
    """Apply the shim when CUDA is absent; returns True when it is (now) applied. Idempotent."""
    global _APPLIED
    if torch.cuda.is_available():
        return False
    if _APPLIED:
        return True
    from megatron.core.optimizer import clip_grads, optimizer
    from megatron.core.tensor_parallel import random as mrandom

    torch.cuda.current_device = lambda: torch.device("cpu")
    torch.cuda.synchronize = lambda *_, **__: None
    torch.cuda.empty_cache = lambda: None
    torch.cuda.set_device = lambda *_, **__: None
    torch.cuda.device_count = lambda: 0
    _CudaToCpu().__enter__()  # stays on the mode stack for the life of the process

    mrandom.initialize_rng_tracker(force_reset=True)
    mrandom._CUDA_RNG_STATE_TRACKER = CpuRNGStatesTracker()
    mrandom._CUDA_RNG_STATE_TRACKER_INITIALIZED = True
    clip_grads.clip_grad_by_total_norm_fp32 = _clip_grad_by_total_norm_cpu
    optimizer.clip_grad_by_total_norm_fp32 = _clip_grad_by_total_norm_cpu
    _APPLIED = True
    return True


def init_model_parallel(tensor_parallel: int = 1, pipeline_parallel: int = 1, seed: int = 1234) -> bool:
    """Shim (CPU only), Megatron's parallel state, and seeds, in that order; returns True on CPU.

    Needs a process group. The shim, once applied, lasts for the process (see the module docstring).
    """
    from megatron.core import parallel_state

    on_cpu = apply_cpu_shim()
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=tensor_parallel, pipeline_model_parallel_size=pipeline_parallel
    )
    if on_cpu:
        cpu_rng_seed(seed)
    else:
        from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

        torch.manual_seed(seed)
        model_parallel_cuda_manual_seed(seed)
    return on_cpu


@contextlib.contextmanager
def single_process_megatron(seed: int = 1234):
    """A one-rank gloo group and TP=PP=1 model parallel state for a process without torchrun
    (reused, and left alone, when the caller already set them up)."""
    import torch.distributed as dist
    from megatron.core import parallel_state

    created_group = False
    if not dist.is_initialized():
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        created_group = True
    created_parallel = not parallel_state.model_parallel_is_initialized()
    if created_parallel:
        init_model_parallel(1, 1, seed)
    try:
        yield
    finally:
        if created_parallel:
            parallel_state.destroy_model_parallel()
        if created_group:
            dist.destroy_process_group()

