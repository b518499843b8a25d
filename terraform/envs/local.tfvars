# Local profile: applied for real to MiniStack (the emulator of `sfmlops up`).
# Endpoints come from localstack/tf_override.py (generated provider override), not from here.
# Components MiniStack cannot model are off; the app points at the local stand-ins instead.
name        = "sfmlops-local"
environment = "local"
aws_region  = "us-east-1"

create_network       = true
create_nat_gateway   = false
create_kafka         = false # MSK: local Kafka KRaft broker (127.0.0.1:9092)
create_database      = false # RDS: local PostgreSQL (127.0.0.1:5432)
create_spark         = false # EMR Serverless: spark-submit local[*]
create_ray           = true  # IAM roles, instance profiles and cluster.yaml; the head itself is `ray start` locally
create_mlflow        = false # ECS Fargate: local MLflow server (127.0.0.1:5000)
create_api           = true
create_orchestration = false # MWAA: Airflow standalone

local_endpoints = {
  aws_endpoint_url        = "http://127.0.0.1:4566"
  pg_host                 = "127.0.0.1"
  pg_port                 = 5432
  kafka_bootstrap_servers = "127.0.0.1:9092"
  mlflow_tracking_uri     = "http://127.0.0.1:5000"
  ray_address             = "http://127.0.0.1:8265"
}

# Distinct from the buckets `sfmlops up` creates, so the two never fight over a name.
buckets = {
  raw         = { name = "sfmlops-local-raw", versioning = false, noncurrent_expiration_days = 1, expiration_days = 30 }
  checkpoints = { name = "sfmlops-local-checkpoints", versioning = false, noncurrent_expiration_days = 1 }
  mlflow      = { name = "sfmlops-local-mlflow-artifacts", versioning = true, noncurrent_expiration_days = 7 }
  code        = { name = "sfmlops-local-code", versioning = true, noncurrent_expiration_days = 7 }
  dags        = { name = "sfmlops-local-dags", versioning = true, noncurrent_expiration_days = 7 }
}
access_log_bucket_name = "sfmlops-local-access-logs"

force_destroy            = true
kms_deletion_window_days = 7
log_retention_days       = 7

lambda_zip_path             = "../build/lambda.zip"
lambda_reserved_concurrency = -1
app_profile                 = "local"
