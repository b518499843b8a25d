"""The registry on the real local MLflow and PostgreSQL: a model's scope is part of the gate (a subset model
never becomes the chain's champion) and the gate's read-compare-set is serialized across processes."""

from __future__ import annotations

import threading
import time

import pytest

from app.config import Settings

pytestmark = pytest.mark.integration


def test_scope_is_canonical() -> None:
    from app.forecasting.registry import SCOPE_ALL, scope_aliases, scope_of

    assert scope_of(None) == scope_of([]) == SCOPE_ALL
    assert scope_of([3, 1, 2]) == scope_of([1, 2, 3, 3]) != scope_of([1, 2])
    assert scope_of([1]).startswith("stores-") and len(scope_of([1])) == len("stores-") + 12
    assert scope_aliases(SCOPE_ALL) == ("champion", "challenger")
    assert scope_aliases(scope_of([1])) == (f"champion-{scope_of([1])}", f"challenger-{scope_of([1])}")


@pytest.mark.slow
def test_subset_model_never_becomes_the_chains_champion(small_dataset: Settings) -> None:
    """A poor all-store model is champion; a much better one-store model must not take its alias."""
    from mlflow import MlflowClient

    from app.forecasting.pipeline import TrainConfig, train
    from app.forecasting.tracking import configure_mlflow

    s = small_dataset
    common = {"neural": False, "per_store": False, "short_windows": 0, "source": "dataset", "horizon": 14}
    poor = train(s, TrainConfig(lgbm_rounds=1, lgbm_params={"learning_rate": 0.01}, **common))
    subset = train(s, TrainConfig(stores=(1,), lgbm_rounds=40, **common))
    assert subset["rmspe"] < poor["rmspe"], "the subset model must look better for this test to mean anything"

    configure_mlflow(s)
    client = MlflowClient()
    assert client.get_model_version_by_alias(s.model_name, "champion").version == poor["model_version"]
    aliases = client.get_registered_model(s.model_name).aliases
    assert aliases.get("challenger") is None  # the subset model is no all-store challenger either
    assert subset["gate"]["decision"] == "scope_champion" and subset["gate"]["scope"].startswith("stores-")
    assert aliases[f"champion-{subset['gate']['scope']}"] == subset["model_version"]
    mv = client.get_model_version(s.model_name, subset["model_version"])
    assert mv.tags["scope"] == subset["gate"]["scope"] and mv.tags["scope_stores"] == "1"
    assert client.get_model_version(s.model_name, poor["model_version"]).tags["scope"] == "all"

    # The next all-store model is gated against the all-store champion, not against the subset's number.
    better = train(s, TrainConfig(lgbm_rounds=40, **common))
    assert better["gate"]["decision"] == "champion"
    assert better["gate"]["champion_rmspe"] == pytest.approx(poor["rmspe"], rel=1e-4)
    assert client.get_model_version_by_alias(s.model_name, "champion").version == better["model_version"]


def test_champion_with_a_subset_scope_is_no_yardstick(mlflow_test_settings: Settings) -> None:
    """A champion registered before scopes existed, from a run tagged ``stores:1``, is replaced by an all-store
    model even when its RMSPE is lower."""
    import mlflow
    from mlflow import MlflowClient

    from app.forecasting.registry import gate
    from app.forecasting.tracking import configure_mlflow

    s = mlflow_test_settings
    configure_mlflow(s)
    client = MlflowClient()
    mlflow.set_experiment(s.mlflow_experiment)
    with mlflow.start_run() as run:
        mlflow.set_tag("scope", "stores:1")
    name = s.model_name
    client.create_registered_model(name)
    legacy = client.create_model_version(name, source="s3://nowhere/model", run_id=run.info.run_id).version
    client.set_model_version_tag(name, legacy, "backtest_rmspe", "0.050000")
    client.set_registered_model_alias(name, "champion", legacy)
    new = client.create_model_version(name, source="s3://nowhere/model").version
    result = gate(s, client, name, new, 0.10)
    assert result["decision"] == "champion" and "scope stores-legacy:1" in result["reason"]
    assert client.get_model_version_by_alias(name, "champion").version == new


def _lock_waiters(settings: Settings, name: str) -> int:
    """Sessions waiting for the gate lock of ``name``."""
    from app import db
    from app.forecasting.registry import GATE_LOCK_NAMESPACE

    with db.transaction(settings) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = %s"
            " AND objsubid = 2 AND objid::bigint = (hashtext(%s)::bigint + 4294967296) %% 4294967296",
            (GATE_LOCK_NAMESPACE, name),
        )
        return int(cur.fetchone()[0])


@pytest.mark.parametrize("last", ["worse", "better"])
def test_concurrent_gates_leave_the_better_model_champion(mlflow_test_settings: Settings, last: str) -> None:
    """Two gates race: each reads the champion and waits until the other has read it too (or is blocked on
    the gate lock); the one named ``last`` sets its alias only after the other has set its own (or is blocked).
    Without the lock both read the old champion and the last writer wins; with it the better model holds
    ``champion`` whatever the finish order."""
    from mlflow import MlflowClient

    from app.forecasting.registry import gate
    from app.forecasting.tracking import configure_mlflow

    s = mlflow_test_settings
    configure_mlflow(s)
    name = s.model_name
    setup = MlflowClient()
    setup.create_registered_model(name)
    old = setup.create_model_version(name, source="s3://nowhere/model").version
    assert gate(s, setup, name, old, 0.30)["decision"] == "champion"
    versions = {who: setup.create_model_version(name, source="s3://nowhere/model").version for who in ("better", "worse")}
    rmspe = {"better": 0.10, "worse": 0.20}
    read = {who: threading.Event() for who in versions}
    wrote = {who: threading.Event() for who in versions}
    other = {"better": "worse", "worse": "better"}
    errors: list[BaseException] = []

    def wait_for(event: threading.Event) -> None:
        deadline = time.monotonic() + 120  # liveness guard only: the condition is met or the test fails
        while not event.is_set() and _lock_waiters(s, name) == 0:
            if time.monotonic() > deadline:
                raise TimeoutError("the other gate neither progressed nor waited for the lock")
            time.sleep(0.05)

    class RacingClient(MlflowClient):
        def __init__(self, who: str) -> None:
            super().__init__()
            self.who = who

        def get_model_version_by_alias(self, name, alias):
            mv = super().get_model_version_by_alias(name, alias)
            if alias == "champion" and not read[self.who].is_set():
                read[self.who].set()
                wait_for(read[other[self.who]])
            return mv

        def set_registered_model_alias(self, name, alias, version):
            if self.who == last:
                wait_for(wrote[other[self.who]])
            super().set_registered_model_alias(name, alias, version)
            wrote[self.who].set()

    def run(who: str) -> None:
        try:
            gate(s, RacingClient(who), name, versions[who], rmspe[who])
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(who,)) for who in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert setup.get_model_version_by_alias(name, "champion").version == versions["better"]
    assert setup.get_model_version(name, versions["better"]).tags["gate_decision"] == "champion"
