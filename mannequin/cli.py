"""The ``mannequin`` command line: a thin shell over the library API.

Every command converts its arguments into a :class:`~mannequin.config.Config` (or plain values)
and calls one API function.  A :class:`~mannequin.errors.MannequinError` (or an OSError, or
Ctrl-C) becomes one line on stderr and a non-zero exit code; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from mannequin.errors import InputError, MannequinError

if TYPE_CHECKING:
    from mannequin.config import Config
    from mannequin.workspace import Workspace

log = logging.getLogger("mannequin")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size {text!r}: expected WxH, e.g. 384x288") from None
    if w < 16 or h < 16 or w > 8192 or h > 8192:
        raise argparse.ArgumentTypeError(f"--size {text!r}: width and height must be in 16..8192")
    return w, h


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (the usage dump is what ``--help`` is for)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _path(text: str) -> Path:
    """A path argument; an empty one (which would mean the current folder) is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path")
    return Path(text)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars or info messages")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")


def _config_args(p: argparse.ArgumentParser, frames: bool = False) -> None:
    p.add_argument("--preset", default=None, help="named preset: fast, default or quality (default: default, "
                   "or the workspace's config.json for a stage command)")
    p.add_argument("--config", type=Path, help="JSON file of options (partial), applied over the preset")
    p.add_argument("--max-size", type=int, help="longest frame side in px after resizing (0 = keep)")
    if frames:
        p.add_argument("--fps", type=float, help="frame rate of an image folder: timestamps are index × 1e6 / FPS "
                       "µs (default 30); a video's timestamps are its own")
    p.add_argument("--intrinsics", help="fx,fy,cx,cy[,k1,k2,p1,p2[,k3]] in input-frame pixels, or a file "
                   "(default: a 60° field-of-view prior, then self-calibration)")
    p.add_argument("--readout-ms", type=float, help="rolling-shutter readout time in ms (0 = global shutter; "
                   "default -1: estimated when the camera turns fast)")


def resolve_config(args: argparse.Namespace, workspace: Path | None = None) -> Config:
    """The config: the workspace's config.json (stage commands) or ``--preset``, then ``--config``,
    ``--max-size``, ``--fps``, ``--intrinsics`` and ``--readout-ms``, in that order."""
    from mannequin.config import Config, check_option, preset, with_flag

    ws_cfg = workspace / "config.json" if workspace is not None else None
    if args.preset is None and ws_cfg is not None and ws_cfg.is_file():
        cfg = Config.load(ws_cfg)
    else:
        cfg = preset("default" if args.preset is None else args.preset)
    if getattr(args, "config", None) is not None:
        cfg = Config.load(args.config, base=cfg)
    if getattr(args, "max_size", None) is not None:
        cfg = with_flag(cfg, "--max-size", args.max_size)
    if getattr(args, "fps", None) is not None:
        check_option("frames", "image_fps", args.fps, "--fps")
        if getattr(args, "input", None) is not None and not Path(args.input).is_dir():
            raise InputError(f"{args.input}: --fps sets the frame rate of an image folder; a video has its own "
                             "timestamps (to sample a video, set frames.fps in --config)")
        cfg = with_flag(cfg, "--fps", args.fps)
    if getattr(args, "intrinsics", None):
        cfg = with_flag(cfg, "--intrinsics", args.intrinsics)
    if getattr(args, "readout_ms", None) is not None:
        cfg = with_flag(cfg, "--readout-ms", args.readout_ms)
    return cfg


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stdout.isatty()


# --- commands --------------------------------------------------------------------------------

def cmd_synth(args: argparse.Namespace) -> int:
    from mannequin.testing.synth import synth

    w, h = args.size
    out = synth(args.out, seed=args.seed, n_frames=args.frames, width=w, height=h, video=args.video,
                moving=args.moving, k1=args.k1, k2=args.k2, motion=args.motion)
    print(out)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from mannequin.pipeline import run_video

    cfg = resolve_config(args)

    def on_stage(stage: str, state: str) -> None:
        if state == "skipped":
            log.info("%s: up to date, skipped", stage)

    ws = run_video(args.input, args.out, poses=args.poses, config=cfg, progress=_progress(args), on_stage=on_stage)
    _print_outputs(ws)
    return 0


def _print_outputs(ws: Workspace) -> None:
    from mannequin.workspace import read_json_or_empty

    report = read_json_or_empty(ws.report_json)
    verdict = report.get("verdict", {})
    labels = report.get("stages", {}).get("labels", {})
    print(f"labels:  {ws.labels_dir}  ({labels.get('kept', '?')} of {labels.get('frames', '?')} frames kept)")
    print(f"cloud:   {ws.fused_ply}")
    print(f"report:  {ws.preview_dir / 'report.html'}")
    if verdict.get("verdict"):
        extra = f" ({'; '.join(verdict['reasons'])})" if verdict.get("reasons") else ""
        print(f"verdict: {verdict['verdict']}{extra}")


def _stage_command(stage: str) -> Callable[[argparse.Namespace], int]:
    def cmd(args: argparse.Namespace) -> int:
        from mannequin.pipeline import open_workspace, run_stage_command
        from mannequin.workspace import Workspace

        ws = Workspace(args.out) if stage == "frames" else open_workspace(args.workspace)
        cfg = resolve_config(args, ws.root)
        state = run_stage_command(ws, stage, cfg, input_path=getattr(args, "input", None),
                                  poses=getattr(args, "poses", None), progress=_progress(args))
        print({"frames": ws.frames_dir, "sfm": ws.sparse_dir, "stereo": ws.depth_dir, "fuse": ws.labels_dir,
               "labels": ws.labels_dir}[stage])
        if state == "skipped":
            log.info("%s: up to date, skipped", stage)
        return 0
    return cmd


def cmd_eval(args: argparse.Namespace) -> int:
    from mannequin.evaluate import evaluate, to_json, write_eval_plots
    from mannequin.workspace import Workspace

    ws = Workspace(args.workspace)
    result = evaluate(ws, args.gt_depth, depth_scale=args.depth_scale, gt_camera=args.gt_intrinsics or None,
                      gt_poses=args.gt_poses, which=args.which, gt_format=args.gt_format)
    write_eval_plots(ws, result)
    print(to_json(result))
    for warning in result.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    if not args.quiet:
        c, p = result["clip"], result.get("poses")
        line = (f"{ws.root.name}: {args.which} vs GT depth: AbsRel {100 * (c['absrel'] or 0):.2f}%, "
                f"delta<1.05 {100 * (c['delta_1.05'] or 0):.1f}%, density {_percent(c['density'])} "
                f"over {c['frames']} frames (scale {c['scale']:.4g}{', fitted' if c['scale_fitted'] else ''})")
        if p:
            line += f"; camera path error (ATE) {p['rmse_pct']:.2f}% of {p['length']:.3g}"
        print(line, file=sys.stderr)
    return 0


def _percent(value: float | None) -> str:
    """``value`` (a share, or None where undefined) as a percentage for the terminal."""
    return "n/a" if value is None else f"{100 * value:.1f}%"


def cmd_batch(args: argparse.Namespace) -> int:
    import time

    from mannequin.batch import format_summary, run_batch

    t0 = time.perf_counter()
    rows = run_batch(args.inputs, args.out, config=resolve_config(args), scheduler=args.scheduler,
                     workers=args.workers, progress=_progress(args), retries=args.retries)
    print(format_summary(rows, time.perf_counter() - t0))
    return _exit_code(rows, "batch", "videos", args.out)


def cmd_mc(args: argparse.Namespace) -> int:
    import time

    from mannequin.batch import format_summary
    from mannequin.mc import NoCameraFiles, run_mc

    t0 = time.perf_counter()
    try:
        rows = run_mc(args.cameras, args.videos, args.out, refine_poses=args.refine_poses, sfm=args.sfm,
                      config=resolve_config(args), scheduler=args.scheduler, workers=args.workers,
                      progress=_progress(args), retries=args.retries)
    except NoCameraFiles as exc:   # an empty CAMERAS set is a command-line error: exit 2
        print(f"mannequin mc: error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(rows, time.perf_counter() - t0))
    print(f"dataset: {args.out / 'index.csv'}, {args.out / 'frames.csv'}")
    missing = sum(r["state"] == "missing" for r in rows)
    if missing:
        print(f"missing: {missing} videos, URLs in {args.out / 'missing_videos.txt'}")
    return _exit_code(rows, "mc", "sequences", args.out)


def _exit_code(rows: list[dict], command: str, units: str, out: Path) -> int:
    """1 with one error line on stderr when any row failed, else 0 (``batch`` and ``mc``)."""
    failed = sum(r["state"] == "failed" for r in rows)
    if failed:
        print(f"mannequin {command}: error: {failed} of {len(rows)} {units} failed "
              f"(reasons in {out / 'status.csv'})", file=sys.stderr)
    return 1 if failed else 0


def _cluster_args(p: argparse.ArgumentParser, unit: str) -> None:
    """The Dask options shared by ``batch`` and ``mc`` (one ``unit`` = a video or a sequence), then
    the config and common options."""
    p.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler of a running cluster (default: embedded)")
    p.add_argument("--workers", type=int, help=f"embedded worker processes (default: cores, at most one per {unit})")
    p.add_argument("--retries", type=int, default=2, help=f"re-runs of a {unit} whose worker process died (default 2)")
    _config_args(p)
    _add_common(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mannequin",
        description="Frozen-scene videos to multi-view depth labels, on the CPU.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("run", help="the whole pipeline: frames, sfm, stereo, fuse, labels (resumable)")
    p.add_argument("input", type=Path, help="video file or folder of images")
    p.add_argument("--out", type=_path, required=True, help="workspace folder")
    p.add_argument("--poses", type=Path, help="MC/RealEstate10K camera file: use its intrinsics and poses as given")
    _config_args(p, frames=True)
    _add_common(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("frames", help="extract and select frames from a video or image folder")
    p.add_argument("input", type=Path, help="video file or folder of images")
    p.add_argument("--out", type=_path, required=True, help="workspace folder")
    p.add_argument("--poses", type=Path, help="camera file whose timestamps pick the frames (only with "
                                              "frames.pose_timestamps in --config)")
    _config_args(p, frames=True)
    _add_common(p)
    p.set_defaults(func=_stage_command("frames"))

    p = sub.add_parser("sfm", help="poses and intrinsics with pycolmap, or import known poses")
    p.add_argument("workspace", type=Path, help="workspace folder holding frames/")
    p.add_argument("--poses", type=Path, help="MC/RealEstate10K camera file: use its intrinsics and poses as given")
    _config_args(p)
    _add_common(p)
    p.set_defaults(func=_stage_command("sfm"))

    for stage, text in [("stereo", "plane-sweep depth and confidence for every frame"),
                        ("fuse", "multi-view consistency filter, frame QC and fused point cloud"),
                        ("labels", "label PNGs, index.csv, COLMAP depth maps, previews and report.html")]:
        p = sub.add_parser(stage, help=text)
        p.add_argument("workspace", type=Path, help="workspace folder")
        _config_args(p)
        _add_common(p)
        p.set_defaults(func=_stage_command(stage))

    p = sub.add_parser("batch", help="many videos on a Dask cluster: ROOT/<name>/ each, status.csv/json, resumable")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="video, folder of videos, or manifest (.csv: video[,cameras][,name]; .txt: VIDEO [CAMERAS])")
    p.add_argument("--out", type=_path, required=True, help="output root")
    _cluster_args(p, "video")
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("mc", help="a Mannequin Challenge / RealEstate10K dataset of camera files: labels for "
                       "every sequence, ROOT/index.csv, frames.csv, missing_videos.txt (resumable)")
    p.add_argument("cameras", nargs="+", type=Path, metavar="CAMERAS",
                   help="camera files (.txt), or folders searched recursively for them (train/, test/, ...)")
    p.add_argument("--videos", type=_path, required=True,
                   help="folder of videos named ID.<ext> (ID from the URL line: YouTube watch?v=ID, youtu.be/ID, "
                        "shorts/ID, else the URL's last path component), or a .csv of url,path rows")
    p.add_argument("--out", type=_path, required=True, help="output root: ROOT/<id>/ per sequence")
    poses = p.add_mutually_exclusive_group()
    poses.add_argument("--refine-poses", action="store_true", help="bundle-adjust the given poses (intrinsics "
                       "fixed) before stereo, and report how far the cameras moved")
    poses.add_argument("--sfm", action="store_true", help="run SfM instead of the given poses, and report the "
                       "given poses' error after a similarity alignment")
    _cluster_args(p, "sequence")
    p.set_defaults(func=cmd_mc)

    p = sub.add_parser("eval", help="accuracy of the labels against ground-truth depth (JSON on stdout)")
    p.add_argument("workspace", type=Path, help="workspace folder with labels")
    p.add_argument("--gt-depth", type=Path, required=True,
                   help="folder of GT depth <name>.npy|.png|.pfm, or of Middlebury disparity (see --gt-format)")
    p.add_argument("--gt-format", choices=["auto", "depth", "middlebury"], default="auto",
                   help="depth; middlebury: disparity <name>|disp<N>.pfm (for frame im<N>) with calib.txt "
                        "(depth in mm), or without (2003 .png/.pgm: up to scale); auto (default): middlebury "
                        "if DIR/calib.txt exists")
    p.add_argument("--gt-poses", type=Path, help="GT poses (MC camera file or TUM trajectory), one per frame")
    p.add_argument("--depth-scale", type=float, default=1.0, help="GT units per pose unit: PNG depth (TUM: 5000), "
                   "Middlebury mm (1000 for poses in metres)")
    p.add_argument("--gt-intrinsics", help="GT camera fx,fy,cx,cy[,k1,k2,p1,p2[,k3]] (OpenCV convention): "
                   "compare through 3-D points, for GT registered to distorted images")
    p.add_argument("--which", choices=["labels", "depth", "sparse"], default="labels",
                   help="labels (default), raw depth, or sparse: the SfM points each frame sees (structure accuracy)")
    _add_common(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("synth", help="render a synthetic frozen scene with exact depth and cameras")
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=24, help="number of frames (default 24)")
    p.add_argument("--size", type=_size, default=(384, 288), help="WxH (default 384x288)")
    p.add_argument("--video", action="store_true", help="also write an H.264 video.mp4")
    p.add_argument("--moving", action="store_true", help="one person moves (an 'unfrozen' mannequin)")
    p.add_argument("--k1", type=float, default=0.0, help="radial distortion k1 (default 0)")
    p.add_argument("--k2", type=float, default=0.0, help="radial distortion k2 (default 0)")
    from mannequin.testing.scene import MOTIONS

    p.add_argument("--motion", choices=MOTIONS, default="walk",
                   help="camera path: a sideways walk (default), a handheld walk shaken and turning at up "
                        "to about 50°/s, or a turn in place")
    _add_common(p)
    p.set_defaults(func=cmd_synth)
    return parser


def _setup_logging(debug: bool, quiet: bool) -> None:
    """The terminal gets INFO (WARNING with --quiet, DEBUG with --debug); the logger itself stays at
    INFO or below, so that WS/logs/mannequin.log (pipeline.stage_log) keeps the stage messages."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s" if debug else "%(message)s"))
    handler.setLevel(logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    saved = (list(log.handlers), log.level, log.propagate)  # main() may run in-process (tests, notebooks)
    _setup_logging(debug, getattr(args, "quiet", False))
    interrupted, restore = _watch_sigint()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("mannequin: interrupted; finished stages are kept, run again to resume", file=sys.stderr)
        return 130
    except Exception as exc:
        if interrupted():  # Ctrl-C inside an import or a C extension can surface as another error
            print("mannequin: interrupted; finished stages are kept, run again to resume", file=sys.stderr)
            return 130
        return _report_error(args, exc, debug)
    finally:
        restore()
        log.handlers[:] = saved[0]
        log.setLevel(saved[1])
        log.propagate = saved[2]


def _watch_sigint() -> tuple[Callable[[], bool], Callable[[], object]]:
    """Keep Ctrl-C raising KeyboardInterrupt, and remember that it came; returns (a function that
    says whether it did, one that restores the previous handler).  Outside the main thread, or where
    signals cannot be set, nothing changes."""
    import signal
    import threading

    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        return (lambda: False), (lambda: None)

    def on_sigint(signum: int, frame: object) -> None:
        seen.append(signum)
        raise KeyboardInterrupt

    try:
        before = signal.signal(signal.SIGINT, on_sigint)
    except (ValueError, OSError):
        return (lambda: False), (lambda: None)
    return (lambda: bool(seen)), (lambda: signal.signal(signal.SIGINT, before))


def _report_error(args: argparse.Namespace, exc: Exception, debug: bool) -> int:
    """One line on stderr for ``exc`` (the traceback too with ``--debug``); returns the exit code."""
    if debug:
        raise exc
    if isinstance(exc, MannequinError):
        print(f"mannequin {args.command}: error: {exc}", file=sys.stderr)
        return 1
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"mannequin {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    # an unexpected failure still gets one line without --debug
    print(f"mannequin {args.command}: internal error: {type(exc).__name__}: {exc} "
          f"(run with --debug for the traceback)", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
