"""Many videos through :func:`mannequin.pipeline.run_video` on a Dask cluster: :func:`run_batch`.

Inputs.  Each INPUT is a video file, a folder of videos (its files with a video extension, sorted by
name, not recursive) or a manifest: a ``.csv`` with a header naming the columns ``video`` and
optionally ``cameras`` and ``name`` (without a header: video[,cameras] by position), or a ``.txt``
with one ``VIDEO [CAMERAS]`` per line (shell quoting for paths with spaces).  Relative manifest
paths resolve against the manifest's folder; ``#`` starts a comment.  Every video becomes the
workspace ``ROOT/<name>/``, name = the file stem (or the manifest's ``name``).  Two different
videos with the same name are an :class:`InputError` naming both (rename one, or give a ``name``
column in a CSV manifest): a silent suffix would make a workspace's name depend on the order of
the inputs, and a re-run could then resume the wrong video.

Engine.  Without ``scheduler``, :func:`local_cluster` starts an embedded Dask ``LocalCluster`` of
``workers`` (default: the usable cores, at most one per video) single-threaded worker processes,
each with ``NUMBA_NUM_THREADS = OMP_NUM_THREADS`` (and the BLAS pools) ``= max(1, cores // workers)``
set in the worker's environment before Numba is imported there (Numba cannot raise its thread count
after import, and ``plane_sweep`` uses all the threads Numba launched).  Videos go out largest input
first, at most one per worker thread at a time: the next one starts on whichever worker frees up
first, so a slow video never waits in another worker's queue.  With ``scheduler`` (an address, a
``Client`` or a cluster) the tasks run on that cluster; each task then limits Numba to
``cores of its host // worker threads on its host`` (set in the environment when Numba is not yet
imported in that worker, otherwise through ``numba.set_num_threads``).

Failures.  A task never raises: a :class:`MannequinError` (or any other exception) becomes a
``failed`` row with a one-line reason; tracebacks of unexpected errors and the pipeline's log go to
``ROOT/<name>/logs/batch.log``, not to the terminal.  A worker process that dies (killed, crashed,
out of memory) is replaced by its nanny and the scheduler re-runs its task on a live worker, up to
``retries`` times (the embedded cluster's ``distributed.scheduler.allowed-failures``; an external
scheduler applies its own setting, default 3), then the video is ``failed``; the re-run resumes from
the finished stages.  The futures are also submitted with ``retries=retries``, which re-runs a
task whose error escaped it (e.g. it could not be unpickled on the worker).  After the last
task, ``ROOT/status.csv`` and ``ROOT/status.json`` are written atomically.  A video whose stage
stamps all match its input, camera file and config is ``skipped`` without starting a worker, so
re-running a batch redoes only what failed or changed.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import re
import shlex
import sys
import time
import traceback
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mannequin.config import STAGES, Config, usable_cores
from mannequin.errors import InputError, MannequinError
from mannequin.workspace import Workspace, read_json_or_empty, write_json, write_text

log = logging.getLogger("mannequin.batch")

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
# DESIGN.md's columns first, in its order (a reader may go by position), then what batch adds.
STATUS_COLUMNS = ["name", "state", "reason", "frames", "seconds", "labels", "verdict", "input", "cameras",
                  "workspace"]
STATES = ("done", "failed", "skipped")


@dataclass(frozen=True)
class Job:
    """One video of a batch: its name (workspace folder under ROOT), video and optional camera file."""

    name: str
    video: Path
    cameras: Path | None = None
    source: str = ""          # where it was listed (for error messages)


# --- inputs ------------------------------------------------------------------------------------

def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _resolve(base: Path, text: str) -> Path:
    p = Path(os.path.expanduser(text.strip()))
    return (p if p.is_absolute() else base / p).absolute()


def _check_name(name: str, where: str) -> str:
    if not name or name in (".", "..") or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise InputError(f"{where}: {name!r} is not usable as a workspace folder name")
    return name


def _manifest_text(path: Path):
    """(folder that relative paths resolve against, the manifest's text)."""
    try:
        return path.parent.absolute(), path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read manifest ({exc})") from None


def _read_csv_manifest(path: Path) -> list[Job]:
    base, text = _manifest_text(path)
    lines = [(i, line) for i, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    rows = list(csv.reader(io.StringIO("\n".join(line for _, line in lines))))
    jobs: list[Job] = []
    if not rows:
        return jobs
    header = [c.strip().lower() for c in rows[0]]
    if "video" in header:
        unknown = [c for c in header if c not in ("video", "cameras", "name")]
        if unknown:
            raise InputError(f"{path}: unknown manifest column(s) {', '.join(unknown)} "
                             f"(known: video, cameras, name)")
        col = {c: header.index(c) for c in header}
        body = list(zip([n for n, _ in lines[1:]], rows[1:], strict=False))
    else:
        col = {"video": 0, "cameras": 1}
        body = list(zip([n for n, _ in lines], rows, strict=False))
    for lineno, row in body:
        where = f"{path}:{lineno}"
        if len(row) > len(col) and any(c.strip() for c in row[len(col):]):
            raise InputError(f"{where}: expected the columns {', '.join(col)}, got {len(row)} fields")
        cell = {k: (row[i].strip() if i < len(row) else "") for k, i in col.items()}
        if not cell["video"]:
            raise InputError(f"{where}: empty video path")
        video = _resolve(base, cell["video"])
        cameras = _resolve(base, cell["cameras"]) if cell.get("cameras") else None
        name = _check_name(cell["name"], where) if cell.get("name") else video.stem
        jobs.append(Job(name, video, cameras, where))
    return jobs


def _read_txt_manifest(path: Path) -> list[Job]:
    base, text = _manifest_text(path)
    jobs: list[Job] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        where = f"{path}:{lineno}"
        try:
            fields = shlex.split(line, comments=True)
        except ValueError as exc:
            raise InputError(f"{where}: cannot parse the line ({exc})") from None
        if not fields:
            continue
        if len(fields) > 2:
            raise InputError(f"{where}: expected 'VIDEO [CAMERAS]', got {len(fields)} fields "
                             f"(is {path.name} a camera file rather than a manifest?)")
        video = _resolve(base, fields[0])
        cameras = _resolve(base, fields[1]) if len(fields) == 2 else None
        jobs.append(Job(video.stem, video, cameras, where))
    return jobs


def _folder_jobs(path: Path) -> list[Job]:
    """A folder INPUT: its videos; or, holding none, the folder itself as one clip of images; or,
    holding no images either, each sub-folder of images as a clip (a dataset of frame folders)."""
    from mannequin.frames import list_images

    videos = sorted((p for p in path.iterdir() if p.is_file() and is_video(p)), key=lambda p: p.name)
    if videos:
        return [Job(p.stem, p.absolute(), None, str(path)) for p in videos]
    if list_images(path):
        return [Job(path.absolute().name, path.absolute(), None, str(path))]
    subs = sorted((p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    clips = [Job(p.name, p.absolute(), None, str(path)) for p in subs if list_images(p)]
    if not clips:
        raise InputError(f"{path}: no videos, images or folders of images in this folder "
                         f"(video extensions: {', '.join(VIDEO_EXTENSIONS)})")
    return clips


def expand_inputs(inputs: Iterable) -> list[Job]:
    """The clips of ``inputs`` (video files, folders of videos, a folder of images or of image
    folders, .csv/.txt manifests) as :class:`Job` s.

    Raises :class:`InputError` for a missing INPUT, an empty folder or manifest, a malformed
    manifest line, and for two different videos that would share a workspace name.  The same
    video listed twice (same file and camera file) is kept once.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    jobs: list[Job] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            jobs += _folder_jobs(path)
        elif not path.exists():
            raise InputError(f"{path}: input not found")
        elif path.suffix.lower() == ".csv":
            found = _read_csv_manifest(path)
            if not found:
                raise InputError(f"{path}: the manifest lists no videos")
            jobs += found
        elif path.suffix.lower() == ".txt":
            found = _read_txt_manifest(path)
            if not found:
                raise InputError(f"{path}: the manifest lists no videos")
            jobs += found
        else:
            jobs.append(Job(path.stem, path.absolute(), None, str(path)))
    unique: list[Job] = []
    by_name = {}
    for job in jobs:
        _check_name(job.name, f"{job.video} ({job.source})")  # a stem of '..' would leave ROOT
        key = job.name.casefold()   # case-insensitive file systems would merge Clip/ and clip/
        other = by_name.get(key)
        if other is None:
            by_name[key] = job
            unique.append(job)
        elif (other.video.resolve(), other.cameras and other.cameras.resolve()) != \
                (job.video.resolve(), job.cameras and job.cameras.resolve()):
            raise InputError(f"two videos share the workspace name {job.name!r}: {other.video} "
                             f"({other.source}) and {job.video} ({job.source}); rename one, or list them "
                             f"in a CSV manifest with a 'name' column")
    return unique


# --- one video (runs on a worker) ----------------------------------------------------------------

def is_finished(workspace, video, cameras=None, config: Config | None = None) -> bool:
    """True when every stage of ``workspace`` is stamped with the hash that ``run_video`` would
    compute now for this video, camera file and config (so running it again would skip them all)."""
    from mannequin.pipeline import stage_hash

    cfg = config or Config()
    ws = Workspace(workspace)
    if not ws.root.is_dir() or not Path(video).exists():
        return False
    try:
        for stage in STAGES:
            if not ws.is_done(stage, stage_hash(ws, stage, cfg, Path(video), cameras)):
                return False
    except MannequinError:
        return False
    return True


def _row(job: Job, root: Path, state: str, reason: str = "", seconds: float = 0.0) -> dict:
    ws = Workspace(root / job.name)
    report = read_json_or_empty(ws.report_json)
    stages = report.get("stages", {})
    frames = (stages.get("labels") or {}).get("frames", (stages.get("frames") or {}).get("frames"))
    labels = (stages.get("labels") or {}).get("kept")
    verdict = (report.get("verdict") or {}).get("verdict") if state != "failed" else None
    return {"name": job.name, "state": state, "reason": " ".join(str(reason).split()),
            "frames": frames, "labels": labels, "seconds": round(float(seconds), 2), "verdict": verdict,
            "input": str(job.video), "cameras": str(job.cameras) if job.cameras else None,
            "workspace": str(ws.root)}


def _limit_threads(threads_by_host: dict | None) -> int | None:
    """Numba/OpenMP threads for this task: cores of this host // worker threads on this host."""
    n = None
    try:
        from distributed import get_worker

        worker = get_worker()
        host = worker.address.split("://")[-1].rsplit(":", 1)[0]
        n = (threads_by_host or {}).get(host) or max(1, cpu_count() // max(1, worker.state.nthreads))
    except (ImportError, ValueError):   # not on a Dask worker (called directly)
        return None
    if "numba" not in sys.modules:
        # Before Numba's import the environment decides how many threads it launches.  Never
        # change it afterwards: Numba refuses a different NUMBA_NUM_THREADS once threads run.
        os.environ["NUMBA_NUM_THREADS"] = str(n)
        os.environ.setdefault("OMP_NUM_THREADS", str(n))
    import numba

    n = min(n, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n)
    return n


class _ThreadFilter(logging.Filter):
    def __init__(self):
        super().__init__()
        import threading

        self.ident = threading.get_ident()

    def filter(self, record):
        import threading

        return threading.get_ident() == self.ident


def process_video(job: Job, root, config: dict | None = None,
                  threads_by_host: dict | None = None) -> dict:
    """Run one video into ``root/<name>`` and return its status row; never raises an Exception.

    The pipeline's log records (INFO and up) and Python warnings of this task go to
    ``WS/logs/batch.log``; an unexpected error's traceback too, with a one-line reason in the row.
    """
    import warnings

    from mannequin.pipeline import run_video

    root = Path(root)
    ws_root = root / job.name
    t0 = time.perf_counter()
    cpu0 = _cpu_seconds()
    pkg_log = logging.getLogger("mannequin")
    handler = None
    saved = (pkg_log.level, pkg_log.propagate)
    ran = []
    try:
        ws_root.mkdir(parents=True, exist_ok=True)
        (ws_root / "logs").mkdir(exist_ok=True)
        handler = logging.FileHandler(ws_root / "logs" / "batch.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(_ThreadFilter())
        pkg_log.addHandler(handler)
        pkg_log.setLevel(logging.INFO)
        pkg_log.propagate = False       # nothing of this task reaches the worker's stderr
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = lambda msg, cat, fn, ln, *a, **k: pkg_log.warning(
                "%s:%s: %s: %s", fn, ln, cat.__name__, msg)
            threads = _limit_threads(threads_by_host)
            log.info("%s: start (%s; cameras %s; %s Numba threads; pid %d)", job.name, job.video,
                     job.cameras or "none (SfM)", threads, os.getpid())
            cfg = Config.from_dict(config) if config is not None else Config()
            run_video(job.video, ws_root, poses=job.cameras, config=cfg, progress=False,
                      on_stage=lambda stage, state: ran.append(stage) if state == "done" else None)
        state, reason = ("done" if ran else "skipped"), ""
        log.info("%s: %s in %.1f s", job.name, state, time.perf_counter() - t0)
    except MannequinError as exc:
        state, reason = "failed", str(exc)
        log.warning("%s: failed: %s", job.name, reason)
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        state, reason = "failed", f"{where}{exc.strerror or exc}"
        log.warning("%s: failed: %s", job.name, reason, exc_info=True)
    except Exception as exc:  # noqa: BLE001 - isolate every failure to its own video
        state = "failed"
        reason = (f"internal error: {type(exc).__name__}: {exc} "
                  f"(traceback in {ws_root / 'logs' / 'batch.log'})")
        log.error("%s: %s\n%s", job.name, reason, traceback.format_exc())
    finally:
        if handler is not None:
            pkg_log.removeHandler(handler)
            handler.close()
        pkg_log.setLevel(saved[0])
        pkg_log.propagate = saved[1]
    row = _row(job, root, state, reason, time.perf_counter() - t0)
    row["cpu_seconds"] = round(_cpu_seconds() - cpu0, 2)   # status.json only: this process + its children
    return row


def _cpu_seconds() -> float:
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


# --- the cluster ---------------------------------------------------------------------------------

cpu_count = usable_cores  # the cores a LocalCluster divides among its workers


def _import_distributed():
    try:
        import dask  # noqa: F401
        import distributed
    except ImportError:
        raise InputError("batch needs Dask: pip install 'mannequin[batch]' (dask[distributed])") from None
    return distributed


def local_cluster(workers: int | None = None, *, retries: int = 2):
    """An embedded ``LocalCluster``: ``workers`` (default: usable cores) one-thread worker processes,
    each with ``NUMBA_NUM_THREADS = OMP_NUM_THREADS = MKL_NUM_THREADS = OPENBLAS_NUM_THREADS =
    max(1, cores // workers)`` in its environment, quiet logs, no dashboard, and a task re-run on up
    to ``retries`` lost workers before it fails."""
    _import_distributed()
    import dask
    from distributed import LocalCluster

    cores = cpu_count()
    workers = max(1, int(workers or cores))
    threads = max(1, cores // workers)
    # Set in the worker process only (Nanny env), before anything there imports Numba.  Not in the
    # pre-spawn environment: that is this process's os.environ, where Numba may already run.
    # BLAS too: workers × threads = cores for every pool, so one worker behaves like 'mannequin run'.
    env = {k: str(threads) for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                     "OPENBLAS_NUM_THREADS")}
    before = {k: os.environ.get(k) for k in dask.config.get("distributed.nanny.pre-spawn-environ", {})}
    with dask.config.set({"distributed.scheduler.allowed-failures": max(0, int(retries))}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR, env=env)
    cluster._mannequin_env_before = before
    return cluster


def _restore_env(before: dict) -> None:
    """Undo the Nanny's pre-spawn changes to this process's environment (OMP_NUM_THREADS=1, ...)."""
    for k, v in before.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _host_cores():
    return cpu_count()


def _threads_by_host(client) -> dict:
    """{host: max(1, cores // worker threads on that host)} over the cluster's current workers."""
    try:
        cores = client.run(_host_cores)
        nthreads = client.nthreads()
    except Exception:  # noqa: BLE001 - workers coming and going: the tasks fall back per worker
        return {}
    host = lambda addr: addr.split("://")[-1].rsplit(":", 1)[0]  # noqa: E731
    total, hcores = {}, {}
    for addr, n in nthreads.items():
        total[host(addr)] = total.get(host(addr), 0) + n
        if addr in cores:
            hcores[host(addr)] = cores[addr]
    return {h: max(1, hcores[h] // max(1, total[h])) for h in total if h in hcores}


_SCHEDULER_ADDRESS = re.compile(r"^(?:(?:tcp|tls|ws|wss|ucx)://)?(?:\[[0-9A-Fa-f:]+\]|[A-Za-z0-9_.\-]+):\d{1,5}/?$"
                                r"|^inproc://\S+$")


def _connect(scheduler):
    """(client, owns_client) for an address string, a Client or a cluster object."""
    distributed = _import_distributed()
    if isinstance(scheduler, distributed.Client):
        return scheduler, False
    address = getattr(scheduler, "scheduler_address", scheduler)
    try:
        return distributed.Client(address, set_as_default=False, timeout="30s"), True
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"--scheduler {address}: cannot connect to the Dask scheduler ({exc})") from None


def _input_size(job: Job) -> int:
    """Bytes of a job's input (a folder: its files), the estimate of its cost for longest-first order."""
    try:
        if job.video.is_dir():
            return sum(p.stat().st_size for p in job.video.iterdir() if p.is_file())
        return job.video.stat().st_size
    except OSError:
        return 0


def _task_slots(client, fallback: int) -> int:
    """Worker threads of the cluster now (at least 1): how many videos may run at once."""
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:  # noqa: BLE001 - workers coming and going: keep going with the fallback
        return max(1, fallback)


def _failure_reason(future, retries: int) -> str:
    try:
        exc = future.exception()
    except Exception as err:  # noqa: BLE001 - cancelled futures raise here
        return f"task lost: {type(err).__name__}: {err}"
    try:
        from distributed.scheduler import KilledWorker
    except ImportError:  # pragma: no cover
        KilledWorker = ()
    if isinstance(exc, KilledWorker):
        return (f"the worker process died each time it ran this video (crash, out of memory or killed; "
                f"{retries} retries)")
    return f"task error: {type(exc).__name__}: {exc}"


# --- the batch -----------------------------------------------------------------------------------

def write_status(root, rows: Sequence[dict], config: Config | None = None) -> tuple:
    """Write ``root/status.csv`` and ``root/status.json`` atomically; returns their paths."""
    root = Path(root)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=STATUS_COLUMNS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in STATUS_COLUMNS})
    csv_path = write_text(root / "status.csv", buf.getvalue())
    json_path = write_json(root / "status.json", {
        "summary": summarize(rows), "videos": list(rows),
        "config_hash": (config or Config()).hash(), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return csv_path, json_path


def summarize(rows: Sequence[dict]) -> dict:
    """Counts per state, frames and labels (kept frames) summed over done and skipped videos."""
    ok = [r for r in rows if r["state"] != "failed"]
    return {"videos": len(rows), **{s: sum(r["state"] == s for r in rows) for s in STATES},
            "frames": sum(r.get("frames") or 0 for r in ok), "labels": sum(r.get("labels") or 0 for r in ok),
            "seconds": round(sum(r.get("seconds") or 0 for r in rows), 2)}


def format_summary(rows: Sequence[dict], wall_seconds: float | None = None) -> str:
    """The final table: one line of totals, then one line per failed video with its reason."""
    s = summarize(rows)
    cols = ["videos", "done", "failed", "skipped", "frames", "labels"]
    head = "  ".join(f"{c:>7}" for c in cols)
    vals = "  ".join(f"{s[c]:>7}" for c in cols)
    if wall_seconds is not None:
        head += f"  {'wall s':>8}"
        vals += f"  {wall_seconds:>8.1f}"
    lines = [head, vals]
    lines += [f"failed: {r['name']}: {r['reason']}" for r in rows if r["state"] == "failed"]
    return "\n".join(lines)


def _line(row: dict) -> str:
    if row["state"] == "failed":
        return f"failed   {row['name']}: {row['reason']}"
    extra = f", {row['verdict']}" if row.get("verdict") and row["verdict"] != "accepted" else ""
    return (f"{row['state']:<8} {row['name']}: {row.get('frames') or 0} frames, "
            f"{row.get('labels') or 0} labels{extra}, {row['seconds']:.1f} s")


def run_batch(inputs, out_root, *, config: Config | None = None, scheduler=None,
              workers: int | None = None, progress: bool = False, retries: int = 2) -> list[dict]:
    """Run every video of ``inputs`` into ``out_root/<name>/`` on a Dask cluster; returns the status rows.

    ``inputs``: video files, folders of videos, ``.csv``/``.txt`` manifests (see the module doc).
    ``config``: the :class:`Config` of every video (default preset when None).  ``scheduler``:
    None for an embedded ``LocalCluster`` of ``workers`` processes (default: usable cores, at most
    one per video to run), else a scheduler address, a ``distributed.Client`` or a cluster.
    ``progress``: an overall bar and one line per finished video on stderr.  ``retries``: how
    often a video is re-run after its worker process died (embedded cluster; an external
    scheduler uses its own ``allowed-failures``).

    Each row: name, state (done | failed | skipped), reason (one line; empty unless failed),
    frames, labels (kept frames), seconds (of this run), verdict, input, cameras, workspace.  The
    rows are written to ``out_root/status.csv`` and ``status.json`` (atomically) before returning.
    Raises :class:`InputError` for bad inputs (nothing runs) or an unreachable scheduler; a failed
    video never raises.
    """
    cfg = config or Config()
    root = Path(out_root)
    if workers is not None and (isinstance(workers, bool) or int(workers) != workers or workers < 1):
        raise InputError(f"--workers {workers}: must be a positive integer")
    if isinstance(retries, bool) or int(retries) != retries or retries < 0:
        raise InputError(f"--retries {retries}: must be 0 or more")
    if isinstance(scheduler, str) and not _SCHEDULER_ADDRESS.match(scheduler.strip()):
        raise InputError(f"--scheduler {scheduler}: not a Dask scheduler address (like tcp://host:8786 or host:8786)")
    if scheduler is not None and workers is not None:
        log.warning("--workers %s is ignored with --scheduler: the cluster has its own workers", workers)
    if root.exists() and not root.is_dir():
        raise InputError(f"{root}: output root exists and is not a folder")
    jobs = expand_inputs(inputs)
    if not jobs:
        raise InputError("no videos to process")
    created_root = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    from tqdm import tqdm

    rows = {}
    bar = tqdm(total=len(jobs), unit="video", desc="batch", disable=not progress, dynamic_ncols=True,
               file=sys.stderr)

    def record(row):
        rows[row["name"]] = row
        if progress:
            bar.write(_line(row), file=sys.stderr)
        else:
            log.info("%s", _line(row))
        bar.update(1)

    pending = []
    for job in jobs:
        if is_finished(root / job.name, job.video, job.cameras, cfg):
            record(_row(job, root, "skipped"))
        else:
            pending.append(job)

    client = cluster = dask_log = None
    dask_level = logging.NOTSET
    owns_client = False
    futures = {}
    try:
        if pending:
            n_workers = max(1, min(int(workers or cpu_count()), len(pending)))
            if scheduler is None:
                bar.set_postfix_str(f"starting {n_workers} workers")
                if not log.isEnabledFor(logging.DEBUG):   # the embedded cluster's chatter: --debug only
                    dask_log = logging.getLogger("distributed")
                    dask_level = dask_log.level
                    dask_log.setLevel(logging.ERROR)
                cluster = local_cluster(n_workers, retries=retries)
                client, owns_client = _connect(cluster)
            else:
                try:
                    client, owns_client = _connect(scheduler)
                except MannequinError:
                    if created_root and not any(root.iterdir()):
                        root.rmdir()  # nothing ran: leave no empty output root behind
                    raise
            bar.set_postfix_str("")
            threads = _threads_by_host(client)
            cfg_dict = cfg.to_dict()
            # Longest first (largest input), and never more tasks on the cluster than it has
            # worker threads: the next video goes to whichever worker frees up first, so one slow
            # video does not wait behind another that the scheduler queued on the same worker.
            queue = deque(sorted(pending, key=_input_size, reverse=True))
            from distributed import as_completed

            running = as_completed(loop=client.loop)

            def submit_next():
                job = queue.popleft()
                fut = client.submit(process_video, job, str(root), cfg_dict, threads, pure=False,
                                    retries=retries, key=f"mannequin-video-{job.name}-{os.urandom(4).hex()}")
                futures[fut] = job
                running.add(fut)

            in_flight = 0
            while queue and in_flight < _task_slots(client, n_workers):
                submit_next()
                in_flight += 1
            for fut in running:
                in_flight -= 1
                job = futures[fut]
                row = fut.result() if fut.status == "finished" else _row(job, root, "failed", _failure_reason(fut, retries))
                record(row)
                while queue and in_flight < _task_slots(client, 1):
                    submit_next()
                    in_flight += 1
    except KeyboardInterrupt:
        def interrupted(job):
            # A video whose every stage finished before its result came back is done, not failed.
            if is_finished(root / job.name, job.video, job.cameras, cfg):
                return _row(job, root, "done")
            return _row(job, root, "failed", "interrupted")

        for fut, job in futures.items():
            if job.name not in rows:
                fut.cancel()
                rows[job.name] = interrupted(job)
        for job in jobs:
            if job.name not in rows:
                rows[job.name] = interrupted(job)
        write_status(root, [rows[j.name] for j in jobs], cfg)
        raise
    finally:
        bar.close()
        if client is not None and owns_client:
            client.close()
        if cluster is not None:
            cluster.close()
            _restore_env(getattr(cluster, "_mannequin_env_before", {}))
        if dask_log is not None:
            dask_log.setLevel(dask_level)
    ordered = [rows[j.name] for j in jobs]
    write_status(root, ordered, cfg)
    log.debug("batch of %d videos in %.1f s", len(jobs), time.perf_counter() - t_start)
    return ordered
