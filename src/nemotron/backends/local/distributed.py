"""Data parallelism for local pretraining and SFT: one process per rank under torchrun.

Every rank holds the whole model and sees its own shard of each global batch; after the
micro-batches of a step, the gradients are summed across ranks in one flat all-reduce (as
megatron-core's DDP does with its contiguous grad buffer) before clipping and the optimizer
step, so all ranks take the same step and stay identical. Collectives run over gloo on CPU and
NCCL on GPUs (rank ``LOCAL_RANK`` of a node uses ``cuda:LOCAL_RANK``).

The global batch is kept: ``global_batch = micro_batch x grad_accum x world``, so each rank runs
``global_batch / (micro_batch x world)`` micro-batches per step. Sharding follows megatron-core's
``MegatronPretrainingSampler``: the step's samples are cut into runs of ``micro_batch x world``
consecutive samples, and rank r takes the r-th ``micro_batch`` of every run. The union over
ranks is the DP=1 batch, so a run resumes at any world size that divides the batch.

The loss of a step stays the DP=1 loss: the count of loss tokens (and of micro-batches, for the
per-micro-batch extra terms) is summed across ranks before the forwards, each rank divides by
the global count, and the summed gradient is the one DP=1 would compute.

Without torchrun (``WORLD_SIZE`` unset or 1) everything here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from nemotron.errors import UserError


@dataclass
class DataParallel:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    opened: bool = False  # we initialised the process group (and close it)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    # ------------------------------------------------------------------ setup
    def device(self, default):
        """The device of this rank: ``cuda:LOCAL_RANK`` when training on GPUs."""
        import torch

        if not self.active or default.type != "cuda":
            return default
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def check_batch(self, global_batch: int, micro_batch: int, what: str = "samples") -> int:
        """Micro-batches per rank and step (gradient accumulation); a UserError when the world
        does not divide the global batch."""
        per_step = micro_batch * self.world
        if global_batch % per_step:
            raise UserError(
                f"train.global_batch_size={global_batch} is not divisible by "
                f"train.micro_batch_size x data-parallel ranks = {micro_batch} x {self.world}",
                hint=f"use a global batch that is a multiple of {per_step} {what}, or "
                     "fewer processes",
            )
        return global_batch // per_step

    def close(self) -> None:
        import torch.distributed as dist

        if self.opened and dist.is_initialized():
            dist.destroy_process_group()
        self.opened = False

    # ------------------------------------------------------------------ sharding
    def shard(self, first: int, count: int, micro_batch: int) -> list[list[int]]:
        """This rank's micro-batches (lists of sample indices) of samples
        ``[first, first + count)``, split as megatron-core's pretraining sampler does."""
        run = micro_batch * self.world
        out = []
        for start in range(first, first + count, run):
            lo = start + self.rank * micro_batch
            hi = min(lo + micro_batch, first + count)
            if lo < hi:
                out.append(list(range(lo, hi)))
        return out

    # ------------------------------------------------------------------ collectives
    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over the ranks (float64, on CPU)."""
        if not self.active:
            return list(values)
        import torch
        import torch.distributed as dist

        buffer = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(buffer)
        return buffer.tolist()

    def sum_tensors_(self, tensors: list[Any]) -> None:
        """Sum CPU tensors over the ranks, in place (one all-reduce)."""
        if not self.active or not tensors:
            return
        import torch
        import torch.distributed as dist

        flat = torch.cat([t.reshape(-1).to(torch.float64) for t in tensors])
        dist.all_reduce(flat)
        offset = 0
        for t in tensors:
            n = t.numel()
            t.copy_(flat[offset:offset + n].view_as(t))
            offset += n

    def reduce_gradients(self, params: list[Any]) -> None:
        """Sum the gradients of ``params`` over the ranks in one flat all-reduce.

        A parameter no rank touched this step keeps ``grad=None`` (the optimizer skips it, as
        with one process); one that only some ranks touched gets the sum of the others."""
        if not self.active:
            return
        import torch
        import torch.distributed as dist

        params = [p for p in params if p.requires_grad]
        if not params:
            return
        ref = params[0]
        device = ref.device
        dtype = torch.float32 if ref.dtype in (torch.float16, torch.bfloat16) else ref.dtype
        parts = [p.grad.reshape(-1).to(dtype) if p.grad is not None
                 else torch.zeros(p.numel(), dtype=dtype, device=device) for p in params]
        touched = torch.tensor([p.grad is not None for p in params], dtype=dtype, device=device)
        flat = torch.cat([*parts, touched])
        dist.all_reduce(flat)
        offset = 0
        for p in params:
            n = p.numel()
            grad = flat[offset:offset + n].view_as(p).to(p.dtype)
            offset += n
            p.grad = grad if p.grad is None else p.grad.copy_(grad)
        any_touched = flat[offset:] > 0
        for p, used in zip(params, any_touched.tolist(), strict=True):
            if not used:
                p.grad = None

    def broadcast_parameters(self, params: list[Any]) -> None:
        """Make every rank's ``params`` equal to rank 0's (one flat broadcast)."""
        if not self.active:
            return
        import torch
        import torch.distributed as dist

        params = list(params)
        if not params:
            return
        with torch.no_grad():
            flat = torch.cat([p.detach().reshape(-1).float() for p in params])
            dist.broadcast(flat, 0)
            offset = 0
            for p in params:
                n = p.numel()
                p.copy_(flat[offset:offset + n].view_as(p).to(p.dtype))
                offset += n

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()


def from_env() -> DataParallel:
    """The data-parallel context torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``);
    opens the default process group when the stage harness has not."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return DataParallel()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    opened = open_process_group(local_rank)
    return DataParallel(rank=rank, world=world, local_rank=local_rank, opened=opened)


def open_process_group(local_rank: int) -> bool:
    """Join torchrun's process group (gloo for CPU tensors, NCCL for CUDA ones when GPUs are
    there); returns True when this call opened it."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    backend = "gloo"
    if torch.cuda.is_available() and os.environ.get("NEMOTRON_DEVICE", "cuda").startswith("cuda"):
        torch.cuda.set_device(local_rank)
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend)
    return True
