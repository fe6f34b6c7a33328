import numpy as np
import pytest

from mannequin.errors import InputError
from mannequin.workspace import Workspace, atomic_path, clean_temporaries, save_npy, write_text


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "a.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_atomic_dir_replaces_whole_folder(tmp_path):
    d = tmp_path / "frames"
    with atomic_path(d, is_dir=True) as tmp:
        tmp.mkdir()
        (tmp / "1.txt").write_text("x")
    with atomic_path(d, is_dir=True) as tmp:
        tmp.mkdir()
        (tmp / "2.txt").write_text("y")
    assert sorted(p.name for p in d.iterdir()) == ["2.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


def test_npy_round_trip_and_temporaries_cleaned(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    save_npy(tmp_path / "x.npy", a)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), a)
    (tmp_path / ".x.npy.tmp-1-abc").write_bytes(b"partial")
    assert clean_temporaries(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def test_stamps(tmp_path):
    ws = Workspace(tmp_path / "ws").create()
    assert not ws.is_done("sfm", "abc")
    ws.write_stamp("sfm", "abc", seconds=1.5)
    assert not ws.is_done("sfm", "abc")  # a stamp without the stage's outputs is not done
    _fake_sfm_outputs(ws)
    assert ws.is_done("sfm", "abc") and not ws.is_done("sfm", "abd")
    assert ws.read_stamp("sfm")["seconds"] == 1.5
    ws.clear_stamp("sfm")
    assert not ws.is_done("sfm", "abc")
    assert ws.label_path("000001") == ws.root / "labels" / "000001.npy"


def test_workspace_on_a_file_is_an_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(InputError, match="not a folder"):
        Workspace(f)


def _fake_sfm_outputs(ws):
    ws.images_dir.mkdir(parents=True, exist_ok=True)
    (ws.images_dir / "000001.png").write_bytes(b"png")
    ws.sparse_dir.mkdir(parents=True, exist_ok=True)
    write_text(ws.cameras_txt, "url\n")


def test_stamp_with_deleted_outputs_is_not_done(tmp_path):
    """Deleting a stage's outputs by hand makes it run again, even though its stamp matches."""
    ws = Workspace(tmp_path / "ws").create()
    _fake_sfm_outputs(ws)
    ws.write_stamp("stereo", "h")
    assert not ws.is_done("stereo", "h")  # no depth maps yet
    save_npy(ws.depth_path("000001"), np.ones((2, 2), np.float32))
    assert not ws.is_done("stereo", "h")  # confidence missing
    save_npy(ws.conf_path("000001"), np.ones((2, 2), np.float32))
    assert ws.is_done("stereo", "h")
    ws.depth_path("000001").unlink()
    assert not ws.is_done("stereo", "h")
