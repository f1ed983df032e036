"""Pictures of a study: optimization history, learning curves, parallel coordinates (matplotlib, loaded lazily).

Each function draws on ``ax`` (a new figure when ``None``), saves to ``path`` when given, and returns the figure.

    torchhpo plot runs/x.db --out plots/          # history.png, curves.png, parallel.png
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from torchhpo.study import Study
from torchhpo.trial import Status

__all__ = ["history", "learning_curves", "parallel_coordinates", "save_all"]

COLORS = {Status.COMPLETED: "tab:blue", Status.PRUNED: "tab:orange", Status.FAILED: "tab:red",
          Status.RUNNING: "tab:gray"}


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install 'torchhpo[plot]'") from e
    return plt


def _axes(ax: Any, size: tuple[float, float] = (7.0, 4.0)) -> tuple[Any, Any]:
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=size, layout="constrained")
        return fig, ax
    return ax.figure, ax


def _save(fig: Any, path: str | Path | None) -> Any:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig


def history(study: Study, path: str | Path | None = None, *, ax: Any = None) -> Any:
    """Each trial's value (pruned trials at their last report) and the best completed value so far."""
    fig, ax = _axes(ax)
    best, top, line = None, -math.inf, []
    for t in study.trials:
        if t.value is not None:
            ax.scatter(t.number, t.value, s=14, color=COLORS[t.status], alpha=0.8, zorder=3)
        if t.status is Status.COMPLETED and t.score is not None and t.score > top:
            best, top = t, t.score
        line.append(best.value if best is not None else float("nan"))
    ax.step(range(len(line)), line, where="post", color="black", label="best so far")
    for status in (Status.COMPLETED, Status.PRUNED):
        ax.scatter([], [], s=14, color=COLORS[status], label=status.value)
    ax.set(xlabel="trial", ylabel=f"value ({study.mode}imize)", title=f"{study.name}: optimization history")
    ax.legend(loc="best")
    return _save(fig, path)


def learning_curves(study: Study, path: str | Path | None = None, *, ax: Any = None) -> Any:
    """Every trial's reports against its step (epochs), coloured by status: where pruning cut curves short."""
    fig, ax = _axes(ax)
    for t in study.trials:
        if t.reports:
            steps = sorted(t.reports)
            ax.plot(steps, [t.reports[s] for s in steps], color=COLORS[t.status], alpha=0.5, lw=1)
    for status in (Status.COMPLETED, Status.PRUNED, Status.FAILED):
        ax.plot([], [], color=COLORS[status], label=status.value)
    ax.set(xlabel="step (epochs)", ylabel="reported value", title=f"{study.name}: learning curves")
    ax.legend(loc="best")
    return _save(fig, path)


def parallel_coordinates(study: Study, path: str | Path | None = None, *, ax: Any = None) -> Any:
    """Completed trials as lines across the parameters' unit-cube columns, coloured by value (darker is better)."""
    fig, ax = _axes(ax, size=(max(6.0, 1.4 * study.space.dim), 4.0))
    done = [t for t in study.trials if t.status is Status.COMPLETED]
    if done:
        X = study.space.encode([t.config for t in done]).numpy()
        scores = [t.score for t in done if t.score is not None]  # every completed trial has one
        lo, hi = min(scores), max(scores)
        cmap = _pyplot().get_cmap("viridis")
        for row, s in sorted(zip(X, scores, strict=True), key=lambda p: p[1]):
            ax.plot(range(study.space.dim), row, color=cmap(0.0 if hi == lo else (s - lo) / (hi - lo)), alpha=0.7)
    ax.set_xticks(range(study.space.dim), study.space.names, rotation=30)
    ax.set(ylabel="position in range (log where log)", ylim=(-0.02, 1.02),
           title=f"{study.name}: parallel coordinates (yellow = best)")
    return _save(fig, path)


def save_all(study: Study, out_dir: str | Path) -> list[Path]:
    """Save every figure of ``study`` as a PNG in ``out_dir``; the paths written."""
    plt = _pyplot()
    paths = []
    for name, draw in (("history", history), ("curves", learning_curves), ("parallel", parallel_coordinates)):
        paths.append(Path(out_dir) / f"{name}.png")
        plt.close(draw(study, paths[-1]))
    return paths
