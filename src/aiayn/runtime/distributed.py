"""Data-parallel training across processes and machines: torch.distributed under torchrun.

`torchrun --nproc_per_node N -m aiayn train ...` starts N copies of the same command and gives each the
environment variables RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. `init` reads them and joins
the process group (nccl when the rank trains on a GPU, gloo on the CPU); without them (or with
WORLD_SIZE=1) nothing is initialised and every helper here is a cheap no-op, so one process trains exactly
as before. The helpers are what the training loop needs: rank, world size, sum across ranks, broadcast
from rank 0, barrier.
"""

from __future__ import annotations

import datetime
import inspect
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import fully_shard  # torch >= 2.6 (pyproject's floor)
from torch.nn.parallel import DistributedDataParallel

DEFAULT_TIMEOUT_S = 1800.0  # torch's own default: a collective that waits longer raises instead of hanging


@dataclass(frozen=True)
class Dist:
    """Where this process stands: rank among world_size ranks, local_rank on its machine, its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        """True when several processes train together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, evaluates and writes files."""
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of `values` over all ranks (float64, so token counts stay exact)."""
        if not self.enabled:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is True on any rank."""
        return bool(self.sum([float(flag)])[0]) if self.enabled else flag

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` (any picklable object) on every rank."""
        if not self.enabled:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self._comm_device)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value` (any picklable object), in rank order, on every rank."""
        if not self.enabled:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        """Wait until every rank gets here (raises after the process-group timeout)."""
        if self.enabled:
            dist.barrier(device_ids=[self.device.index] if self.device.type == "cuda" else None)

    @property
    def _comm_device(self) -> torch.device:
        """nccl moves tensors between GPUs; gloo between CPUs."""
        return self.device if self.device.type == "cuda" else torch.device("cpu")


def from_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment variables; (0, 1, 0) without them."""
    try:
        return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                int(os.environ.get("LOCAL_RANK", "0")))
    except ValueError as error:
        raise RuntimeError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers (set by torchrun): {error}") from None


def init(device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> Dist:
    """Join the process group torchrun describes (nccl on CUDA, gloo on CPU) and pick this rank's device.

    `device` is the device asked for; under torchrun a CUDA rank trains on cuda:LOCAL_RANK. A single
    process (no torchrun variables, or WORLD_SIZE=1) gets Dist(device=device) and initialises nothing.
    """
    rank, world_size, local_rank = from_env()
    if world_size <= 1:
        return Dist(device=device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s),
                                device_id=device if device.type == "cuda" else None)
    return Dist(rank, world_size, local_rank, device)


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around `model`: copies rank 0's weights and buffers to every rank now, then
    all-reduces the gradients in each backward. Buffers (the sinusoid tables, §3.5) are constants, so they
    are not re-sent before every forward."""
    no_resend = ({"forward_sync_buffers": False}
                 if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                 else {"broadcast_buffers": False})  # the older name (torch < 2.13)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   **no_resend)


def broadcast_weights(model: torch.nn.Module) -> None:
    """Overwrite every rank's parameters and buffers with rank 0's."""
    with torch.no_grad():
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)


def shard(model: torch.nn.Module, layer_types: tuple[type, ...]) -> torch.nn.Module:
    """FSDP (torch's fully_shard): each rank keeps 1/W of every parameter, gradient and Adam moment; a layer's
    full weights exist only while it runs. One unit per encoder/decoder layer, one for the rest (embeddings)."""
    for module in model.modules():
        if isinstance(module, layer_types):
            fully_shard(module)
    fully_shard(model)
    return model


def full_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole state dict of a sharded model, on rank 0's CPU ({} on the others); every rank must call it."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Give a sharded model rank 0's whole state dict (the other ranks pass {}); every rank must call it."""
    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """A sharded model's whole optimizer state in Optimizer.state_dict()'s layout (parameters numbered group by
    group), so a checkpoint resumes with or without FSDP; on rank 0's CPU ({} on the others); every rank must
    call it."""
    state = get_optimizer_state_dict(model, optimizer,
                                     options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not state:
        return {}
    index = {name: i for i, name in enumerate(_parameter_order(model, optimizer))}
    return {"state": {index[name]: value for name, value in state["state"].items()},
            "param_groups": [{**group, "params": [index[name] for name in group["params"]]}
                             for group in state["param_groups"]]}


def load_full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                              state: dict[str, Any]) -> None:
    """Give a sharded model's optimizer a whole Optimizer.state_dict() (the same on every rank)."""
    names = _parameter_order(model, optimizer)
    by_name = {"state": {names[i]: value for i, value in state["state"].items()},
               "param_groups": [{**group, "params": [names[i] for i in group["params"]]}
                                for group in state["param_groups"]]}
    set_optimizer_state_dict(model, optimizer, by_name, options=StateDictOptions(full_state_dict=True))


def _parameter_order(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The names of the optimizer's parameters in Optimizer.state_dict()'s numbering: group by group."""
    names = {id(param): name for name, param in model.named_parameters()}
    return [names[id(param)] for group in optimizer.param_groups for param in group["params"]]


@contextmanager
def gradient_sync(net: torch.nn.Module, enabled: bool) -> Iterator[None]:
    """Inside: backward all-reduces (DDP) / reduce-scatters (FSDP) the gradients only if `enabled`;
    skipping it on all but the last of several accumulated batches saves that traffic."""
    if enabled:
        yield
    elif hasattr(net, "no_sync"):  # DDP
        with net.no_sync():
            yield
    elif hasattr(net, "set_requires_gradient_sync"):  # FSDP
        net.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            net.set_requires_gradient_sync(True)
    else:  # one process: nothing to synchronise
        yield


def is_timeout(error: BaseException) -> bool:
    """True for the error a collective raises when the other ranks do not answer within the timeout."""
    text = str(error).lower()
    return dist.is_available() and dist.is_initialized() and ("timed out" in text or "timeout" in text)


_HOLDING_GROUP = [False]  # inside held_group(): runs share one process group, shutdown() leaves it alone


def shutdown() -> None:
    """Leave the process group, if one was joined (not inside held_group(), which leaves it at its end)."""
    if dist.is_available() and dist.is_initialized() and not _HOLDING_GROUP[0]:
        dist.destroy_process_group()


@contextmanager
def held_group() -> Iterator[None]:
    """Several training runs in one process under torchrun (a sweep) share the process group the first joins.

    gloo cannot join a second group under the same torchrun rendezvous after the first was destroyed, so
    the group is left once, when the block ends.
    """
    _HOLDING_GROUP[0] = True
    try:
        yield
    finally:
        _HOLDING_GROUP[0] = False
        shutdown()
