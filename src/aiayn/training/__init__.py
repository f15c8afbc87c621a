"""Training: label-smoothed loss, the paper's LR schedule, the loop with checkpoints, checkpoint averaging."""

from .checkpoints import average_checkpoints, list_checkpoints, save_checkpoint
from .loss import label_smoothed_loss
from .schedule import InverseSqrtSchedule

__all__ = ["InverseSqrtSchedule", "average_checkpoints", "label_smoothed_loss", "list_checkpoints",
           "save_checkpoint"]
