variable "name" {
  type        = string
  description = "Name prefix of every resource (for example sfmlops-prod)."
}

variable "buckets" {
  type = map(object({
    name                       = string
    versioning                 = bool
    noncurrent_expiration_days = number
    expiration_days            = optional(number)
  }))
  description = "Data buckets keyed by role (raw, checkpoints, mlflow, code, dags): globally unique name, versioning, and lifecycle in days (expiration_days = null keeps current objects forever)."

  validation {
    condition     = alltrue([for k in ["raw", "checkpoints", "mlflow", "code", "dags"] : contains(keys(var.buckets), k)])
    error_message = "buckets must contain the keys raw, checkpoints, mlflow, code and dags."
  }
}

variable "access_log_bucket_name" {
  type        = string
  description = "Name of the bucket that receives S3 server access logs of every data bucket."
}

variable "access_log_expiration_days" {
  type        = number
  default     = 365
  description = "Days S3 access logs are kept."
}

variable "kms_deletion_window_days" {
  type        = number
  default     = 30
  description = "Waiting period before the KMS key is deleted after destroy (7..30)."
}

variable "force_destroy" {
  type        = bool
  default     = false
  description = "Delete buckets even when they hold objects (true only for throwaway environments)."
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Tags added to every resource."
}
