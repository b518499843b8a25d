"""The pieces the demo calls: Terraform outputs, the weekly DAG's report lines (no services needed)."""

from __future__ import annotations

import json

from app.config import Settings
from app.stack.airflow import dag_report
from app.stack.terraform import gateway_url, output_values


def test_terraform_outputs_are_plain_values() -> None:
    text = json.dumps({"api_id": {"value": "abc123", "type": "string", "sensitive": False},
                       "bucket_names": {"value": {"code": "c"}, "type": ["object", {}], "sensitive": False}})
    assert output_values(text) == {"api_id": "abc123", "bucket_names": {"code": "c"}}
    assert output_values("") == {}
    s = Settings(aws_endpoint_url="http://127.0.0.1:4566")
    assert gateway_url(s, "abc123") == "http://127.0.0.1:4566/_aws/execute-api/abc123"


def test_dag_report_takes_each_tasks_own_line() -> None:
    log = ("[task] new model v7 is the champion (RMSPE 0.11 < 0.12)\n"
           "[task] forecast coverage: 1115 stores x 48 days\n"
           "Done. Returned value was: new model v7 is the champion (RMSPE 0.11 < 0.12) again\n")
    assert dag_report(log) == {"champion": "new model v7 is the champion (RMSPE 0.11 < 0.12)",
                               "forecast_coverage": "1115 stores x 48 days"}
    assert dag_report("nothing") == {"champion": None, "forecast_coverage": None}
