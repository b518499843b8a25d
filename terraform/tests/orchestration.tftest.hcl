# The MWAA environment runs the Airflow version the DAGs are written for (Airflow 3, issue 20), on the
# mock provider: nothing here reaches AWS or the emulator. The DAG tests (tests/dags/test_af_dagbag.py)
# check that the defaults below equal the version of .venv-airflow and of dags/requirements.txt.

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }
  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }
  mock_resource "aws_iam_role" {
    defaults = {
      arn = "arn:aws:iam::123456789012:role/mock-mwaa"
    }
  }
  mock_resource "aws_mwaa_environment" {
    defaults = {
      arn = "arn:aws:airflow:eu-west-1:123456789012:environment/mock"
    }
  }
}

run "mwaa_environment_runs_airflow_3" {
  command = apply

  module {
    source = "./modules/orchestration"
  }

  variables {
    name               = "sfmlops-prod"
    region             = "eu-west-1"
    dags_bucket_arn    = "arn:aws:s3:::t-dags"
    subnet_ids         = ["subnet-a", "subnet-b"]
    security_group_ids = ["sg-airflow"]
    kms_key_arn        = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
  }

  assert {
    condition     = aws_mwaa_environment.this.airflow_version == "3.3.2"
    error_message = "The MWAA environment must run Apache Airflow 3.3.2, the version of .venv-airflow and dags/requirements.txt."
  }
  assert {
    condition     = aws_mwaa_environment.this.requirements_s3_path == "requirements.txt" && aws_mwaa_environment.this.dag_s3_path == "dags/"
    error_message = "MWAA must read the DAG bundle and requirements.txt where `make dags-package` says to upload them."
  }
  assert {
    condition     = aws_mwaa_environment.this.webserver_access_mode == "PRIVATE_ONLY"
    error_message = "The Airflow 3 api-server (UI and REST API) must stay private."
  }
}

run "module_rejects_an_airflow_2_environment" {
  command = plan

  module {
    source = "./modules/orchestration"
  }

  variables {
    name               = "sfmlops-old"
    region             = "eu-west-1"
    airflow_version    = "2.10.3"
    dags_bucket_arn    = "arn:aws:s3:::t-dags"
    subnet_ids         = ["subnet-a", "subnet-b"]
    security_group_ids = ["sg-airflow"]
    kms_key_arn        = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
  }

  expect_failures = [var.airflow_version]
}

run "root_rejects_an_airflow_2_environment" {
  command = plan

  variables {
    lambda_zip_path        = "tests/fixtures/handler.zip"
    name                   = "sfmlops-old"
    environment            = "test"
    mwaa_airflow_version   = "2.10.3"
    create_network         = false
    create_database        = false
    create_kafka           = false
    create_spark           = false
    create_ray             = false
    create_mlflow          = false
    create_orchestration   = false
    buckets                = { raw = { name = "b-raw", versioning = false, noncurrent_expiration_days = 1 }, checkpoints = { name = "b-c", versioning = false, noncurrent_expiration_days = 1 }, mlflow = { name = "b-m", versioning = false, noncurrent_expiration_days = 1 }, code = { name = "b-co", versioning = false, noncurrent_expiration_days = 1 }, dags = { name = "b-d", versioning = false, noncurrent_expiration_days = 1 } }
    access_log_bucket_name = "b-logs"
  }

  expect_failures = [var.mwaa_airflow_version]
}
