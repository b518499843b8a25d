# Monitoring on AWS: CloudWatch alarms on the managed services -> one SNS topic; an Amazon Managed Service for
# Prometheus workspace the Ray cluster and the API remote-write to (least privilege: aps:RemoteWrite on this
# workspace only); the CloudWatch dashboard checked in as dashboard.json.tftpl. The app's own metric names and
# alert rules are the same as locally (monitoring/README.md).

data "aws_caller_identity" "current" {}

locals {
  alarm_actions = [aws_sns_topic.this.arn]
  lambda        = var.lambda_function_name != null ? { api = var.lambda_function_name } : {}
  db            = var.db_instance_id != null ? { db = var.db_instance_id } : {}
  kafka         = var.kafka_cluster_name != null ? { kafka = var.kafka_cluster_name } : {}
  brokers       = var.kafka_cluster_name != null ? { for i in range(1, var.kafka_broker_count + 1) : tostring(i) => i } : {}
  emr           = var.emr_application_id != null ? { emr = var.emr_application_id } : {}
  role_names    = { for k, arn in var.remote_write_role_arns_by_name : k => element(split("/", arn), length(split("/", arn)) - 1) }
}

resource "aws_sns_topic" "this" {
  name              = "${var.name}-alerts"
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

locals {
  sns_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "CloudWatchAlarmsPublish"
      Effect    = "Allow"
      Principal = { Service = "cloudwatch.amazonaws.com" }
      Action    = "sns:Publish"
      Resource  = aws_sns_topic.this.arn
      Condition = { StringEquals = { "aws:SourceAccount" = data.aws_caller_identity.current.account_id } }
    }]
  })
  # Exactly remote write, to this workspace only (no query, no workspace management).
  remote_write_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "RemoteWriteThisWorkspace"
      Effect   = "Allow"
      Action   = ["aps:RemoteWrite"]
      Resource = [aws_prometheus_workspace.this.arn]
    }]
  })
}

resource "aws_sns_topic_policy" "this" {
  arn    = aws_sns_topic.this.arn
  policy = local.sns_policy
}

resource "aws_sns_topic_subscription" "email" {
  for_each  = toset(var.alarm_emails)
  topic_arn = aws_sns_topic.this.arn
  protocol  = "email"
  endpoint  = each.value
}

# --- CloudWatch alarms: one resource over every alarm of the services present ---------------------------
# Key = the alarm's name after "<name>-". Every entry has every attribute (null / "missing" = CloudWatch's default),
# so the map has one element type. All periods are 5 minutes; each notifies the SNS topic when it fires and clears.
locals {
  alarms = merge(
    # Lambda (the API)
    { for k, fn in local.lambda : "lambda-errors" => {
      description = "The API Lambda raised errors (5xx behind API Gateway): see its log group.", namespace = "AWS/Lambda"
      metric      = "Errors", dimensions = { FunctionName = fn }, statistic = "Sum", extended_statistic = null
      periods     = 1, threshold = 0, comparison = "GreaterThanThreshold", missing = "notBreaching"
    } },
    { for k, fn in local.lambda : "lambda-throttles" => {
      description = "The API Lambda was throttled (reserved concurrency reached).", namespace = "AWS/Lambda"
      metric      = "Throttles", dimensions = { FunctionName = fn }, statistic = "Sum", extended_statistic = null
      periods     = 1, threshold = 0, comparison = "GreaterThanThreshold", missing = "notBreaching"
    } },
    { for k, fn in local.lambda : "lambda-duration-p99" => {
      description = "The API Lambda's p99 duration is above ${var.lambda_duration_p99_ms} ms for 15 minutes.", namespace = "AWS/Lambda"
      metric      = "Duration", dimensions = { FunctionName = fn }, statistic = null, extended_statistic = "p99"
      periods     = 3, threshold = var.lambda_duration_p99_ms, comparison = "GreaterThanThreshold", missing = "notBreaching"
    } },
    # RDS
    { for k, db in local.db : "rds-cpu" => {
      description = "RDS CPU above ${var.db_cpu_percent} % for 15 minutes.", namespace = "AWS/RDS"
      metric      = "CPUUtilization", dimensions = { DBInstanceIdentifier = db }, statistic = "Average", extended_statistic = null
      periods     = 3, threshold = var.db_cpu_percent, comparison = "GreaterThanThreshold", missing = "missing"
    } },
    { for k, db in local.db : "rds-free-storage" => {
      description = "RDS free storage below ${var.db_free_storage_bytes} bytes.", namespace = "AWS/RDS"
      metric      = "FreeStorageSpace", dimensions = { DBInstanceIdentifier = db }, statistic = "Minimum", extended_statistic = null
      periods     = 1, threshold = var.db_free_storage_bytes, comparison = "LessThanThreshold", missing = "missing"
    } },
    { for k, db in local.db : "rds-connections" => {
      description = "More than ${var.db_max_connections} connections to RDS for 10 minutes.", namespace = "AWS/RDS"
      metric      = "DatabaseConnections", dimensions = { DBInstanceIdentifier = db }, statistic = "Maximum", extended_statistic = null
      periods     = 2, threshold = var.db_max_connections, comparison = "GreaterThanThreshold", missing = "missing"
    } },
    # MSK: the data-log disk of every broker, the streaming job's consumer lag
    { for broker, _ in local.brokers : "msk-disk-broker-${broker}" => {
      description = "MSK broker ${broker}: data-log disk more than ${var.kafka_disk_percent} % full.", namespace = "AWS/Kafka"
      metric      = "KafkaDataLogsDiskUsed", dimensions = { "Cluster Name" = var.kafka_cluster_name, "Broker ID" = broker }
      statistic   = "Maximum", extended_statistic = null
      periods     = 1, threshold = var.kafka_disk_percent, comparison = "GreaterThanThreshold", missing = "missing"
    } },
    { for k, cluster in local.kafka : "msk-consumer-lag" => {
      description = "The streaming job (group ${var.kafka_consumer_group}) is more than ${var.kafka_max_offset_lag} records behind on ${var.kafka_topic} for 15 minutes."
      namespace   = "AWS/Kafka", metric = "MaxOffsetLag"
      dimensions  = { "Cluster Name" = cluster, "Consumer Group" = var.kafka_consumer_group, "Topic" = var.kafka_topic }
      statistic   = "Maximum", extended_statistic = null
      periods     = 3, threshold = var.kafka_max_offset_lag, comparison = "GreaterThanThreshold", missing = "notBreaching"
    } },
    # EMR Serverless
    { for k, app in local.emr : "emr-failed-jobs" => {
      description = "A streaming (EMR Serverless) job run failed.", namespace = "AWS/EMRServerless"
      metric      = "FailedJobs", dimensions = { ApplicationId = app }, statistic = "Sum", extended_statistic = null
      periods     = 1, threshold = 0, comparison = "GreaterThanThreshold", missing = "notBreaching"
    } },
  )
}

resource "aws_cloudwatch_metric_alarm" "this" {
  for_each            = local.alarms
  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  dimensions          = each.value.dimensions
  statistic           = each.value.statistic
  extended_statistic  = each.value.extended_statistic
  period              = 300
  evaluation_periods  = each.value.periods
  threshold           = each.value.threshold
  comparison_operator = each.value.comparison
  treat_missing_data  = each.value.missing
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

# --- Amazon Managed Service for Prometheus ----------------------------------------------------------------
resource "aws_cloudwatch_log_group" "amp" {
  name              = "/aws/prometheus/${var.name}"
  retention_in_days = var.amp_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_prometheus_workspace" "this" {
  alias       = var.name
  kms_key_arn = var.kms_key_arn
  logging_configuration {
    log_group_arn = "${aws_cloudwatch_log_group.amp.arn}:*"
  }
  tags = var.tags
}

resource "aws_iam_role_policy" "remote_write" {
  for_each = local.role_names
  name     = "${var.name}-amp-remote-write"
  role     = each.value
  policy   = local.remote_write_policy
}

# --- Prometheus agent on the Ray head: its config in SSM (SecureString, this module's KMS key) -------------------
locals {
  # (prometheus_agent_parameter, the parameter's name: head_commands.tf, which the head's commands also read)
  prometheus_agent_config = templatefile("${path.module}/prometheus-agent.yml.tftpl", {
    parameter_name   = local.prometheus_agent_parameter
    stack            = var.name
    scrape_interval  = var.prometheus_agent_scrape_interval
    scrape_timeout   = var.prometheus_agent_scrape_interval
    exporter         = var.prometheus_agent_targets.exporter
    pushgateway      = var.prometheus_agent_targets.pushgateway
    ray_sd_file      = var.prometheus_agent_targets.ray_sd_file
    remote_write_url = "${aws_prometheus_workspace.this.prometheus_endpoint}api/v1/remote_write"
    region           = var.region
  })
  agent_role = contains(keys(local.role_names), var.prometheus_agent_role_key) ? { agent = local.role_names[var.prometheus_agent_role_key] } : {}
  # Exactly reading this one parameter (and decrypting it through SSM with the module's key).
  prometheus_agent_read_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ReadPrometheusAgentConfig"
        Effect   = "Allow"
        Action   = ["ssm:GetParameter"]
        Resource = [aws_ssm_parameter.prometheus_agent.arn]
      },
      {
        Sid       = "DecryptItThroughSsm"
        Effect    = "Allow"
        Action    = ["kms:Decrypt"]
        Resource  = [var.kms_key_arn]
        Condition = { StringEquals = { "kms:ViaService" = "ssm.${var.region}.amazonaws.com" } }
      },
    ]
  })
}

resource "aws_ssm_parameter" "prometheus_agent" {
  name        = local.prometheus_agent_parameter
  description = "Prometheus agent config of the Ray head: scrape the exporter, the Pushgateway and Ray; remote-write to AMP (SigV4)"
  type        = "SecureString"
  key_id      = var.kms_key_arn
  tier        = "Standard"
  value       = local.prometheus_agent_config
  tags        = var.tags
}

resource "aws_iam_role_policy" "prometheus_agent_read" {
  for_each = local.agent_role
  name     = "${var.name}-prometheus-agent-config"
  role     = each.value
  policy   = local.prometheus_agent_read_policy
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  dashboard_body = templatefile("${path.module}/dashboard.json.tftpl", {
    region         = var.region
    function_name  = coalesce(var.lambda_function_name, "none")
    db_instance_id = coalesce(var.db_instance_id, "none")
    cluster_name   = coalesce(var.kafka_cluster_name, "none")
    consumer_group = var.kafka_consumer_group
    topic          = var.kafka_topic
    application_id = coalesce(var.emr_application_id, "none")
  })
}
