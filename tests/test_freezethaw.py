"""FreezeThaw: the scheduler contract, pause and resume from checkpoints, its safeguards, and a simulated study."""

from __future__ import annotations

import torchhpo as th
from torchhpo.testing import check_scheduler


def test_contract():
    check_scheduler(lambda seed: th.FreezeThaw(1, 9))
