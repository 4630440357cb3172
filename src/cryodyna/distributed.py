"""torch.distributed helpers: one process per GPU (or CPU process with gloo), started by torchrun
(``env://`` rendezvous, so multi-node works with the usual MASTER_ADDR / MASTER_PORT / node ranks)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def setup() -> None:
    """Join the process group when launched by torchrun with more than one process (NCCL on GPUs,
    gloo otherwise); a no-op for single-process runs."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        cuda = torch.cuda.is_available()
        dist.init_process_group("nccl" if cuda else "gloo")
        if cuda:
            torch.cuda.set_device(local_rank())


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Concatenate equally shaped tensors of all ranks along dim 0, in rank order."""
    if not active():
        return t
    parts = [torch.empty_like(t) for _ in range(world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def any_rank(flag: bool, device) -> bool:
    """True on every rank when ``flag`` is true on at least one."""
    return max_rank(1.0 if flag else 0.0, device) > 0


def max_rank(value: float, device) -> float:
    """The largest ``value`` over all ranks, on every rank."""
    if not active():
        return value
    t = torch.tensor([float(value)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available (this process's GPU under torchrun), else cpu."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank()}" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
