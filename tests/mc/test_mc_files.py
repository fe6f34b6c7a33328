"""mannequin.mc without a pipeline run: camera files, URL → video id, --videos, bad input, the real
RealEstate10K files (every video missing: no cluster starts), the index of a given_poses summary."""
import csv
import json
from pathlib import Path

import pytest

from mannequin.cli import main
from mannequin.config import Config
from mannequin.errors import InputError
from mannequin.mc import (
    INDEX_COLUMNS,
    McSequence,
    NoCameraFiles,
    VideoFinder,
    find_camera_files,
    mc_config,
    read_sequences,
    run_mc,
    video_id,
)
from mannequin.mc.index import index_row

POSE_LINE = "0 0.8 1.1 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 0"


def camera_file(path, url, timestamps=(0, 100000)):
    """A valid camera file at ``path`` with ``url`` on its first line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(url + "\n" + "".join(f"{t} {POSE_LINE.split(' ', 1)[1]}\n" for t in timestamps))
    return path


def touch(path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def tree(folder):
    """Every path under ``folder``, relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


@pytest.mark.parametrize("url,expected", [
    ("https://www.youtube.com/watch?v=QShWPZxTDoE", "QShWPZxTDoE"),
    ("https://www.youtube.com/watch?feature=share&v=-aldZQifF2U&t=30", "-aldZQifF2U"),
    ("http://youtube.com/watch?v=_ca03xP_KUU", "_ca03xP_KUU"),
    ("www.youtube.com/watch?v=abc", "abc"),
    ("https://youtu.be/a-Unpcomk5k?t=12", "a-Unpcomk5k"),
    ("https://www.youtube.com/shorts/in69BD2eZqg", "in69BD2eZqg"),
    ("https://m.youtube.com/embed/sLIFyXD2ujI", "sLIFyXD2ujI"),
    ("https://example.org/videos/clip_07/", "clip_07"),
    ("https://example.org/videos/clip_07.mp4", "clip_07.mp4"),
    ("  https://youtu.be/XYZ  ", "XYZ"),
    ("https://www.youtube.com/watch", ""),
    ("", ""),
])
def test_video_id_of_a_url(url, expected):
    assert video_id(url) == expected


def test_camera_files_from_folders_recursive_sorted_once(tmp_path):
    a = camera_file(tmp_path / "mc" / "train" / "b.txt", "u")
    b = camera_file(tmp_path / "mc" / "test" / "deep" / "a.txt", "u")
    camera_file(tmp_path / "mc" / ".hidden" / "c.txt", "u")
    camera_file(tmp_path / "mc" / "train" / ".d.txt", "u")
    touch(tmp_path / "mc" / "train" / "notes.md")
    found = find_camera_files([tmp_path / "mc", a, tmp_path / "mc" / "train"])
    assert found == sorted([a.absolute(), b.absolute()])
    with pytest.raises(InputError, match="not a camera file"):
        find_camera_files([touch(tmp_path / "x.mp4")])
    with pytest.raises(InputError, match="camera file or folder not found"):
        find_camera_files([tmp_path / "nope"])


def test_video_folder_prefers_video_extensions_and_ignores_downloader_files(tmp_path):
    v = tmp_path / "videos"
    for name in ["AAA.webm", "AAA.mp4", "AAA.mp4.part", "AAA.info.json", "AAA.jpg", "BBB.mp4.part", "CCC.flv",
                 ".DDD.mp4", "clip.mp4"]:
        touch(v / name)
    finder = VideoFinder(v)
    assert finder.find("https://youtu.be/AAA")[0] == (v / "AAA.mp4").absolute()
    assert finder.find("https://youtu.be/BBB") == (None, str(v / "BBB.*"))    # only a partial download
    assert finder.find("https://www.youtube.com/watch?v=CCC")[0] == (v / "CCC.flv").absolute()
    assert finder.find("https://youtu.be/DDD")[0] is None                     # hidden
    assert finder.find("https://example.org/media/clip.mp4")[0] == (v / "clip.mp4").absolute()
    with pytest.raises(InputError, match="--videos .*nope: folder not found"):
        VideoFinder(tmp_path / "nope")


def test_video_csv_of_url_and_path(tmp_path):
    touch(tmp_path / "dl" / "one.mkv")
    touch(tmp_path / "abs.mp4")
    listing = tmp_path / "dl" / "videos.csv"
    listing.write_text("url,path\n# a comment\nhttps://youtu.be/ONE,one.mkv\n"
                       f"https://www.youtube.com/watch?v=TWO,{tmp_path / 'abs.mp4'}\n"
                       "https://youtu.be/GONE,gone.mp4\n")
    finder = VideoFinder(listing)
    assert finder.find("https://youtu.be/ONE")[0] == (tmp_path / "dl" / "one.mkv").absolute()
    assert finder.find("https://youtube.com/shorts/TWO")[0] == (tmp_path / "abs.mp4").absolute()  # by its id
    assert finder.find("https://youtu.be/GONE") == (None, str((tmp_path / "dl" / "gone.mp4").absolute()))
    assert finder.find("https://youtu.be/NONE")[0] is None
    bad = tmp_path / "bad.csv"
    bad.write_text("https://youtu.be/X\n")
    with pytest.raises(InputError, match="row 1 is not 'url,path'"):
        VideoFinder(bad)


def test_bad_camera_file_and_duplicate_ids_fail_their_sequences(tmp_path):
    touch(tmp_path / "v" / "AAA.mp4")
    ok = camera_file(tmp_path / "c" / "train" / "ok.txt", "https://youtu.be/AAA")
    bad = tmp_path / "c" / "train" / "bad.txt"
    bad.write_text("https://youtu.be/AAA\n0 1 2\n")
    d1 = camera_file(tmp_path / "c" / "train" / "dup.txt", "https://youtu.be/AAA")
    d2 = camera_file(tmp_path / "c" / "test" / "DUP.txt", "https://youtu.be/AAA")
    nourl = camera_file(tmp_path / "c" / "test" / "nourl.txt", "https://www.youtube.com/watch")
    seqs = {(s.id, s.camera_file.parent.name): s for s in
            read_sequences(find_camera_files([tmp_path / "c"]), VideoFinder(tmp_path / "v"))}
    assert seqs["ok", "train"].error == "" and seqs["ok", "train"].video == (tmp_path / "v" / "AAA.mp4").absolute()
    assert seqs["ok", "train"].frames == 2 and seqs["ok", "train"].camera_file == ok.absolute()
    assert seqs["bad", "train"].error == f"{bad.absolute()}:2: expected 19 columns, found 3"
    assert "duplicate sequence id 'dup'" in seqs["dup", "train"].error and str(d2.absolute()) in seqs["dup", "train"].error
    assert "duplicate sequence id 'DUP'" in seqs["DUP", "test"].error and str(d1.absolute()) in seqs["DUP", "test"].error
    assert seqs["nourl", "test"].error == f"{nourl.absolute()}:1: no video id in the URL line " \
                                          "'https://www.youtube.com/watch'"


def test_flags_set_pose_timestamps_and_given_poses():
    assert mc_config().frames.pose_timestamps is True
    assert mc_config().sfm.given_poses == "use"
    assert mc_config(refine_poses=True).sfm.given_poses == "refine"
    assert mc_config(sfm=True).sfm.given_poses == "check"
    assert mc_config(Config().replace(sfm={"given_poses": "refine"})).sfm.given_poses == "refine"
    with pytest.raises(InputError, match="--refine-poses and --sfm exclude each other"):
        mc_config(refine_poses=True, sfm=True)


def test_index_row_reports_the_given_poses_summary(tmp_path):
    ws = tmp_path / "root" / "s1"
    (ws / "sfm").mkdir(parents=True)
    (ws / "labels").mkdir()
    (ws / "sfm" / "summary.json").write_text(json.dumps({"given_poses": {
        "mode": "refine", "median_rotation_deg": 0.123456789, "median_centre_move_rel": 0.0123, "frames": 4}}))
    (ws / "labels" / "index.csv").write_text("name,valid_fraction,kept\n000000,0.5,true\n000003,0.7,true\n")
    seq = McSequence("s1", tmp_path / "s1.txt", url="https://youtu.be/X", frames=4, video=tmp_path / "X.mp4")
    row = index_row(tmp_path / "root", seq, {"state": "done", "verdict": "accepted", "reason": ""}, "refine",
                    [{}, {}])
    assert set(row) == set(INDEX_COLUMNS)
    assert (row["pose_mode"], row["median_rotation_deg"], row["median_centre_move_rel"]) == ("refine", 0.123457, 0.0123)
    assert (row["labelled_frames"], row["mean_labelled_fraction"], row["workspace"]) == (2, 0.6, "s1")
    missing = index_row(tmp_path / "root", McSequence("s2", tmp_path / "s2.txt"), {"state": "missing"}, "use", [])
    assert (missing["pose_mode"], missing["median_rotation_deg"], missing["labelled_frames"]) == ("use", None, None)


def test_real_realestate10k_files_parse_resolve_and_are_listed_missing(shared_data, tmp_path, capsys):
    """The 10 real files: every line parses, the ids are the file stems, the YouTube ids come from the
    URLs, and with no video downloaded every sequence is missing, its URL listed once (exit 0, no
    cluster started, nothing written outside ROOT)."""
    folder = shared_data / "re10k_camera_files"
    files = find_camera_files([folder])
    assert len(files) == 10 and all(f.suffix == ".txt" for f in files)
    (tmp_path / "videos").mkdir()
    touch(tmp_path / "videos" / "QShWPZxTDoE.mp4.part")          # a download still running is no video
    seqs = read_sequences(files, VideoFinder(tmp_path / "videos"))
    assert [s.id for s in seqs] == sorted(f.stem for f in files)
    assert all(s.error == "" and s.frames == 16 and s.video is None for s in seqs)
    assert all(len(video_id(s.url)) == 11 for s in seqs)
    assert video_id(seqs[0].url) == "QShWPZxTDoE" and seqs[0].expected == str(tmp_path / "videos" / "QShWPZxTDoE.*")
    before = tree(folder)
    root = tmp_path / "out"
    assert main(["mc", str(folder), "--videos", str(tmp_path / "videos"), "--out", str(root), "--quiet"]) == 0
    assert tree(folder) == before and sorted(p.name for p in tmp_path.iterdir()) == ["out", "videos"]
    urls = sorted({s.url for s in seqs})
    assert (root / "missing_videos.txt").read_text() == "".join(f"{u}\n" for u in urls)
    status = list(csv.DictReader((root / "status.csv").open()))
    assert [(r["name"], r["state"]) for r in status] == [(s.id, "missing") for s in seqs]
    index = list(csv.DictReader((root / "index.csv").open()))
    assert [r["id"] for r in index] == [s.id for s in seqs] and {r["state"] for r in index} == {"missing"}
    assert (root / "frames.csv").read_text().splitlines()[1:] == []
    assert json.loads((root / "status.json").read_text())["summary"]["missing"] == 10
    assert "missing: 10 videos" in capsys.readouterr().out


def test_empty_camera_set_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "cams").mkdir()
    (tmp_path / "videos").mkdir()
    code = main(["mc", str(tmp_path / "cams"), "--videos", str(tmp_path / "videos"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("mannequin mc: error: ") and "no camera files" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(NoCameraFiles):
        run_mc([tmp_path / "cams"], tmp_path / "videos", tmp_path / "out")
    with pytest.raises(SystemExit) as exc:    # argparse: the two pose modes exclude each other
        main(["mc", str(tmp_path / "cams"), "--videos", "v", "--out", "o", "--sfm", "--refine-poses"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
