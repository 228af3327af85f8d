"""onet.utils.stamp: the options that made an output folder, compared on rerun (issue 12)."""

import pytest
import yaml

from onet.utils.errors import UsageError
from onet.utils.stamp import OptionsMismatch, check_stamp, claim_folder, read_stamp, write_stamp


def test_same_options_resume_other_options_are_refused_overwrite_clears(tmp_path):
    cleared = []
    opts = {"n_points": 100, "sizes": (1, 2), "nested": {"a": 1}}
    assert claim_folder(tmp_path, "preprocess", opts, clear=lambda: cleared.append(1)) is False
    assert read_stamp(tmp_path) == {"verb": "preprocess", "options": {"n_points": 100, "sizes": [1, 2],
                                                                      "nested": {"a": 1}}}
    assert claim_folder(tmp_path, "preprocess", opts, clear=lambda: cleared.append(1)) is False
    changed = {"n_points": 50, "sizes": (1, 2), "nested": {"a": 2}, "new": True}
    with pytest.raises(OptionsMismatch) as err:
        claim_folder(tmp_path, "preprocess", changed, clear=lambda: cleared.append(1))
    assert isinstance(err.value, UsageError)  # exit code 2
    assert set(err.value.differences) == {"n_points", "nested.a", "new"}
    assert "n_points: 100 -> 50" in str(err.value) and "new: unset -> True" in str(err.value)
    assert "--overwrite" in str(err.value) and not cleared
    assert claim_folder(tmp_path, "preprocess", changed, overwrite=True, clear=lambda: cleared.append(1)) is True
    assert cleared == [1] and yaml.safe_load((tmp_path / "stamp.yaml").read_text())["options"]["n_points"] == 50


def test_an_unreadable_stamp_counts_as_none(tmp_path):
    (tmp_path / "stamp.yaml").write_bytes(b"\xff\xfe: [")
    assert read_stamp(tmp_path) is None


def test_ignored_options_are_recorded_but_not_compared(tmp_path):
    options = {"checkpoint": "/old/place/model.pt", "checkpoint_sha256": "abc", "seed": 0}
    write_stamp(tmp_path, "generate", options)
    moved = dict(options, checkpoint="/new/place/model.pt")
    assert check_stamp(tmp_path, "generate", moved, ignore=("checkpoint",))
    with pytest.raises(OptionsMismatch, match="checkpoint: '/old/place/model.pt' -> '/new/place/model.pt'"):
        check_stamp(tmp_path, "generate", moved)
    with pytest.raises(OptionsMismatch, match="checkpoint_sha256"):  # other weights are still other weights
        check_stamp(tmp_path, "generate", dict(moved, checkpoint_sha256="def"), ignore=("checkpoint",))
    assert read_stamp(tmp_path)["options"]["checkpoint"] == "/old/place/model.pt"
