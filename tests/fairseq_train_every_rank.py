"""fairseq-train that also writes each rank's model and criterion weights after every checkpoint save
(SAVE_DIR/rank{R}.pt), so a test can check that data-parallel ranks stayed in sync."""
import os

import torch
from fairseq import checkpoint_utils, distributed_utils
from fairseq_cli import train

save_checkpoint = checkpoint_utils.save_checkpoint


def save_and_dump_rank(cfg, trainer, epoch_itr, val_loss):
    result = save_checkpoint(cfg, trainer, epoch_itr, val_loss)
    rank = distributed_utils.get_data_parallel_rank()
    torch.save({"model": trainer.get_model().state_dict(), "criterion": trainer.get_criterion().state_dict()},
               os.path.join(cfg.save_dir, f"rank{rank}.pt"))
    return result


checkpoint_utils.save_checkpoint = save_and_dump_rank

if __name__ == "__main__":
    train.cli_main()
