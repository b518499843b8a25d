variable "name" {
  type        = string
  description = "Ray cluster name (also prefix of roles and instance profiles)."
}

variable "region" {
  type        = string
  description = "AWS region the cluster runs in."
}

variable "availability_zones" {
  type        = list(string)
  description = "Availability zones of the private subnets."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets for head and workers."
}

variable "security_group_id" {
  type        = string
  description = "Security group of all Ray nodes (intra-cluster traffic, 8265 from the API)."
}

variable "code_bucket_arn" {
  type        = string
  description = "Bucket with job code zips (working_dir URIs)."
}

variable "artifact_bucket_arn" {
  type        = string
  description = "MLflow artifact bucket the training jobs write to."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key of the buckets."
}

variable "database_secret_arn" {
  type        = string
  default     = null
  description = "Secret with the database credentials training reads with (null: none)."
}

variable "mlflow_auth_secret_arn" {
  type        = string
  default     = null
  description = "Secret with the MLflow basic-auth credentials of Ray jobs (null: none)."
}

variable "ray_version" {
  type        = string
  default     = "2.60.0"
  description = "Ray version installed on every node (must match the client's)."
}

variable "image_id" {
  type        = string
  default     = null
  description = "AMI of the nodes (null: Ray's default Deep Learning AMI for the region)."
}

variable "head_instance_type" {
  type        = string
  default     = "m7i.xlarge"
  description = "Instance type of the head node."
}

variable "worker_instance_type" {
  type        = string
  default     = "c7i.2xlarge"
  description = "Instance type of the workers."
}

variable "min_workers" {
  type        = number
  default     = 0
  description = "Workers kept running when idle."
}

variable "max_workers" {
  type        = number
  default     = 4
  description = "Upper bound of the autoscaler."

  validation {
    condition     = var.max_workers >= var.min_workers
    error_message = "max_workers must be at least min_workers."
  }
}

variable "idle_timeout_minutes" {
  type        = number
  default     = 5
  description = "Minutes an idle worker lives before the autoscaler removes it."
}

variable "pip_packages" {
  type        = list(string)
  default     = ["neuralforecast==3.3.0", "mlflow==3.7.0", "psycopg2-binary==2.9.10", "boto3"]
  description = "Extra packages installed on every node by setup_commands."
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Tags added to every resource."
}

variable "head_setup_commands" {
  description = "Extra commands run only on the head after the setup commands (e.g. the monitoring module's Prometheus agent start)."
  type        = list(string)
  default     = []
}

variable "head_secret_arns" {
  description = "Secrets only the head may read (e.g. the database secret of the monitoring exporter it runs); workers never get them."
  type        = list(string)
  default     = []
}

variable "head_kafka_cluster_arn" {
  description = "MSK cluster (IAM auth) the head may connect to, to read the metadata and end offsets of head_kafka_topics (the monitoring exporter); null: no Kafka permissions. Workers never get them."
  type        = string
  default     = null
}

variable "head_kafka_topics" {
  description = "Topics of head_kafka_cluster_arn whose metadata and offsets the head may read (kafka-cluster:DescribeTopic only: no data, no consumer groups)."
  type        = list(string)
  default     = []
}
