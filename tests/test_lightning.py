"""The Lightning callback reports each validation epoch and lets the scheduler stop the fit."""

from __future__ import annotations

import pytest
import torch

import torchhpo as th

L = pytest.importorskip("lightning")


class _Regression(L.LightningModule):
    def __init__(self, lr: float) -> None:
        super().__init__()
        self.lr, self.net = lr, torch.nn.Linear(2, 1)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def _loader():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=32)


def test_callback_reports_every_epoch_and_prunes(tmp_path):
    from torchhpo.integrations.lightning import TuneCallback

    def train(config, trial):
        trainer = L.Trainer(max_epochs=trial.max_epochs, callbacks=[TuneCallback(trial, "val_loss")],
                            logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu")
        trainer.fit(_Regression(config["lr"]), _loader(), _loader())
        return trainer.callback_metrics["val_loss"].item()

    study = th.Study(th.Space({"lr": th.Float(1e-4, 0.3, log=True)}), mode="min",
                     scheduler=th.MedianStopping(warmup_epochs=1, min_trials=1), max_epochs=4)
    for lr in (0.3, 1e-4):  # the second learns far slower: stopped after the warm-up
        study.enqueue({"lr": lr})
    study.optimize(train, n_trials=2, progress=False)
    good, slow = study.trials
    assert good.status is th.Status.COMPLETED and sorted(good.reports) == [1, 2, 3, 4]
    assert slow.status is th.Status.PRUNED and max(slow.reports) == 2

    def wrong_metric(config, trial):
        L.Trainer(max_epochs=1, callbacks=[TuneCallback(trial, "val_acc")], logger=False, accelerator="cpu",
                  enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path,
                  enable_model_summary=False).fit(_Regression(0.1), _loader(), _loader())

    failed = th.Study(th.Space({"lr": th.Float(0.1, 0.2)})).optimize(wrong_metric, n_trials=1, progress=False)
    assert "metric 'val_acc' was not logged" in failed.trials[0].reason
