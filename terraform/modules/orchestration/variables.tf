variable "name" {
  type        = string
  description = "Name of the MWAA environment."
}

variable "region" {
  type        = string
  description = "AWS region."
}

variable "airflow_version" {
  type        = string
  default     = "3.3.2"
  description = "MWAA Airflow version (Airflow 3; MWAA runs its 3.x images on Python 3.12)."

  validation {
    condition     = can(regex("^3\\.[0-9]+\\.[0-9]+$", var.airflow_version))
    error_message = "airflow_version must be an Airflow 3 version (3.y.z): the DAGs use the Task SDK."
  }
}

variable "environment_class" {
  type        = string
  default     = "mw1.small"
  description = "MWAA environment class."
}

variable "max_workers" {
  type        = number
  default     = 2
  description = "Upper bound of Celery workers."
}

variable "dags_bucket_arn" {
  type        = string
  description = "Bucket MWAA reads DAGs and requirements from."
}

variable "dag_s3_path" {
  type        = string
  default     = "dags/"
  description = "Prefix of the DAG files in the DAGs bucket."
}

variable "requirements_s3_path" {
  type        = string
  default     = "requirements.txt"
  description = "Key of the requirements file in the DAGs bucket (built by `make dags-package`)."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Two private subnets of the environment."
}

variable "security_group_ids" {
  type        = list(string)
  description = "Security groups of the environment."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key of the environment."
}

variable "emr_application_arn" {
  type        = string
  default     = null
  description = "EMR Serverless application the daily DAG starts job runs on (null: none)."
}

variable "emr_job_role_arn" {
  type        = string
  default     = null
  description = "Execution role the DAG passes to EMR Serverless job runs (null: none)."
}

variable "airflow_configuration_options" {
  type        = map(string)
  default     = {}
  description = "Airflow configuration options (non-secret); MWAA sets each as the environment variable AIRFLOW__<SECTION>__<KEY> of its components, e.g. sfmlops.pushgateway_url, which the DAGs read from the [sfmlops] section."
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Tags added to every resource."
}
