variable "name" {
  type        = string
  description = "Name prefix of every resource."
}

variable "cidr_block" {
  type        = string
  default     = "10.40.0.0/16"
  description = "IPv4 CIDR of the VPC."
}

variable "availability_zones" {
  type        = list(string)
  description = "Exactly two availability zones; one public and one private subnet is created in each."

  validation {
    condition     = length(var.availability_zones) == 2
    error_message = "availability_zones must list exactly two zones."
  }
}

variable "create_nat_gateway" {
  type        = bool
  default     = true
  description = "Create one NAT gateway so private subnets reach package mirrors (Ray setup commands, MWAA requirements)."
}

variable "flow_log_retention_days" {
  type        = number
  default     = 365
  description = "Days VPC flow logs are kept in CloudWatch Logs."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key that encrypts the flow-log group."
}

variable "components" {
  type        = list(string)
  default     = ["api", "database", "kafka", "spark", "ray", "mlflow", "airflow"]
  description = "Components that get their own security group."
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Tags added to every resource."
}
