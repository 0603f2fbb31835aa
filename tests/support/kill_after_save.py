"""Stop a pretraining run right after its N-th checkpoint, as a kill would (test helper)."""

from __future__ import annotations

from typing import Any

import pytest


def pretrain_killed_after_save(cfg: Any, saves: int) -> None:
    """Run ``train.pretrain.pretrain(cfg)`` and interrupt it right after its ``saves``-th
    checkpoint write (KeyboardInterrupt), restoring the real writer afterwards."""
    import train.pretrain as tp

    calls = {"n": 0}
    real_save = tp._save

    def save_then_die(*args: object, **kwargs: object) -> None:
        real_save(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == saves:
            raise KeyboardInterrupt(f"killed after checkpoint {saves}")

    tp._save = save_then_die
    try:
        with pytest.raises(KeyboardInterrupt):
            tp.pretrain(cfg, log=lambda *_: None)
    finally:
        tp._save = real_save
