# Streaming ingestion (issue 4): connector jars, EMR packaging, tests and benchmark.
SPARK_JARS_DIR := .cache/jars/spark

.PHONY: spark-jars spark-package ingest-test ingest-bench

# The connector jars (Kafka source, hadoop-aws + AWS SDK) come from spark_jobs/pom.xml through
# app.ingest.resolve_jars, the one place that knows the Maven call. `make setup` fetches them: the Airflow
# DAG's local spark-submit uses them as they are.
.cache/jars/spark.stamp: spark_jobs/pom.xml app/common/spark.py | $(VENV)/.installed
	$(PY) -c "from app.config import get_settings; from app.ingest import resolve_jars; print(len(resolve_jars(get_settings())), 'Spark connector jars')"
	@touch $@

setup: .cache/jars/spark.stamp

spark-jars: .cache/jars/spark.stamp ## Resolve the Spark Kafka connector + hadoop-aws jars with Maven into .cache/jars/spark
	@ls $(SPARK_JARS_DIR)

spark-package: ## Build dist/spark (job file, app.zip for --py-files) and print the EMR spark-submit line
	$(PY) spark_jobs/package.py

ingest-test: spark-jars $(VENV)/.dev-installed ## Run the ingestion tests against the local stack
	nice -n 19 $(PY) -m pytest tests/ingest -q

ingest-bench: spark-jars ## Replay the full history through Kafka -> Spark -> Postgres and print one JSON line
	nice -n 19 $(PY) -m app.bench.ingest
