"""FSDP (`sharding: fsdp`): parameters, gradients and optimizer state sharded over the processes, with torch's
FSDP2 (`fully_shard`) on every transformer block and then on the whole model.

    torchrun --nproc_per_node 8 -m vlpref.cli train --config recipes/vlfeedback/train.yaml --out runs/silkie
    # with `sharding: fsdp` in the config (or accelerate launch: the loop sets FSDP up itself)

Why torch's own API and not accelerate's FSDP plugin: accelerate turns FSDP off on CPU processes (its distributed
type falls back to plain multi-CPU DDP), so the plugin could not be tested on the machines every contributor has;
`fully_shard` shards on gloo as on NCCL, and the 2-process CPU tests check it step for step against 1 process.
Each parameter is sharded on its own (a DTensor per parameter), so LoRA adapters and frozen base weights can sit in
the same block. Gradients are reduce-scattered and averaged over the processes, as DDP averages them, so the loop's
loss normalisation is unchanged.

Checkpoints stay whole: `full_trainable` and `full_optimizer_state` gather the shards (collectives: every process
calls them), the main process writes the same files an unsharded run writes; `load_trainable` and
`load_optimizer_state` shard them back. The export rebuilds the model unsharded on the main process's CPU and loads
the gathered weights into it.
"""

from __future__ import annotations

import torch
from torch import nn


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def shard(model: nn.Module, blocks: list[str]) -> nn.Module:
    """fully_shard each module whose class is in `blocks` (the model's `_no_split_modules`: its decoder and vision
    encoder layers), then the whole model (embeddings, norms, LM head, projector). In place; returns `model`."""
    from torch.distributed.fsdp import fully_shard

    names = set(blocks)
    found = [m for m in model.modules() if type(m).__name__ in names]
    if not found:
        raise ValueError(f"no module of the classes {sorted(names)} to shard")
    # A pair's prefix and its continuations (and POVID's and mDPO's extra negatives) run through each block in
    # separate forward calls before one backward. FSDP frees a block's gathered weights after the backward of the
    # first call it meets, while the other calls' backward still needs them; so they stay gathered through the
    # forward and the backward, and `release` frees them once the step's backward is done.
    for module in [*found, model]:
        fully_shard(module, reshard_after_forward=False)
        module.set_reshard_after_backward(False)
    return model


def release(model: nn.Module) -> None:
    """Free the gathered weights of every sharded module (after the step's backward, before the optimizer step: the
    next forward gathers the updated shards)."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def full_trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters, whole, on the CPU (every process must call this; all get the tensors)."""
    from torch.distributed.tensor import DTensor

    out = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            value = p.full_tensor() if isinstance(p, DTensor) else p
            out[name] = value.detach().cpu().contiguous()
    return out


def load_trainable(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy whole tensors into the (possibly sharded) trainable parameters: each process keeps its shard."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            p = params[name]
            if isinstance(p, DTensor):
                value = distribute_tensor(value.to(p.dtype), p.device_mesh, p.placements)
            p.copy_(value)


def full_optimizer_state(model: nn.Module, optimizer) -> dict:
    """The optimizer's state keyed by parameter name, whole, on the CPU (collective)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True))


def load_optimizer_state(model: nn.Module, optimizer, state: dict) -> None:
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, optim_state_dict=state, options=_options())
