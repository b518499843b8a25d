variable "name" {
  type        = string
  description = "Name of the EMR Serverless application and prefix of its role."
}

variable "release_label" {
  type        = string
  default     = "emr-spark-8.0.0"
  description = "EMR release: Spark 4.0.2, whose Kafka source the job's packages are for (app/common/spark.py EMR_RELEASE_LABEL and EMR_SPARK_VERSION; a test keeps this default equal)."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets the Spark drivers and executors run in."
}

variable "security_group_ids" {
  type        = list(string)
  description = "Security groups of the Spark workers."
}

variable "code_bucket_arn" {
  type        = string
  description = "Bucket holding the streaming job (read only)."
}

variable "checkpoint_bucket_arn" {
  type        = string
  description = "Bucket holding streaming checkpoints (read/write)."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key of the buckets and logs."
}

variable "kafka_cluster_arn" {
  type        = string
  default     = null
  description = "MSK cluster the job reads (null: no Kafka permissions)."
}

variable "kafka_topic" {
  type        = string
  default     = "sales"
  description = "Topic the streaming job consumes."
}

variable "database_secret_arn" {
  type        = string
  default     = null
  description = "Secrets Manager ARN with the database credentials the job writes with (null: none)."
}

variable "max_cpu" {
  type        = string
  default     = "16 vCPU"
  description = "Maximum vCPU of the application."
}

variable "max_memory" {
  type        = string
  default     = "64 GB"
  description = "Maximum memory of the application."
}

variable "idle_timeout_minutes" {
  type        = number
  default     = 15
  description = "Minutes of idleness after which the application stops."
}

variable "log_retention_days" {
  type        = number
  default     = 365
  description = "Days job logs are kept in CloudWatch Logs."
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Tags added to every resource."
}
