variable "name" {
  type        = string
  description = "Name of the Lambda function and the HTTP API."
}

variable "lambda_zip_path" {
  type        = string
  description = "Path of the deployment zip built outside Terraform (`make lambda-package` writes build/lambda.zip)."
}

variable "handler" {
  type        = string
  default     = "handler.handler"
  description = "Lambda handler (module.function) inside the zip."
}

variable "runtime" {
  type        = string
  default     = "python3.11"
  description = "Lambda runtime."
}

variable "memory_size" {
  type        = number
  default     = 512
  description = "Lambda memory in MB."
}

variable "timeout_seconds" {
  type        = number
  default     = 29
  description = "Lambda timeout; API Gateway HTTP APIs stop waiting after 30 s."
}

variable "reserved_concurrency" {
  type        = number
  default     = 20
  description = "Reserved concurrent executions (-1: unreserved)."
}

variable "environment" {
  type        = map(string)
  description = "Environment of the function: addresses, buckets, table names. Never secrets: pass secret ARNs instead."

  validation {
    condition = alltrue([
      for k in keys(var.environment) :
      !can(regex("(PASSWORD|SECRET|TOKEN|PEPPER|PRIVATE_KEY)", upper(k))) || endswith(upper(k), "_ARN")
    ])
    error_message = "environment must not carry secrets; pass a Secrets Manager ARN in a variable ending in _ARN instead."
  }
}

variable "secret_arns" {
  type        = list(string)
  default     = []
  description = "Secrets Manager ARNs the function may read (database credentials, API key pepper)."
}

variable "create_pepper_secret" {
  type        = bool
  default     = false
  description = "Create the Secrets Manager secret of the API key pepper (value put out of band) and point the function at it."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for the function environment and the log groups."
}

variable "subnet_ids" {
  type        = list(string)
  default     = []
  description = "Private subnets of the function (empty: not attached to a VPC)."
}

variable "security_group_ids" {
  type        = list(string)
  default     = []
  description = "Security groups of the function when it is attached to a VPC."
}

variable "code_bucket_arn" {
  type        = string
  default     = null
  description = "Bucket with job code zips the API hands to Ray as working_dir (read only; null: none)."
}

variable "throttling_rate_limit" {
  type        = number
  default     = 50
  description = "Steady-state requests per second of the $default stage."
}

variable "throttling_burst_limit" {
  type        = number
  default     = 100
  description = "Burst requests of the $default stage."
}

variable "cors_allow_origins" {
  type        = list(string)
  default     = []
  description = "Origins allowed by CORS (empty: CORS off)."
}

variable "log_retention_days" {
  type        = number
  default     = 365
  description = "Days function and access logs are kept."
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Tags added to every resource."
}
