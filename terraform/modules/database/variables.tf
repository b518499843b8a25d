variable "name" {
  type        = string
  description = "Name prefix and DB instance identifier."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets of the DB subnet group (two AZs)."
}

variable "security_group_ids" {
  type        = list(string)
  description = "Security groups of the instance (admit 5432 only from the components that need it)."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for storage, Performance Insights, log exports and the managed master secret."
}

variable "engine_version" {
  type        = string
  default     = "16.8"
  description = "PostgreSQL engine version."
}

variable "parameter_group_family" {
  type        = string
  default     = "postgres16"
  description = "Parameter group family matching engine_version."
}

variable "instance_class" {
  type        = string
  default     = "db.t4g.medium"
  description = "Instance class."
}

variable "allocated_storage_gb" {
  type        = number
  default     = 50
  description = "Initial storage in GB."
}

variable "max_allocated_storage_gb" {
  type        = number
  default     = 200
  description = "Storage autoscaling ceiling in GB."
}

variable "database_name" {
  type        = string
  default     = "sfmlops"
  description = "Initial database (the application database)."
}

variable "master_username" {
  type        = string
  default     = "sfmlops_admin"
  description = "Master user name; its password is generated and kept in Secrets Manager by RDS."
}

variable "multi_az" {
  type        = bool
  default     = true
  description = "Standby in a second AZ."
}

variable "backup_retention_days" {
  type        = number
  default     = 7
  description = "Days automated backups are kept (1..35)."

  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be between 1 and 35."
  }
}

variable "deletion_protection" {
  type        = bool
  default     = true
  description = "Refuse deletion of the instance."
}

variable "skip_final_snapshot" {
  type        = bool
  default     = false
  description = "Skip the final snapshot on destroy (true only for throwaway environments)."
}

variable "monitoring_interval" {
  type        = number
  default     = 60
  description = "Enhanced Monitoring interval in seconds (0 disables it)."
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Tags added to every resource."
}

variable "roles" {
  type = map(string)
  default = {
    api        = "sfmlops_api"
    ray        = "sfmlops_ray"
    spark      = "sfmlops_ingest"
    mlflow     = "sfmlops_mlflow"
    dags       = "sfmlops_dags"
    monitoring = "sfmlops_monitoring"
  }
  description = "Least-privilege database role per component (component => user name); each gets its own Secrets Manager secret. Grants: app/db.py ROLE_GRANTS, applied by terraform/scripts/bootstrap_db_roles.py."

  validation {
    condition     = alltrue([for u in values(var.roles) : can(regex("^[a-z_][a-z0-9_]{0,62}$", u))]) && length(distinct(values(var.roles))) == length(var.roles)
    error_message = "roles: every user name must be a distinct plain lower-case SQL identifier."
  }
}
