"""Criterion parameters (PKD's width projection, PTP's 4-way head) belong to the training that made them.

fairseq loads a checkpoint's criterion state strictly, also under `--finetune-from-model`, so a student
pre-trained with one criterion (PTP) could not start training with another that has parameters (PKD's
projection for TINY). A state with other entries leaves the parameters freshly initialised instead;
resuming the same training still restores them exactly."""
import logging

logger = logging.getLogger(__name__)


class LoadsOnlyOwnState:
    def load_state_dict(self, state_dict, strict=True, **kwargs):
        if set(state_dict) != set(self.state_dict()):
            logger.info("%s: the checkpoint's criterion state (%s) is another criterion's; starting from fresh "
                        "criterion parameters", type(self).__name__, ", ".join(sorted(state_dict)) or "empty")
            return None
        return super().load_state_dict(state_dict, strict=strict, **kwargs)
