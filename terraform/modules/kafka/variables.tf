variable "name" {
  type        = string
  description = "Name of the MSK cluster."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets of the brokers, one per AZ."
}

variable "security_group_ids" {
  type        = list(string)
  description = "Security groups of the brokers (admit 9098 from producers and consumers)."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for encryption at rest and the broker log group."
}

variable "kafka_version" {
  type        = string
  default     = "3.9.x"
  description = "MSK Kafka version."
}

variable "broker_instance_type" {
  type        = string
  default     = "kafka.m7g.large"
  description = "Broker instance type."
}

variable "brokers_per_az" {
  type        = number
  default     = 1
  description = "Brokers in each subnet."
}

variable "broker_volume_gb" {
  type        = number
  default     = 100
  description = "EBS storage per broker in GB."
}

variable "topic_partitions" {
  type        = number
  default     = 4
  description = "Default partition count of auto-created topics (the sales topic is created explicitly with the same count)."
}

variable "log_retention_days" {
  type        = number
  default     = 365
  description = "Days broker logs are kept in CloudWatch Logs."
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Tags added to every resource."
}
