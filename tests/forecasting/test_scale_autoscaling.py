"""Autoscaling shown with the real training job (issue 14 item 6) on the project's fake multinode cluster.

``ray_cluster/fake_multinode/cluster.yaml`` carries ``ray_cluster/cluster.yaml``'s node types;
:mod:`app.bench.fake_cluster` starts it as a private head (own state dir, free ports, own temp dir; the main
stack's Ray is never touched) whose autoscaler adds 1-CPU "worker nodes" for pending tasks and removes idle
ones. The job is ``ray_cluster/jobs/train_all.py`` itself, submitted through the private head's Jobs API, on a
small synthetic slice (8 stores, LightGBM with 10 rounds + the per-store family in 8 shards per origin, neural
off: enough 1-CPU tasks that the first worker node is still busy when the second one has joined).
"""

from __future__ import annotations

import uuid

import pytest
import yaml

from app.bench import fake_cluster as fc
from app.bench import scale
from app.stack.terraform import reference_cluster_config


def test_fake_config_keeps_cluster_yaml_node_types() -> None:
    aws = reference_cluster_config()  # the ray module's cluster file, rendered without a deployment
    fake = yaml.safe_load(fc.FAKE_CLUSTER_YAML.read_text())
    assert set(fake["available_node_types"]) == set(aws["available_node_types"]) == {fc.HEAD_TYPE, fc.WORKER_TYPE}
    assert fake["head_node_type"] == aws["head_node_type"] == fc.HEAD_TYPE
    head_aws, head_fake = aws["available_node_types"][fc.HEAD_TYPE], fake["available_node_types"][fc.HEAD_TYPE]
    assert head_fake["resources"] == head_aws["resources"] == {"CPU": 0}
    worker_aws, worker_fake = aws["available_node_types"][fc.WORKER_TYPE], fake["available_node_types"][fc.WORKER_TYPE]
    assert worker_fake["min_workers"] == worker_aws["min_workers"]
    assert worker_fake["max_workers"] <= worker_aws["max_workers"] and fake["max_workers"] <= aws["max_workers"]
    assert fake["upscaling_speed"] == aws["upscaling_speed"]
    assert fake["provider"]["type"] == "fake_multinode"

    rendered = fc.render_config("127.0.0.1:40001", min_workers=1, max_workers=2, worker_cpus=1, idle_timeout_minutes=0.2)
    assert rendered["provider"]["gcs_address"] == "127.0.0.1:40001"
    assert rendered["available_node_types"][fc.WORKER_TYPE]["resources"]["CPU"] == 1
    assert rendered["available_node_types"][fc.WORKER_TYPE]["min_workers"] == 1 and rendered["max_workers"] == 2
    with pytest.raises(ValueError, match="gcs_address"):
        fc.render_config("")
    with pytest.raises(ValueError, match="min_workers <= max_workers"):
        fc.render_config("127.0.0.1:40001", min_workers=3, max_workers=2)


@pytest.fixture()
def slice_settings(settings, tmp_path):
    """Settings whose state dir's prepared dataset is an 8-store synthetic slice (the job reads it with
    ``--source dataset`` and logs nothing to MLflow: the test needs no service of the stack)."""
    from app.data import prepare

    s = settings.model_copy(
        update={"state_dir": tmp_path / "state", "rossmann_dir": None, "synthetic_stores": 8, "synthetic_start": "2014-06-01"}
    )
    prepare(s)
    return s


ARGS = ["--source", "dataset", "--no-neural", "--no-mlflow", "--lgbm-rounds", "10", "--threads", "1",
        "--shard-stores", "1", "--short-windows", "1"]


@pytest.mark.integration
@pytest.mark.slow
def test_training_job_autoscales_over_fake_nodes_and_equals_single_node(slice_settings, tmp_path) -> None:
    code = scale.job_code(tmp_path / "code")
    seen: list[int] = []
    with fc.fake_cluster(slice_settings, tmp_path / "ray", min_workers=0, max_workers=2, worker_cpus=1) as head:
        assert head.worker_nodes() == [], "the cluster must start without worker nodes (min_workers 0)"

        def poll() -> None:
            try:
                seen.append(len(head.worker_nodes()))
            except Exception:  # noqa: BLE001 - the state API may not answer while nodes join
                pass

        fanned = scale.submit_train_job(head.address, ARGS, scale.job_env(slice_settings, uuid.uuid4().hex), code,
                                        timeout_s=900, on_poll=poll)
        per_task = {t["name"]: t["node_id"] for t in fanned.tasks}
        print(f"\nnode per task: {per_task}\nworker nodes alive while the job ran: max {max(seen, default=0)}"
              f"\ntask attempts Ray ran again: {fanned.retries}")
        # Pending tasks (the head has CPU 0) made the autoscaler add worker nodes, up to max_workers.
        assert 1 <= max(seen, default=0) <= 2, seen
        # Every task of the plan ran as a Ray task (each counted once, as its last attempt), on more than one
        # node, none on the head.
        assert len(fanned.tasks) == fanned.result["tasks"] >= 7 + 2 + 1, per_task
        assert all(t["state"] == "FINISHED" for t in fanned.tasks), fanned.tasks
        assert len(fanned.nodes) == 2, per_task
        # Idle nodes are removed (idle_timeout_minutes 0.1).
        assert head.wait_workers(0, timeout_s=180) == []

        single = scale.submit_train_job(head.address, [*ARGS, "--in-driver"], scale.job_env(slice_settings, uuid.uuid4().hex),
                                        code, timeout_s=900)
        assert single.tasks == [] and single.result["executor"] == "local"
    assert fanned.result["executor"] == "ray" and fanned.result["failed_candidates"] == []
    a, b = fanned.rmspe(), single.rmspe()
    assert set(a) == {"lgbm", "ses", "ensemble", "seasonal_naive", "median_dow_promo"} and a.keys() == b.keys()
    for name in a:
        assert a[name] == pytest.approx(b[name], abs=1e-6), name
    assert fanned.result["model"] == single.result["model"] and fanned.result["forecast_rows"] == single.result["forecast_rows"]
