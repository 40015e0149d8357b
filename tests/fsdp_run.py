"""One training run of the tiny CLIP for test_fsdp.py: three SGD steps on 4 pairs, the backbone sharded with FSDP2
over the processes of torchrun (gloo), or plain in one process (`plain`). Writes the losses, whether the backbone
stayed as it was, and the adapter (saved from the shards, rank 0) to OUT_DIR.

    python -m torch.distributed.run --nproc_per_node 2 tests/fsdp_run.py OUT_DIR
"""

import gc
import json
import os
import sys

import torch
from helpers import make_inputs, tiny_clip
from peft import get_peft_model

from mitp_peft import MITPConfig, warm_start_head
from mitp_peft.fsdp import adapter_state_dict, shard

STEPS = 3


def main(out_dir: str, plain: bool) -> None:
    torch.manual_seed(0)
    model = get_peft_model(tiny_clip(), MITPConfig(num_labels=3))
    backbone_before = {k: v.clone() for k, v in model.get_base_model().state_dict().items()}
    rank, world, refused = 0, 1, None
    if not plain:
        torch.distributed.init_process_group("gloo")
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        shard(model)
        try:
            warm_start_head(model, [dict(make_inputs(), labels=torch.tensor([0, 1, 2]))])
        except ValueError as error:
            refused = str(error)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    batch, labels = make_inputs(batch=4, seed=3), torch.tensor([0, 1, 2, 1])
    mine = slice(rank * 4 // world, (rank + 1) * 4 // world)
    losses = []
    for _ in range(STEPS):
        loss = model(**{k: v[mine] for k, v in batch.items()}, labels=labels[mine]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if not plain:  # each rank's mean over its half: their mean is the batch's
            loss = loss.detach().clone()
            torch.distributed.all_reduce(loss)
            loss /= world
        losses.append(loss.item())
    adapter = adapter_state_dict(model) if not plain else None
    backbone_after = {k: v.full_tensor() if hasattr(v, "full_tensor") else v
                      for k, v in model.get_base_model().state_dict().items()}  # fmt: skip
    if rank == 0:
        model.save_pretrained(os.path.join(out_dir, "adapter"), state_dict=adapter)
        unchanged = all(torch.equal(backbone_after[k], v) for k, v in backbone_before.items())
        with open(os.path.join(out_dir, "run.json"), "w") as f:
            json.dump({"losses": losses, "backbone_unchanged": unchanged, "world": world, "refused": refused}, f)
    if not plain:
        # Tear down in order, while the interpreter is whole: every rank done with its collectives (rank 0 saves
        # last), the sharded model and what it holds of gloo's work released, then the group. Gloo's worker threads
        # still holding work (with tensors) when the interpreter finalizes abort the process ("terminate called
        # without an active exception", SIGABRT).
        torch.distributed.barrier()
        del model, optimizer, loss
        gc.collect()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], plain="--plain" in sys.argv)
