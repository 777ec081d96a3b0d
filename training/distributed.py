"""Process set-up of a run: torchrun's process group, the device, and samplers that shard and resume.

Launched by ``torchrun`` (WORLD_SIZE > 1), every process trains on its own shard with
DistributedDataParallel (NCCL on CUDA, gloo on the CPU); only rank 0 logs and writes files.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any, Callable, List

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler, Sampler

from mono_depth_ros.devices import DeviceUnavailableError, parse_device, torch_device
from mono_depth_ros.memory import keep_freed_memory_in_process

from .config import ConfigError, TrainConfig


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def setup_distributed(device: torch.device) -> DistributedContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    initialized_here = False
    if not dist.is_initialized():
        if device.type == "cuda":
            try:  # binding the device up front lets NCCL set up eagerly (torch >= 2.3)
                dist.init_process_group(backend="nccl", device_id=device)
            except TypeError:
                dist.init_process_group(backend="nccl")
        else:
            dist.init_process_group(backend="gloo")
        initialized_here = True
    return DistributedContext(rank, world_size, local_rank, initialized_here)


def select_device(config: TrainConfig) -> torch.device:
    """config.device, or CUDA when available; under torchrun each process takes cuda:LOCAL_RANK."""
    try:  # the trainer never falls back: a run on the wrong device wastes hours
        device, _ = torch_device(parse_device(config.device), missing_cuda="raise")
    except (ValueError, DeviceUnavailableError) as error:
        raise ConfigError(str(error)) from error
    if device.type == "cuda":
        if device.index is None:
            device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
        torch.cuda.set_device(device)
    return device


def keep_training_memory_in_process() -> None:
    """A CPU step at 640x192 batch 12 allocates and frees gigabytes in tensors of up to ~180 MB:
    keep all of it in the process for the next step (never trim), as the CUDA caching allocator
    does on the GPU. The process then keeps its peak training memory."""
    keep_freed_memory_in_process(mmap_threshold_bytes=1 << 30, trim_threshold_bytes=-1)


class ResumableDistributedSampler(DistributedSampler):
    """DistributedSampler whose epoch can start part-way, so a resumed run sees the
    same batches in the same order as an uninterrupted one (shuffle order = f(seed, epoch))."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.skip = 0

    def set_position(self, epoch: int, skip_samples: int) -> None:
        self.set_epoch(epoch)
        self.skip = skip_samples

    def __iter__(self):
        return iter(list(super().__iter__())[self.skip:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)


class ShardSampler(Sampler):
    """Every world_size-th index from rank, in order, without padding (validation)."""

    def __init__(self, length: int, rank: int, world_size: int):
        self.indices = list(range(rank, length, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)

def seed_worker(worker_id: int) -> None:
    # torch seeds each worker; give NumPy and random the same per-worker seed.
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)


def rank_zero_first(context: DistributedContext, function: Callable[[], Any]) -> Any:
    """Run ``function`` on rank 0 first (it fills shared caches), then on the other ranks."""
    if not context.is_main:
        context.barrier()
    value = function()
    if context.is_main:
        context.barrier()
    return value


def gather_columns(context: DistributedContext, parts: List[torch.Tensor]) -> torch.Tensor:
    """Concatenate (F, B) blocks along samples, over all ranks."""
    local = torch.cat(parts, 1) if parts else torch.empty(0, 0)
    if context.enabled:
        gathered: List[Any] = [None] * context.world_size
        dist.all_gather_object(gathered, local)
        local = torch.cat([block for block in gathered if block.numel()], 1) if any(
            block.numel() for block in gathered) else local
    return local
