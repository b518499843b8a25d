"""A sensor that waits for a training job submitted through the API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException

from sfmlops_dag_utils.api import SfmlopsApi
from sfmlops_dag_utils.common.jobs import JobState


class TrainingJobSensor(BaseSensorOperator):
    """Poke ``GET /v1/training-jobs/{id}`` until the job succeeds; fail the task if it fails.

    Runs in ``reschedule`` mode by default, so a waiting job holds no worker slot between pokes
    (MWAA bills workers). The job's final record is pushed to XCom, its outcome, run time and rows to the
    Pushgateway (``metrics_kind`` is their ``kind`` label).

    Args:
        job_id: The id returned by ``POST /v1/training-jobs`` (templated).
        api_conn_id: Airflow HTTP connection of the API (templated; resolved at run time).
        api_timeout_s: HTTP timeout of each poke.
    """

    template_fields: Sequence[str] = ("job_id", "api_conn_id")
    ui_color = "#d6e9f8"

    def __init__(
        self, *, job_id: str, api_conn_id: str = "sfmlops_api", api_timeout_s: float = 30.0, metrics_kind: str = "training",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("mode", "reschedule")
        super().__init__(**kwargs)
        self.job_id = job_id
        self.api_conn_id = api_conn_id
        self.api_timeout_s = api_timeout_s
        self.metrics_kind = metrics_kind  # the `kind` label of the pushed outcome (training | forecast)

    def _push(self, context: Any, job: dict[str, Any], outcome: str) -> None:
        """The finished job's outcome, run time and rows to the Pushgateway (``sfmlops_dag_utils.metrics``)."""
        from sfmlops_dag_utils.metrics import job_rows, job_seconds, push

        push(context["dag"].dag_id, self.task_id, self.metrics_kind, outcome, job_seconds(job), job_rows(job.get("result")))

    def poke(self, context: Any) -> bool:
        api = SfmlopsApi.from_connection(self.api_conn_id, timeout_s=self.api_timeout_s)
        job = api.training_job(self.job_id)
        state = JobState(job["state"])
        self.log.info("training job %s: %s %s", self.job_id, state, job.get("message") or "")
        if state == JobState.SUCCEEDED:
            context["ti"].xcom_push(key="job", value=job)
            self._push(context, job, "succeeded")
            return True
        if state.finished:
            self._push(context, job, "failed")
            result = job.get("result") or {}
            tail = "\n".join(api.training_logs(self.job_id).splitlines()[-15:])
            raise AirflowFailException(
                f"training job {self.job_id} ended {state}: {job.get('message') or 'no message'}; "
                f"result: {result}; last log lines:\n{tail}"
            )
        return False
