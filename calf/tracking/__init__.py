"""MLflow for the suite: a training run's MLflow names and tags, live logging from a training
job, and the import of finished runs (``calf mlflow-sync``).

- ``calf.tracking.client``: the tags both writers share, MLflow's limits, params and metrics
  as MLflow takes them, batched writes, the experiment of a study;
- ``calf.tracking.cost``: what a run cost (run.json ``cost``) as MLflow system metrics;
- ``calf.tracking.datasets``: the training and validation CSVs as MLflow dataset inputs;
- ``calf.tracking.live``: ``LiveLogger``, best-effort logging while ``calf train`` runs;
- ``calf.tracking.sync``: ``sync_study``, the import of a study's finished runs (reading them
  in ``calf.tracking.inputs``, their MLflow content in ``calf.tracking.content``, the SQLite
  file in ``calf.tracking.stores``).

A run is named by its place in the results tree (``calf.layout.RunKey``); its key (the path
below the runs folder, e.g. ``demo/synth/unet/calf/ratio-0.25/fold0``) is the MLflow tag
``calf.run_key`` of both writers, so the sync finds a run that training logged live and
completes it instead of creating a second one. ``mlflow`` is imported inside functions only:
importing this package (training does) costs nothing.
"""
