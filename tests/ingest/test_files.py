"""Security review (issue 32) at the lowest layer: symbolic links are never followed by discovery or loading, and
atomic writes keep a file's mode. Real files and links in a temporary folder."""

from __future__ import annotations

import os
import stat

import pytest

from ingest import IngestError, discover, fingerprint, load
from ingest.files import LinkRefused, atomic_write, make_private, private_dir, read_nofollow

SECRET = 'client_secret = "s3cr3t-value"\n'


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    """The usual umask, so a file created with the default mode would be readable by others."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def share(tmp_path):
    """share/ with one real document, a link to a 0600 secrets file outside it, and a link to a folder outside."""
    secret = tmp_path / "kb.toml"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "private.md").write_text("# Salaries\n\nThe CEO earns a lot.\n")
    root = tmp_path / "share"
    root.mkdir()
    (root / "policy.md").write_text("# Policy\n\nBe kind.\n")
    (root / "notes.txt").symlink_to(secret)
    (root / "more").symlink_to(outside, target_is_directory=True)
    return root


def test_discover_reports_links_inside_a_folder_and_never_follows_them(share):
    found = discover([share])
    assert [p.name for p in found.files] == ["policy.md"]
    assert sorted(p.name for p, _ in found.links) == ["more", "notes.txt"]
    assert all("symbolic link" in why and "copy the file itself" in why for _, why in found.links)


def test_a_root_given_as_a_link_is_read_but_nothing_inside_leads_out(share, tmp_path):
    alias = tmp_path / "alias"
    alias.symlink_to(share, target_is_directory=True)
    found = discover([alias])
    assert [p.name for p in found.files] == ["policy.md"] and found.roots == [share.resolve()]
    assert sorted(p.name for p, _ in found.links) == ["more", "notes.txt"]


def test_a_file_given_that_is_a_link_is_skipped_not_read(share):
    found = discover([share / "notes.txt"])
    assert found.files == [] and [p.name for p, _ in found.links] == ["notes.txt"]


def test_load_refuses_a_linked_file_and_a_linked_sidecar(share, tmp_path):
    with pytest.raises(IngestError) as linked:
        load(share / "notes.txt")
    assert "symbolic link" in linked.value.reason and "s3cr3t" not in str(linked.value)
    groups = tmp_path / "acl.json"
    groups.write_text('{"acl": ["hr"]}')
    (share / "policy.md.meta.json").symlink_to(groups)
    with pytest.raises(IngestError) as side:
        load(share / "policy.md")
    assert side.value.path.endswith("policy.md.meta.json") and "symbolic link" in side.value.reason
    with pytest.raises(IngestError):
        fingerprint(share / "policy.md")


def test_read_nofollow_refuses_a_link_and_reads_a_file(share):
    with pytest.raises(LinkRefused):
        read_nofollow(share / "notes.txt")
    assert read_nofollow(share / "policy.md").startswith(b"# Policy")


def test_atomic_write_keeps_the_old_mode_and_private_caps_it(tmp_path, umask_022):
    kept = tmp_path / "kb.toml"
    kept.write_text("a = 1\n")
    kept.chmod(0o600)
    atomic_write(kept, "a = 2\n")
    assert kept.read_text() == "a = 2\n" and mode(kept) == 0o600
    wide = tmp_path / "wide.toml"
    wide.write_text("x")
    wide.chmod(0o644)
    atomic_write(wide, "y")
    assert mode(wide) == 0o644  # kept, never narrowed unasked
    atomic_write(wide, "[auth]\n", private=True)
    assert mode(wide) == 0o600  # secrets: never wider than 0600
    fresh = atomic_write(tmp_path / "new" / "secrets.toml", "k", private=True)
    assert mode(fresh) == 0o600 and mode(fresh.parent) == 0o700
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kb.toml", "new", "wide.toml"]  # no temporary left


def test_atomic_write_replaces_a_link_instead_of_writing_through_it(share, tmp_path):
    atomic_write(share / "notes.txt", "mine")
    assert (tmp_path / "kb.toml").read_text() == SECRET and not (share / "notes.txt").is_symlink()


def test_private_folders_and_trees(tmp_path, umask_022):
    made = private_dir(tmp_path / "a" / "b")
    assert mode(tmp_path / "a") == mode(made) == 0o700
    (made / "f").write_text("x")
    (made / "sub").mkdir()
    (made / "sub" / "g").write_text("y")
    make_private(made)
    assert {mode(p) for p in made.rglob("*") if p.is_file()} == {0o600}
    assert mode(made / "sub") == 0o700
