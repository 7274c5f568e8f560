"""The driver side of ``raylake vision-train``: the table version, its classes and
normalisation, the Ray Train run, and the test accuracy of the result."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from raylake.errors import ConfigError, VisionError
from raylake.lake.tables import Lake
from raylake.models.flavors.image_classifier import ImageModel
from raylake.vision import pipeline
from raylake.vision import train as vtrain


def classes_of(lake: Lake, table: str, version: int) -> list[str]:
    """The class names in ``label_index`` order, as ingestion declared them."""
    t = lake.read(table, version, columns=["label", "label_index"])
    pairs = dict(zip(t.column("label_index").to_pylist(), t.column("label").to_pylist()))
    if not pairs:
        raise VisionError(f"Table {table}@{version} has no images; ingest some first "
                          "(`raylake ingest dataset=...`).")
    top = max(pairs)
    # A declared class with no image in this version keeps its index (named by position).
    return [str(pairs.get(i, f"class_{i}")) for i in range(top + 1)]


def fit(lake: Lake, conf: Any, run_id: str, *,
        kill_at: dict[str, Any] | None = None) -> tuple[ImageModel, dict[str, Any], int]:
    """Train ``conf.train`` (trainer cnn) on its image table; (model, metrics, version)."""
    import ray
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from raylake.train import placement
    from raylake.train.resources import scaling_config, worker_env, worker_threads

    tcfg, s = conf.train, conf.train.cnn
    if tcfg.trainer != "cnn":
        raise ConfigError(f"vision-train trains train.trainer=cnn, not {tcfg.trainer!r}: "
                          "use train=cnn (or train=cnn_gpu).")
    table = str(tcfg.table)
    version = lake.table(table, tcfg.table_version).version()
    classes = classes_of(lake, table, version)
    contract, n_train, n_test = pipeline.stats(lake, table, version, s.test_fraction, classes,
                                              seed=int(tcfg.seed))
    workers = int(tcfg.scaling.num_workers)
    steps_per_epoch = n_train // workers // int(s.batch_size)
    if steps_per_epoch < 1:
        raise VisionError(f"{n_train} train images cannot fill one batch of train.cnn."
                          f"batch_size={s.batch_size} on each of {workers} workers; lower "
                          "the batch size or the workers, or ingest more images.")
    use_gpu = bool(tcfg.scaling.use_gpu)
    precision = vtrain.resolve_precision(str(s.precision), use_gpu)
    clock = f"raylake-epoch-{run_id}"
    clock_actor = pipeline.start_clock(clock)
    train_ds = pipeline.dataset(lake, table, version, split="train", settings=s,
                                contract=contract, seed=int(tcfg.seed), clock=clock)
    arch = vtrain.architecture(contract, s)
    config = {"architecture": arch, "threads": worker_threads(tcfg.scaling),
              "seed": int(tcfg.seed), "lr": float(s.lr), "weight_decay": float(s.weight_decay),
              "batch_size": int(s.batch_size), "accumulate": int(s.accumulate_steps),
              "epochs": int(s.epochs), "steps_per_epoch": steps_per_epoch,
              "checkpoint_every": int(s.checkpoint_every_steps), "precision": precision,
              "prefetch": int(s.prefetch_batches), "clock": clock, "kill_at": kill_at,
              "shuffle_batches": int(s.shuffle_buffer_batches)}
    backend = str(tcfg.scaling.backend or ("nccl" if use_gpu else "gloo"))
    run_config = ray.train.RunConfig(  # type: ignore[call-arg]
        name=f"cnn-{run_id}", storage_path=tcfg.storage_path or lake.storage.uri("_train"),
        failure_config=ray.train.FailureConfig(max_failures=int(tcfg.max_failures)),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        worker_runtime_env=worker_env(tcfg.scaling))
    started = time.perf_counter()
    try:
        with placement.released_after(f"vision run {run_config.name}"):
            result = TorchTrainer(vtrain.worker, train_loop_config=config,
                                  datasets={"train": train_ds},
                                  torch_config=TorchConfig(backend=backend),
                                  scaling_config=scaling_config(tcfg.scaling),
                                  run_config=run_config).fit()
    finally:
        ray.kill(clock_actor)
    fit_s = time.perf_counter() - started
    state = vtrain.load_state(result.checkpoint)
    from raylake.models.flavors.image_net import SmallResNet

    net = SmallResNet(**arch)
    net.load_state_dict(state["model"])
    model = ImageModel(net.eval(), contract.classes, contract.height, contract.width,
                       contract.mean, contract.std, contract.channels)
    test_ds = pipeline.dataset(lake, table, version, split="test", settings=s,
                               contract=contract, seed=int(tcfg.seed), clock=None)
    acc, n = vtrain.accuracy(net, test_ds)
    metrics = {"test_accuracy": round(acc, 4), "test_images": n, "train_images": n_train,
               "epochs": int(s.epochs), "steps": int(state["step"]),
               "steps_per_epoch": steps_per_epoch, "workers": workers, "precision": precision,
               "resumed_from_step": int((result.metrics or {}).get("resumed_from_step", 0)),
               "fit_s": round(fit_s, 2), "history": list(state["history"]),
               "contract": asdict(contract)}
    if n != n_test:
        raise VisionError(f"Scored {n} of the {n_test} test images; re-run.")
    return model, metrics, version


