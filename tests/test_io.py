"""Atomic writes: a failure leaves the previous file and no temporary file behind."""

from __future__ import annotations

import json

import pytest

from spikelatent.io import atomic_path, write_json_atomic, write_text_atomic


def test_success_replaces_the_target_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "sub" / "result.json"
    write_json_atomic(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "result.txt"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.txt"]


def test_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "x.json", {"a": float("nan")})
    assert not list(tmp_path.iterdir())
