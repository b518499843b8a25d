# AWS profile: a real account. Bucket names are global: change the suffix to something you own.
name        = "sfmlops-prod"
environment = "prod"
aws_region  = "eu-west-1"

availability_zones = ["eu-west-1a", "eu-west-1b"]

create_network       = true
create_nat_gateway   = true
create_kafka         = true
create_database      = true
create_spark         = true
create_ray           = true
create_mlflow        = true
create_api           = true
create_orchestration = true
create_monitoring    = true

buckets = {
  raw         = { name = "sfmlops-prod-raw-example", versioning = true, noncurrent_expiration_days = 30 }
  checkpoints = { name = "sfmlops-prod-checkpoints-example", versioning = true, noncurrent_expiration_days = 7 }
  mlflow      = { name = "sfmlops-prod-mlflow-artifacts-example", versioning = true, noncurrent_expiration_days = 90 }
  code        = { name = "sfmlops-prod-code-example", versioning = true, noncurrent_expiration_days = 90 }
  dags        = { name = "sfmlops-prod-dags-example", versioning = true, noncurrent_expiration_days = 90 }
}
access_log_bucket_name = "sfmlops-prod-access-logs-example"

force_destroy          = false
db_multi_az            = true
db_deletion_protection = true

# Set after `ray up` (private address of the head's Jobs API, http://<private DNS or IP>:8265); its host also
# names the head's Pushgateway for the EMR job and the MWAA tasks (http://<host>:9091).
ray_dashboard_url = null

lambda_zip_path = "../build/lambda.zip"
app_profile     = "aws"
