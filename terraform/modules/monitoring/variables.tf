variable "name" {
  description = "Prefix of every monitoring resource (alarms, SNS topic, AMP workspace, dashboard)."
  type        = string
}

variable "region" {
  description = "AWS region of the monitored resources (dashboard widgets)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key encrypting the SNS topic and the AMP workspace."
  type        = string
}

variable "alarm_emails" {
  description = "E-mail addresses subscribed to the alert topic (each must confirm the subscription)."
  type        = list(string)
  default     = []
}

variable "lambda_function_name" {
  description = "The API Lambda (null: no Lambda alarms)."
  type        = string
  default     = null
}

variable "lambda_duration_p99_ms" {
  description = "Alarm when the API Lambda's p99 duration stays above this many milliseconds."
  type        = number
  default     = 1000
}

variable "db_instance_id" {
  description = "RDS instance identifier (null: no RDS alarms)."
  type        = string
  default     = null
}

variable "db_cpu_percent" {
  description = "Alarm when RDS CPU stays above this percentage."
  type        = number
  default     = 80
}

variable "db_free_storage_bytes" {
  description = "Alarm when RDS free storage falls below this many bytes."
  type        = number
  default     = 5368709120
}

variable "db_max_connections" {
  description = "Alarm when RDS has more connections than this."
  type        = number
  default     = 80
}

variable "kafka_cluster_name" {
  description = "MSK cluster name (null: no MSK alarms)."
  type        = string
  default     = null
}

variable "kafka_broker_count" {
  description = "Brokers of the MSK cluster (one disk alarm per broker, Broker IDs 1..n)."
  type        = number
  default     = 2
}

variable "kafka_disk_percent" {
  description = "Alarm when a broker's data-log disk is fuller than this percentage."
  type        = number
  default     = 80
}

variable "kafka_topic" {
  description = "Topic whose consumer lag is watched."
  type        = string
  default     = "sales"
}

variable "kafka_consumer_group" {
  description = "Consumer group of the streaming job (its `kafka.group.id`; MSK reports lag per group)."
  type        = string
  default     = "sfmlops-ingest"
}

variable "kafka_max_offset_lag" {
  description = "Alarm when the streaming job's MaxOffsetLag stays above this many records."
  type        = number
  default     = 100000
}

variable "emr_application_id" {
  description = "EMR Serverless application of the streaming job (null: no EMR alarm)."
  type        = string
  default     = null
}

variable "remote_write_role_arns_by_name" {
  description = "IAM roles allowed to remote-write to the AMP workspace, by a static key (ray_head, ray_worker, api): keys must be known at plan time."
  type        = map(string)
  default     = {}
}

variable "prometheus_agent_role_key" {
  description = "Key in remote_write_role_arns_by_name of the role that runs the Prometheus agent (the Ray head): it may read the agent's SSM parameter."
  type        = string
  default     = "ray_head"
}

variable "prometheus_agent_scrape_interval" {
  description = "Scrape interval of the Prometheus agent on the Ray head."
  type        = string
  default     = "30s"
}

variable "prometheus_agent_targets" {
  description = "Addresses the agent scrapes on the Ray head: the sfmlops exporter, the Pushgateway, Ray's service-discovery file."
  type = object({
    exporter    = string
    pushgateway = string
    ray_sd_file = string
  })
  default = {
    exporter    = "127.0.0.1:9188"
    pushgateway = "127.0.0.1:9091"
    ray_sd_file = "/tmp/ray/prom_metrics_service_discovery.json"
  }
}

variable "pushgateway_listen_address" {
  description = "Address the head's Pushgateway listens on (--web.listen-address): every interface by default, so the pushers off the head (EMR Serverless driver, MWAA tasks) reach it at the head's private address, as the network module's 9091 rule admits them; an IPv4 address or empty before the port, which must be the port of prometheus_agent_targets.pushgateway (the agent keeps scraping it on loopback). The Pushgateway has no authentication: the security group is its only guard."
  type        = string
  default     = "0.0.0.0:9091"

  validation {
    condition     = can(regex("^([0-9]{1,3}(\\.[0-9]{1,3}){3})?:[0-9]{1,5}$", var.pushgateway_listen_address))
    error_message = "pushgateway_listen_address must be [IPv4 address]:port, e.g. 0.0.0.0:9091 or :9091."
  }
  validation {
    condition     = element(split(":", var.pushgateway_listen_address), 1) == element(split(":", var.prometheus_agent_targets.pushgateway), 1)
    error_message = "pushgateway_listen_address must use the port of prometheus_agent_targets.pushgateway (the agent scrapes the Pushgateway there)."
  }
}

variable "pushgateway_version" {
  description = "Pushgateway release the Ray head runs (the official linux-amd64 binary from GitHub releases)."
  type        = string
  default     = "1.11.1"
}

variable "pushgateway_sha256" {
  description = "sha256 of pushgateway-<version>.linux-amd64.tar.gz (its release's sha256sums.txt); the head refuses any other download."
  type        = string
  default     = "6ce6ffab84d0d71195036326640295c02165462abd12b8092b0fa93188f5ee37"

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.pushgateway_sha256))
    error_message = "pushgateway_sha256 must be 64 lower-case hex digits."
  }
}

variable "job_code_uri" {
  description = "S3 URI of the job-code zip (app/ and ray_cluster/, app/jobs/package.py) whose app package the head's exporter runs."
  type        = string

  validation {
    condition     = startswith(var.job_code_uri, "s3://")
    error_message = "job_code_uri must be an s3:// URI."
  }
}

variable "exporter_environment" {
  description = "Non-secret SFMLOPS_* settings of the exporter on the Ray head (profile, region, database host and secret ARN, Kafka, tables); its bind address and port come from prometheus_agent_targets.exporter."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for k in keys(var.exporter_environment) :
      !can(regex("(PASSWORD|SECRET|TOKEN|PEPPER|PRIVATE_KEY)", upper(k))) || endswith(upper(k), "_ARN")
    ])
    error_message = "exporter_environment must not carry secrets (names with PASSWORD/SECRET/TOKEN/PEPPER/PRIVATE_KEY); pass a Secrets Manager ARN (..._ARN) instead."
  }
}

variable "exporter_pip_packages" {
  description = "Packages the head installs for the exporter on top of the Ray nodes' own (pinned as in requirements/main.lock)."
  type        = list(string)
  default     = ["pydantic-settings==2.16.3", "prometheus-client==0.26.0", "kafka-python==3.0.12", "aws-msk-iam-sasl-signer-python==1.0.2"]
}

variable "amp_retention_days" {
  description = "Days the AMP workspace's alert-manager/rule logs are kept in CloudWatch Logs."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
