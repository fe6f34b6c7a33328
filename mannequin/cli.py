"""The ``mannequin`` command line: a thin shell over the library API.

Every command converts its arguments into a :class:`~mannequin.config.Config` (or plain values)
and calls one API function.  A :class:`~mannequin.errors.MannequinError` (or an OSError, or
Ctrl-C) becomes one line on stderr and a non-zero exit code; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from .errors import InputError, MannequinError

log = logging.getLogger("mannequin")


def _size(text: str):
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size {text!r}: expected WxH, e.g. 384x288") from None
    if w < 16 or h < 16 or w > 8192 or h > 8192:
        raise argparse.ArgumentTypeError(f"--size {text!r}: width and height must be in 16..8192")
    return w, h


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars or info messages")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="default", help="named preset: fast, default or quality")
    p.add_argument("--config", type=Path, help="JSON file of options (partial), applied over the preset")
    p.add_argument("--max-size", type=int, help="longest frame side in px after resizing (0 = keep)")


def resolve_config(args) -> "Config":  # noqa: F821 (imported lazily)
    """The config from ``--preset``, ``--config`` and ``--max-size``, in that order."""
    from .config import Config, preset

    cfg = preset(args.preset)
    if getattr(args, "config", None) is not None:
        cfg = Config.load(args.config, base=cfg)
    if getattr(args, "max_size", None) is not None:
        if args.max_size < 0 or args.max_size > 16384:
            raise InputError(f"--max-size {args.max_size}: must be between 0 (keep) and 16384 px")
        if 0 < args.max_size < 32:
            raise InputError(f"--max-size {args.max_size}: too small for stereo (use at least 32 px)")
        cfg = cfg.replace(frames={"max_size": args.max_size})
    return cfg


def _progress(args) -> bool:
    return not args.quiet and sys.stdout.isatty()


# --- commands --------------------------------------------------------------------------------

def cmd_synth(args) -> int:
    from .synth import synth

    w, h = args.size
    out = synth(args.out, seed=args.seed, n_frames=args.frames, width=w, height=h, video=args.video,
                moving=args.moving, k1=args.k1, k2=args.k2)
    print(out)
    return 0


def cmd_frames(args) -> int:
    from .frames import extract_frames
    from .workspace import Workspace

    cfg = resolve_config(args)
    ws = Workspace(args.out)
    out = extract_frames(args.input, ws, cfg.frames, progress=_progress(args))
    print(out)
    return 0


def cmd_sfm(args) -> int:
    from .sfm import run_sfm
    from .workspace import Workspace

    cfg = resolve_config(args)
    if args.intrinsics:
        cfg = cfg.replace(sfm={"intrinsics": args.intrinsics})
    ws = Workspace(args.workspace)
    if not ws.root.is_dir():
        raise InputError(f"{ws.root}: workspace not found (run 'mannequin frames INPUT --out {ws.root}' first)")
    out = run_sfm(ws, cfg.sfm, poses=args.poses, seed=cfg.seed, progress=_progress(args))
    print(out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mannequin",
        description="Frozen-scene videos to multi-view depth labels, on the CPU.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("frames", help="extract and select frames from a video or image folder")
    p.add_argument("input", type=Path, help="video file or folder of images")
    p.add_argument("--out", type=Path, required=True, help="workspace folder")
    _config_args(p)
    _add_common(p)
    p.set_defaults(func=cmd_frames)

    p = sub.add_parser("sfm", help="poses and intrinsics with pycolmap, or import known poses")
    p.add_argument("workspace", type=Path, help="workspace folder holding frames/")
    p.add_argument("--poses", type=Path, help="MC/RealEstate10K camera file: use its intrinsics and poses as given")
    p.add_argument("--intrinsics", help="fx,fy,cx,cy[,k1,k2,p1,p2[,k3]] in input-frame pixels, or a file")
    _config_args(p)
    _add_common(p)
    p.set_defaults(func=cmd_sfm)

    p = sub.add_parser("synth", help="render a synthetic frozen scene with exact depth and cameras")
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=24, help="number of frames (default 24)")
    p.add_argument("--size", type=_size, default=(384, 288), help="WxH (default 384x288)")
    p.add_argument("--video", action="store_true", help="also write an H.264 video.mp4")
    p.add_argument("--moving", action="store_true", help="one person moves (an 'unfrozen' mannequin)")
    p.add_argument("--k1", type=float, default=0.0, help="radial distortion k1 (default 0)")
    p.add_argument("--k2", type=float, default=0.0, help="radial distortion k2 (default 0)")
    _add_common(p)
    p.set_defaults(func=cmd_synth)
    return parser


def _setup_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s" if debug else "%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    _setup_logging(debug, getattr(args, "quiet", False))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("mannequin: interrupted; finished stages are kept, run again to resume", file=sys.stderr)
        return 130
    except MannequinError as exc:
        if debug:
            raise
        print(f"mannequin {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if debug:
            raise
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"mannequin {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # an unexpected failure still gets one line without --debug
        if debug:
            raise
        print(f"mannequin {args.command}: internal error: {type(exc).__name__}: {exc} "
              f"(run with --debug for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
