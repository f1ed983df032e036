"""A Lightning callback that reports a logged metric to the trial after every validation epoch.

Example (needs ``pip install lightning``)::

    from torchhpo.integrations.lightning import TuneCallback

    def train(config, trial):
        trainer = lightning.Trainer(max_epochs=trial.max_epochs, callbacks=[TuneCallback(trial, "val_loss")])
        trainer.fit(Model(config), datamodule)
        return trainer.callback_metrics["val_loss"].item()

When the scheduler stops the trial, ``TrialPruned`` leaves ``trainer.fit`` and the study records the trial as
PRUNED. When it pauses the trial (synchronous successive halving), ``TrialPaused`` leaves it likewise; the resumed
trial calls ``train`` again, which starts from epoch 0 unless it passes a checkpoint to ``trainer.fit(ckpt_path=)``.
"""

from __future__ import annotations

from typing import Any

from torchhpo.trial import Trial

try:
    import lightning as L
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("torchhpo.integrations.lightning needs Lightning: pip install lightning "
                      "(or pip install 'torchhpo[lightning]')") from e

__all__ = ["TuneCallback"]


class TuneCallback(L.Callback):
    """Report ``trainer.callback_metrics[monitor]`` to ``trial`` at the end of each validation epoch.

    Args:
        trial: the trial the training function received.
        monitor: the name of a metric the module logs (``self.log("val_acc", ...)``).

    The step is the number of epochs done (``trainer.current_epoch + 1``); the sanity check is skipped.
    """

    def __init__(self, trial: Trial, monitor: str = "val_acc") -> None:
        super().__init__()
        self.trial, self.monitor = trial, monitor

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        if self.monitor not in trainer.callback_metrics:
            raise KeyError(f"TuneCallback: metric '{self.monitor}' was not logged; the module logs "
                           f"{sorted(trainer.callback_metrics)}; log it with self.log('{self.monitor}', value)")
        self.trial.report(float(trainer.callback_metrics[self.monitor]), step=trainer.current_epoch + 1)
