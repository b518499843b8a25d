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

# --- Lambda (the API) -----------------------------------------------------------------------------------
resource "aws_cloudwatch_metric_alarm" "lambda_errors" {
  for_each            = local.lambda
  alarm_name          = "${var.name}-lambda-errors"
  alarm_description   = "The API Lambda raised errors (5xx behind API Gateway): see its log group."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "lambda_throttles" {
  for_each            = local.lambda
  alarm_name          = "${var.name}-lambda-throttles"
  alarm_description   = "The API Lambda was throttled (reserved concurrency reached)."
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "lambda_duration" {
  for_each            = local.lambda
  alarm_name          = "${var.name}-lambda-duration-p99"
  alarm_description   = "The API Lambda's p99 duration is above ${var.lambda_duration_p99_ms} ms for 15 minutes."
  namespace           = "AWS/Lambda"
  metric_name         = "Duration"
  dimensions          = { FunctionName = each.value }
  extended_statistic  = "p99"
  period              = 300
  evaluation_periods  = 3
  threshold           = var.lambda_duration_p99_ms
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

# --- RDS ------------------------------------------------------------------------------------------------
resource "aws_cloudwatch_metric_alarm" "db_cpu" {
  for_each            = local.db
  alarm_name          = "${var.name}-rds-cpu"
  alarm_description   = "RDS CPU above ${var.db_cpu_percent} % for 15 minutes."
  namespace           = "AWS/RDS"
  metric_name         = "CPUUtilization"
  dimensions          = { DBInstanceIdentifier = each.value }
  statistic           = "Average"
  period              = 300
  evaluation_periods  = 3
  threshold           = var.db_cpu_percent
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "db_storage" {
  for_each            = local.db
  alarm_name          = "${var.name}-rds-free-storage"
  alarm_description   = "RDS free storage below ${var.db_free_storage_bytes} bytes."
  namespace           = "AWS/RDS"
  metric_name         = "FreeStorageSpace"
  dimensions          = { DBInstanceIdentifier = each.value }
  statistic           = "Minimum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.db_free_storage_bytes
  comparison_operator = "LessThanThreshold"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "db_connections" {
  for_each            = local.db
  alarm_name          = "${var.name}-rds-connections"
  alarm_description   = "More than ${var.db_max_connections} connections to RDS for 10 minutes."
  namespace           = "AWS/RDS"
  metric_name         = "DatabaseConnections"
  dimensions          = { DBInstanceIdentifier = each.value }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  threshold           = var.db_max_connections
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

# --- MSK ------------------------------------------------------------------------------------------------
resource "aws_cloudwatch_metric_alarm" "kafka_disk" {
  for_each            = local.brokers
  alarm_name          = "${var.name}-msk-disk-broker-${each.key}"
  alarm_description   = "MSK broker ${each.key}: data-log disk more than ${var.kafka_disk_percent} % full."
  namespace           = "AWS/Kafka"
  metric_name         = "KafkaDataLogsDiskUsed"
  dimensions          = { "Cluster Name" = var.kafka_cluster_name, "Broker ID" = each.key }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.kafka_disk_percent
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "kafka_lag" {
  for_each            = local.kafka
  alarm_name          = "${var.name}-msk-consumer-lag"
  alarm_description   = "The streaming job (group ${var.kafka_consumer_group}) is more than ${var.kafka_max_offset_lag} records behind on ${var.kafka_topic} for 15 minutes."
  namespace           = "AWS/Kafka"
  metric_name         = "MaxOffsetLag"
  dimensions          = { "Cluster Name" = each.value, "Consumer Group" = var.kafka_consumer_group, "Topic" = var.kafka_topic }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 3
  threshold           = var.kafka_max_offset_lag
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

# --- EMR Serverless -------------------------------------------------------------------------------------
resource "aws_cloudwatch_metric_alarm" "emr_failures" {
  for_each            = local.emr
  alarm_name          = "${var.name}-emr-failed-jobs"
  alarm_description   = "A streaming (EMR Serverless) job run failed."
  namespace           = "AWS/EMRServerless"
  metric_name         = "FailedJobs"
  dimensions          = { ApplicationId = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
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
