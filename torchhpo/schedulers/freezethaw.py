"""Freeze-thaw scheduling: trials run in short increments, pause, and resume when their *predicted* curve earns it.

Every trial trains ``min_epochs`` and pauses; afterwards it pauses at each step of a geometric ladder
(``growth``). Whenever a worker is free, ``promote`` fits ``CurveModel`` (a GP over config and epoch, fitted to
every trial's partial curve at once) and asks, for each paused trial, the probability ``p`` that its score at
``max_epochs`` beats the incumbent (the best fully trained score; before there is one, the best score reported).
A paused trial resumes, up to its next ladder step, when ``p / (epochs it still needs)`` is at least the rate of a
new config, ``p_new / max_epochs``, where ``p_new`` is the mean ``p`` of every trial so far (the chance that a
config such as the searcher proposes beats the incumbent); otherwise the free worker starts a new config. The rule
is expected improvements per epoch spent, a cost-aware form of freeze-thaw's "probability of improvement" choice:
at equal ``p`` a nearly trained trial is cheaper to confirm, and a searcher that aims well raises ``p_new``.

Safeguards, so that a miscalibrated model cannot starve good trials:

- the floor: a trial in the top ``1/floor`` of the trials that reached a rung ``min_epochs * eta^k`` always goes on
  to the next such rung (plain rung promotion, ahead of the model's choices);
- at most ``max_new`` new configs start in a row while a paused trial at least as promising as a new one waits;
  then the best paused trial resumes;
- nothing pauses or stops before ``min_epochs``; a trial is pruned only once no new config can start (``drain``),
  and then only when ``p < prune_below``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from torchhpo.checks import integer, number
from torchhpo.observations import PREDICTED
from torchhpo.schedulers.base import _check
from torchhpo.settings import Described
from torchhpo.trial import Decision, Status, TrialRecord

if TYPE_CHECKING:
    from torchhpo.schedulers.curve_model import CurveModel

__all__ = ["FreezeThaw"]


def ladder(min_epochs: int, max_epochs: int, growth: float) -> tuple[int, ...]:
    """The pause steps: ``min_epochs``, then each step ``growth`` times the last (at least one more), to
    ``max_epochs``."""
    steps, step = [], min_epochs
    while step < max_epochs:
        steps.append(step)
        step = max(step + 1, math.ceil(step * growth))
    return (*steps, max_epochs)


class FreezeThaw(Described):
    """Freeze-thaw scheduling over a learning-curve GP (module docstring): a ``RungScheduler`` whose rungs are
    the pause ladder; it works with any searcher, and with pause and resume from checkpoints.

    Args:
        min_epochs: epochs every trial trains before its first pause; it is never stopped earlier.
        max_epochs: epochs of a fully trained trial.
        growth: each pause step is this many times the last (1 pauses after every epoch).
        eta: the floor's rungs are ``min_epochs * eta^k``.
        floor: the top ``1/floor`` of the trials at a floor rung always go on to the next one (``None``: no floor).
        max_new: new configs that may start in a row while a promising paused trial waits.
        prune_below: once nothing new can start, paused trials less likely than this to beat the incumbent are
            pruned.
        device: where the model fits: ``"auto"`` (the GPU for large histories, when there is one), ``"cpu"``,
            ``"cuda"``.
        predictions: at every decision, write each partly trained trial's predicted value at ``max_epochs`` (the
            model's mean, in the user's sign) into ``attrs["predicted_final"]``, which the ``GP`` searcher then
            learns from instead of BOHB's rung rule: one curve model for both decisions (``TPE`` keeps ranking
            trials by how far they got; random, grid and Sobol do not learn).
            The attribute is stored with the trial's next write; a decision refreshes it. Off by default: with
            the GP on the digits tables (8 seeds) it reached no better configs than the rung rule
            (docs/experiments.md, "Model-based new configs").

    Example:
        >>> FreezeThaw(1, 27).rungs(None)
        (1, 2, 3, 5, 8, 12, 18, 27)
    """

    def __init__(self, min_epochs: int = 1, max_epochs: int | None = None, *, growth: float = 1.5, eta: int = 3,
                 floor: int | None = 9, max_new: int = 8, prune_below: float = 0.01, device: str = "auto",
                 predictions: bool = False) -> None:
        _check("FreezeThaw", min_epochs, max_epochs, eta)
        assert max_epochs is not None  # _check refuses None
        number("FreezeThaw: growth", growth, low=1.0)
        integer("FreezeThaw: floor", floor, low=2, none=True)
        integer("FreezeThaw: max_new", max_new)
        number("FreezeThaw: prune_below", prune_below)
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"FreezeThaw: device={device!r} must be 'auto', 'cpu' or 'cuda'")
        self.min_epochs, self.max_epochs, self.growth, self.eta = min_epochs, max_epochs, growth, eta
        self.floor, self.max_new, self.prune_below, self.device = floor, max_new, prune_below, device
        self.predictions = predictions
        self._ladder = ladder(min_epochs, max_epochs, growth)
        self._floors = (*(s for k in range(64) if (s := min_epochs * eta**k) < max_epochs), max_epochs)
        self._model: CurveModel | None = None
        self.decisions, self.cpu_seconds = 0, 0.0  # promote calls that fitted the model, and their CPU time

    @property
    def model(self) -> CurveModel:
        """The curve model, built on first use: it imports BoTorch, which ``import torchhpo`` does not."""
        if self._model is None:
            from torchhpo.schedulers.curve_model import CurveModel
            self._model = CurveModel(device=self.device)
        return self._model

    def rungs(self, record: TrialRecord | None) -> tuple[int, ...]:
        """The steps where a trial may pause (the same for every trial); the last one is ``max_epochs``."""
        return self._ladder

    def on_start(self, record: TrialRecord, peers: Sequence[TrialRecord]) -> None:  # the budget: max_epochs
        return None

    def on_report(self, trial: TrialRecord, step: int, score: float, peers: Sequence[TrialRecord]) -> Decision:
        """Pause at the first ladder step at or past the trial's ``until`` (``min_epochs`` at first)."""
        if step >= self.max_epochs or step not in self._ladder[:-1] or step < trial.attrs.get("until", 0):
            return Decision.CONTINUE
        return Decision.PAUSE

    def _next(self, steps: tuple[int, ...], step: int) -> int:
        return next(s for s in steps if s > step)

    def _floor(self, peers: Sequence[TrialRecord], paused: list[TrialRecord]) -> dict[int, int]:
        """Paused trials the floor promotes: number -> the floor rung they go on to."""
        if self.floor is None:
            return {}
        out = {}
        for r in paused:
            step = max(r.reports)
            rung = max((s for s in self._floors[:-1] if s <= step), default=None)
            if rung is None:
                continue
            there = sorted(p.score_at(rung) for p in peers if rung in p.reports and p.status is not Status.FAILED)
            top = len(there) // self.floor
            if top and r.score_at(rung) >= there[-top]:
                out[r.number] = self._next(self._floors, rung)
        return out

    def chances(self, peers: Sequence[TrialRecord]) -> dict[int, float]:
        """For every trial that reported: the log of the model's probability that its score at ``max_epochs``
        beats the incumbent (the best fully trained score, else the best score reported). Logs, because these
        are tail probabilities: most underflow to 0 while their ranks still matter."""
        fitted = [r for r in peers if r.reports]
        E = self.max_epochs
        t = torch.arange(1, E + 1, dtype=torch.float64).expand(len(fitted), E) / E
        y = torch.zeros(len(fitted), E, dtype=torch.float64)
        mask = torch.zeros(len(fitted), E, dtype=torch.bool)
        for i, r in enumerate(fitted):
            for step, score in r.scores.items():
                if 1 <= step <= E and math.isfinite(score):
                    y[i, step - 1], mask[i, step - 1] = score, True
        keep = mask.any(1)
        fitted = [r for r, k in zip(fitted, keep.tolist(), strict=True) if k]
        if not fitted:
            return {}
        full = [r.score_at(E) for r in fitted if E in r.reports]
        incumbent = max(full) if full else float(y[keep][mask[keep]].max())
        from torchhpo.schedulers.curve_model import features
        self.model.fit(features([r.config for r in fitted]), t[keep], y[keep], mask[keep])
        mean, sd = self.model.predict(torch.ones(len(fitted), dtype=torch.float64))
        if self.predictions:
            for r, final in zip(fitted, self.model.unwarp(mean).tolist(), strict=True):
                if E not in r.reports:
                    r.attrs[PREDICTED] = r.sign * final  # the user's sign, like the reports
        bar = self.model.warp(torch.tensor([incumbent], dtype=torch.float64)).cpu()
        p = torch.special.log_ndtr((mean - bar) / sd.clamp_min(1e-9))
        return {r.number: float(q) for r, q in zip(fitted, p.tolist(), strict=True)}

    def promote(self, peers: Sequence[TrialRecord], drain: bool = False) -> dict[int, Decision]:
        """Paused trials to resume, best first (the floor's, then the model's); with ``drain``, those not worth
        resuming are pruned."""
        paused = [r for r in peers if r.status is Status.PAUSED and r.reports]
        if not paused:
            return {}
        began = time.process_time()
        log_p = self.chances(peers)
        self.decisions, self.cpu_seconds = self.decisions + 1, self.cpu_seconds + time.process_time() - began
        E, never = self.max_epochs, -math.inf
        # a new config's chance: the mean over the trials so far, leaving out the running ones, which run because
        # they were the most promising (with several workers they would set the bar for every paused trial)
        settled = [q for n, q in log_p.items() if peers[n].status is not Status.RUNNING]
        values = torch.tensor(settled, dtype=torch.float64)
        log_new = float(values.logsumexp(0) - math.log(len(values))) if settled else never
        rate = {r.number: log_p.get(r.number, never) - math.log(E - max(r.reports)) for r in paused}
        order = sorted(paused, key=lambda r: (-rate[r.number], r.number))
        goes: dict[int, int] = self._floor(peers, paused)
        if drain:
            chosen = [r for r in order if log_p.get(r.number, never) >= math.log(self.prune_below)]
        else:
            chosen = [r for r in order if rate[r.number] > never and rate[r.number] >= log_new - math.log(E)]
            last = max((r.attrs.get("thawed", -1) for r in peers), default=-1)
            waiting = [r for r in order if never < log_p.get(r.number, never) >= log_new]
            if not chosen and waiting and len(peers) - 1 - last >= self.max_new:
                chosen = waiting[:1]
        for r in chosen:
            goes.setdefault(r.number, self._next(self._ladder, max(r.reports)))
        out: dict[int, Decision] = {}
        for n, until in goes.items():
            record = peers[n]
            record.attrs["until"], record.attrs["thawed"] = until, len(peers) - 1
            out[n] = Decision.CONTINUE
        if drain:
            out.update({r.number: Decision.STOP for r in paused if r.number not in out})
        return out

    def __getstate__(self) -> dict[str, Any]:  # the model is a cache of the records' fit
        return {**self.__dict__, "_model": None}
