"""The vocabulary shared by the API, the UI, the demo and the Airflow DAGs: job states, job results, the API client.

Standard library and ``httpx`` only, no ``app`` imports (relative imports inside): the DAG bundle, which
cannot import ``app`` (it is not installed on MWAA), carries a verbatim copy of this package as
``dags/sfmlops_dag_utils/common/``. Edit the files here and run ``make dags-vendor``; a test fails when
the copies differ.
"""
