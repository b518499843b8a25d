"""Helpers shared by the sfmlops DAGs (shipped inside the DAGs bucket next to the DAG files).

Nothing here imports the ``app`` package (it is not installed on MWAA), opens a connection, or reads an
Airflow Variable at import time: the DAG files import this package while they are parsed, and every
lookup happens inside a task, at run time.
"""

from sfmlops_dag_utils.config import DagConfig, run_config

__all__ = ["DagConfig", "run_config"]
