variable "name" {
  type        = string
  description = "Name prefix of the ECS cluster, service and roles."
}

variable "region" {
  type        = string
  description = "AWS region (for the awslogs driver)."
}

variable "vpc_id" {
  type        = string
  description = "VPC of the private DNS namespace."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets of the tasks."
}

variable "security_group_ids" {
  type        = list(string)
  description = "Security groups of the tasks (5000 from API, Ray and Airflow only)."
}

variable "image" {
  type        = string
  default     = "ghcr.io/mlflow/mlflow:v3.7.0"
  description = "Container image of the tracking server (must contain psycopg2 and boto3)."
}

variable "cpu" {
  type        = number
  default     = 1024
  description = "Task CPU units."
}

variable "memory" {
  type        = number
  default     = 2048
  description = "Task memory in MiB."
}

variable "desired_count" {
  type        = number
  default     = 1
  description = "Running tasks."
}

variable "artifact_bucket_name" {
  type        = string
  description = "S3 bucket of the artifact root."
}

variable "artifact_bucket_arn" {
  type        = string
  description = "ARN of the artifact bucket."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key of the artifact bucket, logs and the admin secret."
}

variable "database_host" {
  type        = string
  description = "Host of the PostgreSQL backend store."
}

variable "database_port" {
  type        = number
  default     = 5432
  description = "Port of the PostgreSQL backend store."
}

variable "database_name" {
  type        = string
  default     = "mlflow"
  description = "Backend store database."
}

variable "database_secret_arn" {
  type        = string
  description = "Secrets Manager secret (JSON with username and password keys) of the backend store role."
}

variable "log_retention_days" {
  type        = number
  default     = 365
  description = "Days container logs are kept."
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Tags added to every resource."
}

variable "clients" {
  type        = list(string)
  default     = ["api", "ray"]
  description = "MLflow clients that get their own basic-auth credentials secret."
}
