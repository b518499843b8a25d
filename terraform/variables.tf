variable "name" {
  type        = string
  description = "Name prefix of every resource (lowercase letters, digits and dashes)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3-31 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "environment" {
  type        = string
  description = "Environment label (local, staging, prod); used in tags."
}

variable "aws_region" {
  type        = string
  default     = "us-east-1"
  description = "AWS region of the deployment."
}

variable "availability_zones" {
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b"]
  description = "The two availability zones used by the network."
}

variable "vpc_cidr" {
  type        = string
  default     = "10.40.0.0/16"
  description = "IPv4 CIDR of the VPC."
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Extra tags added to every resource."
}

# --- what to create -------------------------------------------------------------------------

variable "create_network" {
  type        = bool
  default     = true
  description = "Create the VPC, subnets, security groups and S3 endpoint (required by every private component)."
}

variable "create_nat_gateway" {
  type        = bool
  default     = true
  description = "Create a NAT gateway for outbound traffic from private subnets."
}

variable "create_kafka" {
  type        = bool
  default     = true
  description = "Create the MSK cluster (off: the app uses local_endpoints.kafka_bootstrap_servers)."

  validation {
    condition     = !var.create_kafka || var.create_network
    error_message = "create_kafka needs create_network = true."
  }
}

variable "create_database" {
  type        = bool
  default     = true
  description = "Create RDS PostgreSQL (off: the app uses local_endpoints.pg_host/pg_port)."

  validation {
    condition     = !var.create_database || var.create_network
    error_message = "create_database needs create_network = true."
  }
}

variable "create_spark" {
  type        = bool
  default     = true
  description = "Create the EMR Serverless application and job role (off: spark-submit runs locally)."

  validation {
    condition     = !var.create_spark || var.create_network
    error_message = "create_spark needs create_network = true."
  }
}

variable "create_ray" {
  type        = bool
  default     = true
  description = "Create the Ray IAM roles and instance profiles and render the cluster file."

  validation {
    condition     = !var.create_ray || var.create_network
    error_message = "create_ray needs create_network = true."
  }
}

variable "create_mlflow" {
  type        = bool
  default     = true
  description = "Create the MLflow tracking server on ECS Fargate (off: local_endpoints.mlflow_tracking_uri)."

  validation {
    condition     = !var.create_mlflow || (var.create_network && var.create_database)
    error_message = "create_mlflow needs create_network and create_database = true."
  }
}

variable "create_api" {
  type        = bool
  default     = true
  description = "Create the Lambda function and the API Gateway HTTP API."
}

variable "create_orchestration" {
  type        = bool
  default     = true
  description = "Create the MWAA environment (off: Airflow standalone runs locally)."

  validation {
    condition     = !var.create_orchestration || var.create_network
    error_message = "create_orchestration needs create_network = true."
  }
}

variable "local_endpoints" {
  type = object({
    aws_endpoint_url        = optional(string)
    pg_host                 = optional(string)
    pg_port                 = optional(number)
    kafka_bootstrap_servers = optional(string)
    mlflow_tracking_uri     = optional(string)
    ray_address             = optional(string)
  })
  default     = {}
  description = "Addresses of stand-ins for components that are not created (the local stack); non-secret."
}

# --- storage ----------------------------------------------------------------------------------

variable "buckets" {
  type = map(object({
    name                       = string
    versioning                 = bool
    noncurrent_expiration_days = number
    expiration_days            = optional(number)
  }))
  description = "Data buckets keyed by role: raw, checkpoints, mlflow, code, dags (names must be globally unique on AWS)."
}

variable "access_log_bucket_name" {
  type        = string
  description = "Bucket receiving S3 server access logs."
}

variable "force_destroy" {
  type        = bool
  default     = false
  description = "Let destroy remove non-empty buckets and skip the final DB snapshot (throwaway environments only)."
}

variable "kms_deletion_window_days" {
  type        = number
  default     = 30
  description = "Waiting period (7..30 days) before the KMS key is deleted."
}

variable "log_retention_days" {
  type        = number
  default     = 365
  description = "Days CloudWatch log groups keep events."
}

# --- components -------------------------------------------------------------------------------

variable "kafka_topic" {
  type        = string
  default     = "sales"
  description = "Topic of daily store rows."
}

variable "kafka_consumer_group" {
  type        = string
  default     = "sfmlops-ingest"
  description = "Consumer group the streaming job commits its progress for (SFMLOPS_KAFKA_CONSUMER_GROUP; the default is the app's): MSK's consumer-lag metrics and alarm."

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,249}$", var.kafka_consumer_group))
    error_message = "kafka_consumer_group: ASCII letters, digits, '.', '_' and '-' only (CloudWatch drops lag metrics of groups with other characters)."
  }
}

variable "kafka_broker_instance_type" {
  type        = string
  default     = "kafka.m7g.large"
  description = "MSK broker instance type."
}

variable "db_instance_class" {
  type        = string
  default     = "db.t4g.medium"
  description = "RDS instance class."
}

variable "db_multi_az" {
  type        = bool
  default     = true
  description = "RDS standby in the second AZ."
}

variable "db_deletion_protection" {
  type        = bool
  default     = true
  description = "Refuse deletion of the RDS instance."
}

variable "ray_image_id" {
  type        = string
  default     = null
  description = "AMI of the Ray nodes (null: Ray's default for the region)."
}

variable "ray_min_workers" {
  type        = number
  default     = 0
  description = "Ray workers kept when idle."
}

variable "ray_max_workers" {
  type        = number
  default     = 4
  description = "Upper bound of Ray workers."
}

variable "ray_dashboard_url" {
  type        = string
  default     = null
  description = "Jobs API URL of the Ray head after `ray up` (http://<private DNS or IP>:8265); Terraform does not launch the head. With create_monitoring its host also names the head's Pushgateway (http://<host>:9091) for the EMR job and the MWAA tasks."

  validation {
    condition     = can(regex("^(|https?://(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?/?)$", trimspace(coalesce(var.ray_dashboard_url, " "))))
    error_message = "ray_dashboard_url must be http(s)://<host>[:port] (the head's private DNS name or IP, e.g. http://10.40.10.12:8265), or null before `ray up`."
  }
}

variable "mlflow_image" {
  type        = string
  default     = "ghcr.io/mlflow/mlflow:v3.7.0"
  description = "Container image of the MLflow tracking server."
}

variable "lambda_zip_path" {
  type        = string
  default     = "../build/lambda.zip"
  description = "Deployment zip of the API built by `make lambda-package` (path relative to terraform/ or absolute)."
}

variable "lambda_reserved_concurrency" {
  type        = number
  default     = 20
  description = "Reserved concurrent executions of the API function (-1: unreserved)."
}

variable "api_throttling_rate_limit" {
  type        = number
  default     = 50
  description = "Steady-state requests per second of the API stage."
}

variable "api_throttling_burst_limit" {
  type        = number
  default     = 100
  description = "Burst requests of the API stage."
}

variable "app_profile" {
  type        = string
  default     = "aws"
  description = "SFMLOPS_PROFILE of the deployed app (local on the emulator, aws otherwise)."

  validation {
    condition     = contains(["local", "aws"], var.app_profile)
    error_message = "app_profile must be local or aws."
  }
}

variable "app_environment" {
  type        = map(string)
  default     = {}
  description = "Extra non-secret SFMLOPS_* settings of the deployed app (merged last)."

  validation {
    condition = alltrue([
      for k in keys(var.app_environment) :
      !can(regex("(PASSWORD|SECRET|TOKEN|PEPPER|PRIVATE_KEY)", upper(k))) || endswith(upper(k), "_ARN")
    ])
    error_message = "app_environment must not carry secrets (names with PASSWORD/SECRET/TOKEN/PEPPER/PRIVATE_KEY); pass a Secrets Manager ARN (..._ARN) instead."
  }
}

variable "mwaa_airflow_version" {
  type        = string
  default     = "3.3.2"
  description = "MWAA Airflow version the DAGs target (Airflow 3; the same version as .venv-airflow and dags/requirements.txt)."

  validation {
    condition     = can(regex("^3\\.[0-9]+\\.[0-9]+$", var.mwaa_airflow_version))
    error_message = "mwaa_airflow_version must be an Airflow 3 version (3.y.z): the DAGs in dags/ use the Task SDK; commit eca6c73 is the last that supported Airflow 2."
  }
}

variable "create_monitoring" {
  type        = bool
  default     = false
  description = "Create CloudWatch alarms, the alert SNS topic, the AMP workspace and the dashboard (modules/monitoring)."
}

variable "alarm_emails" {
  type        = list(string)
  default     = []
  description = "E-mail addresses subscribed to the alert SNS topic (create_monitoring)."
}
