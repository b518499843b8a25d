data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  account_id = data.aws_caller_identity.current.account_id
  log_arn    = "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:airflow-${var.name}-*"

  # Statements whose Action or Resource is a bare "*" and why; asserted by terraform test.
  wildcard_reasons = {
    PublishMetrics       = "cloudwatch:PutMetricData does not support resource-level permissions (AWS's documented MWAA execution policy); limited to the AmazonMWAA namespace by a condition."
    AccountS3BlockStatus = "s3:GetAccountPublicAccessBlock is an account-level action without a resource ARN; MWAA checks it before reading the DAGs bucket."
  }

  statements = concat(
    [
      {
        Sid      = "PublishAirflowMetrics"
        Effect   = "Allow"
        Action   = ["airflow:PublishMetrics"]
        Resource = ["arn:${local.partition}:airflow:${var.region}:${local.account_id}:environment/${var.name}"]
      },
      {
        Sid       = "PublishMetrics"
        Effect    = "Allow"
        Action    = ["cloudwatch:PutMetricData"]
        Resource  = "*"
        Condition = { StringEquals = { "cloudwatch:namespace" = "AmazonMWAA" } }
      },
      {
        Sid      = "AccountS3BlockStatus"
        Effect   = "Allow"
        Action   = ["s3:GetAccountPublicAccessBlock"]
        Resource = "*"
      },
      {
        Sid      = "ReadDags"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetBucketLocation", "s3:GetBucketVersioning", "s3:GetBucketPublicAccessBlock", "s3:GetEncryptionConfiguration", "s3:ListBucket"]
        Resource = [var.dags_bucket_arn, "${var.dags_bucket_arn}/*"]
      },
      {
        Sid      = "WriteAirflowLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:CreateLogGroup", "logs:PutLogEvents", "logs:GetLogEvents", "logs:GetLogRecord", "logs:GetLogGroupFields", "logs:GetQueryResults", "logs:DescribeLogGroups"]
        Resource = [local.log_arn, "${local.log_arn}:*"]
      },
      {
        Sid      = "CeleryQueue"
        Effect   = "Allow"
        Action   = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:SendMessage"]
        Resource = ["arn:${local.partition}:sqs:${var.region}:*:airflow-celery-*"]
      },
      {
        Sid       = "UseKey"
        Effect    = "Allow"
        Action    = ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey", "kms:Encrypt"]
        Resource  = [var.kms_key_arn]
        Condition = { StringLike = { "kms:ViaService" = ["sqs.${var.region}.amazonaws.com", "s3.${var.region}.amazonaws.com"] } }
      },
    ],
    [for s in [
      {
        Sid      = "RunStreamingJob"
        Effect   = "Allow"
        Action   = ["emr-serverless:StartJobRun", "emr-serverless:GetJobRun", "emr-serverless:CancelJobRun", "emr-serverless:GetApplication", "emr-serverless:StartApplication"]
        Resource = [var.emr_application_arn, format("%s/jobruns/*", coalesce(var.emr_application_arn, "none"))]
      },
      {
        Sid       = "PassJobRole"
        Effect    = "Allow"
        Action    = ["iam:PassRole"]
        Resource  = [var.emr_job_role_arn]
        Condition = { StringLike = { "iam:PassedToService" = "emr-serverless.amazonaws.com" } }
      },
    ] : s if !(var.emr_application_arn == null)],
  )
}

resource "aws_iam_role" "this" {
  name = "${var.name}-mwaa"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = ["airflow.amazonaws.com", "airflow-env.amazonaws.com"] }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy" "this" {
  name   = "mwaa-execution"
  role   = aws_iam_role.this.id
  policy = jsonencode({ Version = "2012-10-17", Statement = local.statements })
}

resource "aws_mwaa_environment" "this" {
  name                  = var.name
  airflow_version       = var.airflow_version
  environment_class     = var.environment_class
  max_workers           = var.max_workers
  execution_role_arn    = aws_iam_role.this.arn
  source_bucket_arn     = var.dags_bucket_arn
  dag_s3_path           = var.dag_s3_path
  requirements_s3_path  = var.requirements_s3_path
  kms_key               = var.kms_key_arn
  webserver_access_mode = "PRIVATE_ONLY"

  airflow_configuration_options = var.airflow_configuration_options

  network_configuration {
    subnet_ids         = var.subnet_ids
    security_group_ids = var.security_group_ids
  }

  logging_configuration {
    dag_processing_logs {
      enabled   = true
      log_level = "INFO"
    }
    scheduler_logs {
      enabled   = true
      log_level = "INFO"
    }
    task_logs {
      enabled   = true
      log_level = "INFO"
    }
    webserver_logs {
      enabled   = true
      log_level = "WARNING"
    }
    worker_logs {
      enabled   = true
      log_level = "INFO"
    }
  }

  tags = var.tags

  depends_on = [aws_iam_role_policy.this]
}
