"""The Dask side of a batch: an embedded cluster, a connection, and threads per task.

Without a scheduler, :func:`local_cluster` starts an embedded Dask ``LocalCluster`` of ``workers``
single-threaded worker processes, each with ``NUMBA_NUM_THREADS = OMP_NUM_THREADS`` (and the BLAS
pools) ``= max(1, cores // workers)`` set in the worker's environment before Numba is imported there
(Numba cannot raise its thread count after import, and ``plane_sweep`` uses all the threads Numba
launched).  With a scheduler (an address, a ``Client`` or a cluster) the tasks run on that cluster;
each task then limits Numba to ``cores of its host // worker threads on its host``
(:func:`limit_threads`: in the environment when Numba is not yet imported in that worker, otherwise
through ``numba.set_num_threads``).  A worker process that dies is replaced by its nanny and the
scheduler re-runs its task on a live worker, up to ``retries`` times (the embedded cluster's
``distributed.scheduler.allowed-failures``; an external scheduler applies its own setting).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from mannequin.config import usable_cores
from mannequin.errors import InputError

log = logging.getLogger("mannequin.batch")

cpu_count = usable_cores  # the cores a LocalCluster divides among its workers

#: What ``--scheduler`` accepts: [tcp|tls|ws|wss|ucx://]host:port, or inproc://...
SCHEDULER_ADDRESS = re.compile(r"^(?:(?:tcp|tls|ws|wss|ucx)://)?(?:\[[0-9A-Fa-f:]+\]|[A-Za-z0-9_.\-]+):\d{1,5}/?$"
                               r"|^inproc://\S+$")

_ENV_BEFORE = "_mannequin_env_before"  # attribute of a local_cluster: this process's env before the Nanny's changes


def import_distributed() -> ModuleType:
    """The ``distributed`` module, or :class:`InputError` saying how to install it."""
    try:
        import dask  # noqa: F401
        import distributed
    except ImportError:
        raise InputError("batch needs Dask: pip install 'mannequin[batch]' (dask[distributed])") from None
    return distributed


def local_cluster(workers: int | None = None, *, retries: int = 2) -> Any:
    """An embedded ``LocalCluster``: ``workers`` (default: usable cores) one-thread worker processes,
    each with ``NUMBA_NUM_THREADS = OMP_NUM_THREADS = MKL_NUM_THREADS = OPENBLAS_NUM_THREADS =
    max(1, cores // workers)`` in its environment, quiet logs, no dashboard, and a task re-run on up
    to ``retries`` lost workers before it fails."""
    import_distributed()
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
    setattr(cluster, _ENV_BEFORE, before)
    return cluster


def connect(scheduler: Any) -> tuple[Any, bool]:
    """(client, whether the caller owns it) for an address string, a ``Client`` or a cluster."""
    distributed = import_distributed()
    if isinstance(scheduler, distributed.Client):
        return scheduler, False
    address = getattr(scheduler, "scheduler_address", scheduler)
    try:
        return distributed.Client(address, set_as_default=False, timeout="30s"), True
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"--scheduler {address}: cannot connect to the Dask scheduler ({exc})") from None


@contextlib.contextmanager
def open_client(scheduler: Any, n_workers: int, retries: int,
                on_start: Callable[[str], None] | None = None) -> Iterator[Any]:
    """A client of ``scheduler`` (see :func:`connect`), or of an embedded :func:`local_cluster` of
    ``n_workers`` when it is None (``on_start`` is told first; its Dask logs stay quiet unless
    mannequin logs at DEBUG).  On exit, what was opened here is closed and this process's
    environment restored."""
    client = cluster = dask_log = None
    dask_level = logging.NOTSET
    owns_client = False
    try:
        if scheduler is None:
            if on_start is not None:
                on_start(f"starting {n_workers} workers")
            if not log.isEnabledFor(logging.DEBUG):   # the embedded cluster's chatter: --debug only
                dask_log = logging.getLogger("distributed")
                dask_level = dask_log.level
                dask_log.setLevel(logging.ERROR)
            cluster = local_cluster(n_workers, retries=retries)
            client, owns_client = connect(cluster)
        else:
            client, owns_client = connect(scheduler)
        yield client
    finally:
        if client is not None and owns_client:
            client.close()
        if cluster is not None:
            cluster.close()
            _restore_env(getattr(cluster, _ENV_BEFORE, {}))
        if dask_log is not None:
            dask_log.setLevel(dask_level)


def _restore_env(before: dict[str, str | None]) -> None:
    """Undo the Nanny's pre-spawn changes to this process's environment (OMP_NUM_THREADS=1, ...)."""
    for k, v in before.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _host_cores() -> int:
    return cpu_count()


def _host(address: str) -> str:
    return address.split("://")[-1].rsplit(":", 1)[0]


def threads_by_host(client: Any) -> dict[str, int]:
    """{host: max(1, cores // worker threads on that host)} over the cluster's current workers."""
    try:
        cores = client.run(_host_cores)
        nthreads = client.nthreads()
    except Exception:  # noqa: BLE001 - workers coming and going: the tasks fall back per worker
        return {}
    total: dict[str, int] = {}
    hcores: dict[str, int] = {}
    for addr, n in nthreads.items():
        total[_host(addr)] = total.get(_host(addr), 0) + n
        if addr in cores:
            hcores[_host(addr)] = cores[addr]
    return {h: max(1, hcores[h] // max(1, total[h])) for h in total if h in hcores}


def task_slots(client: Any, fallback: int) -> int:
    """Worker threads of the cluster now (at least 1): how many videos may run at once."""
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:  # noqa: BLE001 - workers coming and going: keep going with the fallback
        return max(1, fallback)


def failure_reason(future: Any, retries: int) -> str:
    """The one-line reason of a task that did not finish (its worker died ``retries`` + 1 times, or
    an error escaped it)."""
    try:
        exc = future.exception()
    except Exception as err:  # noqa: BLE001 - cancelled futures raise here
        return f"task lost: {type(err).__name__}: {err}"
    try:
        from distributed.scheduler import KilledWorker
    except ImportError:  # pragma: no cover
        return f"task error: {type(exc).__name__}: {exc}"
    if isinstance(exc, KilledWorker):
        return (f"the worker process died each time it ran this video (crash, out of memory or killed; "
                f"{retries} retries)")
    return f"task error: {type(exc).__name__}: {exc}"


def limit_threads(threads_by_host: dict[str, int] | None) -> int | None:
    """On a Dask worker, limit Numba/OpenMP to cores of this host // worker threads on this host
    (``threads_by_host`` where it names the host) and return that count; None off a worker."""
    try:
        from distributed import get_worker

        worker = get_worker()
        n = (threads_by_host or {}).get(_host(worker.address)) or max(1, cpu_count() // max(1, worker.state.nthreads))
    except (ImportError, ValueError):   # not on a Dask worker (called directly)
        return None
    if "numba" not in sys.modules:
        # Before Numba's import the environment decides how many threads it launches.  Never
        # change it afterwards: Numba refuses a different NUMBA_NUM_THREADS once threads run.
        os.environ["NUMBA_NUM_THREADS"] = str(n)
        os.environ.setdefault("OMP_NUM_THREADS", str(n))
    import numba

    numba_config: Any = numba.config  # its options are set at import, unknown to type checkers
    n = min(n, numba_config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n)
    return n
