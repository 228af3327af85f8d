"""Utilities at the bottom floor: atomic file output (`io`), error classes (`errors`),
device resolution (`device`) and checkpoint files (`checkpoints`). Nothing here
imports any other part of onet."""
