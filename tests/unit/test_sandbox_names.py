"""Machine-wide names of a sandbox come from its state dir: one per state dir, stable."""

from __future__ import annotations

from pathlib import Path

from podside.sandbox.layout import StateDir


def test_each_state_dir_gets_its_own_stable_id_and_names(tmp_path: Path) -> None:
    first, second = StateDir(tmp_path / "a"), StateDir(tmp_path / "b")
    assert first.sandbox_id == StateDir(tmp_path / "a").sandbox_id
    assert first.sandbox_id != second.sandbox_id
    assert len(first.sandbox_id) == 8
    assert first.node_netns != second.node_netns
    assert first.owner_file != second.owner_file
    uid = "0123abcd-4567-89ef-0123-456789abcdef"
    assert first.pod_netns(uid) == f"ps-{first.sandbox_id}-0123abcd"
    assert first.pod_netns(uid).startswith(first.pod_netns_prefix)
    assert not first.pod_netns(uid).startswith(second.pod_netns_prefix)


def test_the_id_names_the_directory_not_the_spelling_of_its_path(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    through_link = StateDir(tmp_path / "link")
    assert through_link.sandbox_id == StateDir(tmp_path / "real").sandbox_id
    assert through_link.sandbox_id == StateDir(tmp_path / "x" / ".." / "real").sandbox_id
