"""What is truly distributed about training: where a process sits in a torchrun job, its device, the process group,
errors that name their rank, and going on from a checkpoint (--resume).

    torchrun --nproc_per_node=N -m vae train ...      (python -m vae train runs on every rank; WORLD_SIZE > 1: DDP)

The training loop itself is vae.training.fit(), the same for one process and many (see its module docstring for
how the global batch, the noise and the loss are split over ranks). Rank 0 alone prints, and writes the checkpoint
(atomically, after every epoch and at the end) in the same format as a single-process run. The optimizer's moments
are not part of that format: a resumed run restarts Adam.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist

from vae.config import TrainConfig
from vae.model import VAE
from vae.training import group_rank_world

PROCESS_GROUP_TIMEOUT = datetime.timedelta(minutes=10)  # a rank that vanished without closing its sockets


class DistributedError(ValueError):  # ValueError: the CLI reports it as one line
    """A rank failed, or the process group could not be formed; the message says which rank, in one line."""


@dataclass(frozen=True)
class Launch:
    """Where this process sits in the job, from the variables torchrun sets."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launch_from_env(env: dict[str, str] | None = None) -> Launch:
    """RANK, WORLD_SIZE and LOCAL_RANK as torchrun sets them; a plain process is rank 0 of 1."""
    env = os.environ if env is None else env
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise DistributedError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (are you launching with torchrun?)") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise DistributedError(f"RANK={rank} does not fit WORLD_SIZE={world}")
    return Launch(rank, world, local)


def launched_by_torchrun() -> bool:
    """True in a worker of a multi-process torchrun job."""
    return launch_from_env().distributed


def _all_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few numbers over all ranks (float64); the identity in a single process."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if group_rank_world()[1] > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def iwae_sharded(model: VAE, x: torch.Tensor, k: int, device: torch.device) -> float:
    """vae.metrics.iwae_estimate over this rank's shard, all-reduced to the mean over all of x."""
    from vae.metrics import iwae_estimate

    rank, world = group_rank_world()
    if world == 1:
        return iwae_estimate(model, x, k=k)
    shard = x.tensor_split(world)[rank]
    total, n = _all_sum([iwae_estimate(model, shard, k=k) * len(shard) if len(shard) else 0.0, len(shard)], device)
    return total / max(1.0, n)


def rank_device(name: str, launch: Launch) -> torch.device:
    """One device per rank: cuda:LOCAL_RANK when CUDA is asked for (or 'auto' finds it), else the CPU."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DistributedError(f"--device {name} asks for CUDA, but PyTorch sees no GPU here")
    want = torch.device(name if name != "auto" else "cuda")
    if want.index is not None and launch.distributed and want.index != launch.local_rank:
        raise DistributedError(f"under torchrun each rank uses cuda:LOCAL_RANK; pass --device cuda or auto, not {name}")
    index = launch.local_rank if launch.distributed else (want.index or 0)
    if index >= torch.cuda.device_count():
        raise DistributedError(f"local rank {launch.local_rank} needs GPU {index}, but only {torch.cuda.device_count()} are "
                               f"visible: use --nproc_per_node <= the number of GPUs")
    return torch.device("cuda", index)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return re.sub(r"^\[[^\]]*\.(?:cc|cpp|h):\d+\] ", "", line)  # gloo's "[/path/pair.cc:545] " source prefix


def rank_error(exc: Exception, launch: Launch) -> Exception:
    """The same error, its message prefixed with the rank; anything the CLI does not report becomes DistributedError."""
    msg = f"rank {launch.rank} of {launch.world_size}: {_one_line(exc)}"
    if isinstance(exc, (ValueError, OSError)):  # the CLI prints these as one line
        try:
            new = type(exc)(msg)
            if str(new) == msg:
                return new
        except Exception:  # noqa: BLE001 - a constructor with another signature
            pass
    return DistributedError(msg)


@contextlib.contextmanager
def process_group(launch: Launch, device: torch.device) -> Iterator[str | None]:
    """The job's process group for the with-block (nccl on GPUs, gloo on CPUs); yields its backend, None alone."""
    if not launch.distributed:
        yield None
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    kw = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend, rank=launch.rank, world_size=launch.world_size, timeout=PROCESS_GROUP_TIMEOUT, **kw)
    yield backend
    # Torn down only on a clean exit (an exception leaves the generator at the yield): after a peer vanished, gloo's
    # teardown over the dead connection can abort the process (SIGABRT, seen once in CI) before the one-line error
    # is printed. Exiting frees the group.
    dist.destroy_process_group()


def quiet_other_ranks(launch: Launch) -> None:
    """Keep rank 0's stdout only: the CLI prints its result on every rank."""
    if launch.rank != 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process


def resume_point(history: list[dict[str, Any]]) -> tuple[int, int, float]:
    """(epoch, step, seconds) a checkpoint's history ends at: where a resumed run's numbering goes on."""
    if not history:
        return 0, 0, 0.0
    last = history[-1]
    return int(last.get("epoch", len(history))), int(last.get("step", 0) or 0), float(last.get("seconds", 0.0) or 0.0)


def note_changes(before: TrainConfig, now: TrainConfig) -> None:
    """Tell the user which hyper-parameters differ from the checkpoint's run (the command line wins)."""
    for key in ("lr", "schedule", "beta", "warmup_epochs", "batch_size", "seed"):
        a, b = getattr(before, key), getattr(now, key)
        if a != b:
            print(f"note: resuming with {key} {b} (the checkpoint was trained with {a})", file=sys.stderr)
