"""Running a batch on a Dask distributed cluster: an existing scheduler, or a local one.

Every image is one task. Workers get the :class:`BatchJob` once (scattered), load the predictor
on their first task and keep it (see :mod:`.models`), and write their images straight into the
shared output folder: each image has its own store groups and files, each published atomically,
so no two workers ever write the same file. Only this process (the driver) writes the summary,
the manifest and the COCO dataset.

``scheduler="local"`` starts a LocalCluster of worker processes (one thread each): by default one
per GPU, or one on a machine without GPUs. Any other value is a scheduler address
(``tcp://host:8786``), e.g. of ``dask-jobqueue``'s SLURMCluster or ``dask scheduler`` +
``dask worker`` started by hand; its workers need napari-odise installed and the output folder
mounted at the same path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from napari_odise.batch.job import BatchCancelled, BatchJob, ItemProcessor, Outcome
from napari_odise.batch.models import load_predictor, worker_device
from napari_odise.batch.reading import Item

_PROCESSORS: dict = {}


def process_on_worker(job: BatchJob, item: Item) -> Outcome:
    """The task: runs in a worker process, reusing its predictor across tasks."""
    processor = _PROCESSORS.get(job)
    if processor is None:
        predictor = load_predictor(job.model, device=worker_device(job.model.device))
        processor = _PROCESSORS.setdefault(job, ItemProcessor(job, predictor))
    return processor.process(item)


def default_workers() -> int:
    import torch

    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def run_distributed(
    pending: Sequence[Item],
    job: BatchJob,
    scheduler: str,
    workers: int | None,
    record: Callable[[Item, Outcome], None],
    cancel=None,
) -> None:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler == "local":
        cluster = LocalCluster(
            n_workers=workers or default_workers(),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        shared_job = client.scatter(job, broadcast=True)
        futures = {client.submit(process_on_worker, shared_job, item, pure=False): item for item in pending}
        for future in as_completed(futures):
            item = futures[future]
            try:
                outcome = future.result()
            except Exception as error:  # noqa: BLE001 - a dead worker fails its images, not the batch
                outcome = Outcome(item.key, False, f"worker error: {type(error).__name__}: {error}")
            record(item, outcome)
            if cancel is not None and cancel.is_set():
                client.cancel([f for f in futures if not f.done()])
                raise BatchCancelled()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
