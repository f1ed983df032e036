"""What model-based searchers read from the history: scores (larger is better), rankings, pending configs, seeds.

Shared by ``searchers``, ``tpe`` and ``gp``, and below all of them: it imports only the space and the trial
record, so a searcher module never needs another searcher module (the registry in ``searchers`` imports the
model-based ones by name).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from torchhpo.space import Config, Space
from torchhpo.trial import Status, TrialRecord

__all__ = ["PREDICTED", "config_key", "fresh_seed", "observations", "pending", "ranked", "tried", "user_values"]

EARLY_STOPPED = (Status.PRUNED, Status.PAUSED)
PREDICTED = "predicted_final"  # attrs key: a learning-curve scheduler's prediction of the fully trained value


def config_key(config: Config) -> str:
    """A hashable identity of a config: equal configs give equal keys, whatever the order of their names."""
    return json.dumps(config, sort_keys=True)


def fresh_seed(seed: int | None) -> int:
    """``seed`` as an int, or a fresh one from the OS when it is ``None``: a searcher stores it, so the same
    searcher and history give the same configs (a resumed study goes on where it stopped)."""
    return int(np.random.SeedSequence(seed).generate_state(1)[0]) if seed is None else int(seed)


def tried(trials: Sequence[TrialRecord]) -> set[str]:
    """The keys of every trial's config, running ones included: what a searcher must not propose again."""
    return {config_key(t.config) for t in trials}


def pending(trials: Sequence[TrialRecord]) -> list[Config]:
    """The configs of RUNNING trials: their results are unknown yet, so a batch must spread away from them."""
    return [t.config for t in trials if t.status is Status.RUNNING]


def observations(space: Space, trials: Sequence[TrialRecord], *, min_points: int = 6) -> list[tuple[Config, float]]:
    """What a model-based searcher learns from: ``(config, score)`` pairs, larger scores better.

    Without early-stopped trials: COMPLETED trials' final scores. Once trials were pruned or paused
    (multi-fidelity): when a learning-curve scheduler (``FreezeThaw``) predicted the fully trained value of the
    early-stopped trials (``attrs[PREDICTED]``, in the user's sign), the COMPLETED trials' final scores and those
    predictions, so the searcher and the scheduler decide from one model; else BOHB's rule: the scores reported at
    the highest step that ``max(d + 2, min_points)`` trials reached (else the step most trials reached), so one
    model sees every bracket's results. FAILED trials get the worst score of the chosen data: a region where
    training diverges should not look unexplored.
    """
    stopped = [t for t in trials if t.status in EARLY_STOPPED]
    predicted = [t for t in stopped if PREDICTED in t.attrs]
    if stopped and not predicted:
        counts: dict[int, int] = {}
        for t in trials:
            if t.status is not Status.FAILED:
                for reached in t.reports:
                    counts[reached] = counts.get(reached, 0) + 1
        need = max(space.dim + 2, min_points)
        enough = [step for step, c in counts.items() if c >= need]
        step = max(enough) if enough else max(counts, key=lambda k: (counts[k], k)) if counts else None
        pairs = [(t.config, t.score_at(step)) for t in trials
                 if step is not None and t.status is not Status.FAILED and step in t.reports]
    else:
        pairs = [(t.config, t.score) for t in trials if t.status is Status.COMPLETED and t.score is not None]
        pairs += [(t.config, t.sign * float(t.attrs[PREDICTED])) for t in predicted]
    failed = [t.config for t in trials if t.status is Status.FAILED]
    if pairs and failed:
        worst = min(score for _, score in pairs)
        pairs += [(c, worst) for c in failed]
    return pairs


def ranked(space: Space, trials: Sequence[TrialRecord]) -> list[Config]:
    """The finished trials' configs, best first (what TPE splits into good and bad).

    Without early stopping: by final score (``observations``). Once trials were pruned or paused: by the highest
    step each reached, then by its score there; FAILED trials last. A trial that a scheduler promoted further beat
    its rivals at every lower rung, a surer sign than any one rung's scores when early epochs rank configs poorly
    (Optuna's TPE orders pruned trials so too; it also beat BOHB's rule in ``benchmarks/multifidelity.py``).
    """
    if not any(t.status in EARLY_STOPPED for t in trials):
        return [c for c, _ in sorted(observations(space, trials), key=lambda p: -p[1])]
    keyed = []
    for t in trials:
        if t.status not in (Status.FAILED, Status.RUNNING) and t.reports:
            step = max(t.reports)
            keyed.append(((step, t.score_at(step)), t.config))
    order = [c for _, c in sorted(keyed, key=lambda k: k[0], reverse=True)]
    return order + [t.config for t in trials if t.status is Status.FAILED]


def user_values(trials: Sequence[TrialRecord], scores: Any) -> Any:
    """``scores`` (a float or an array or tensor of them) back in the user's sign, for showing a model's view to
    the user (mode ``"min"``: lower is better). The one place where the sign is applied outside ``TrialRecord``:
    every trial of a study has the same sign, and with no trials scores are returned as they are."""
    return scores * trials[0].sign if trials else scores
