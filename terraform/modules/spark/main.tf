locals {
  kafka_topic_arn = var.kafka_cluster_arn == null ? null : "${replace(var.kafka_cluster_arn, ":cluster/", ":topic/")}/${var.kafka_topic}"
  kafka_group_arn = var.kafka_cluster_arn == null ? null : "${replace(var.kafka_cluster_arn, ":cluster/", ":group/")}/*"

  statements = concat(
    [
      {
        Sid      = "ReadJobCode"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:ListBucket"]
        Resource = [var.code_bucket_arn, "${var.code_bucket_arn}/*"]
      },
      {
        Sid      = "ReadWriteCheckpoints"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"]
        Resource = [var.checkpoint_bucket_arn, "${var.checkpoint_bucket_arn}/*"]
      },
      {
        Sid      = "UseDataKey"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource = [var.kms_key_arn]
      },
      {
        Sid      = "WriteJobLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
        Resource = ["${aws_cloudwatch_log_group.this.arn}:*"]
      },
    ],
    [for s in [
      {
        Sid      = "ConnectToKafka"
        Effect   = "Allow"
        Action   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"]
        Resource = [var.kafka_cluster_arn]
      },
      {
        Sid      = "ReadSalesTopic"
        Effect   = "Allow"
        Action   = ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]
        Resource = [local.kafka_topic_arn]
      },
      {
        Sid      = "UseConsumerGroups"
        Effect   = "Allow"
        Action   = ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"]
        Resource = [local.kafka_group_arn]
      },
    ] : s if !(var.kafka_cluster_arn == null)],
    [for s in [
      {
        Sid      = "ReadDatabaseSecret"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = [var.database_secret_arn]
      },
    ] : s if !(var.database_secret_arn == null)],
  )
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/${var.name}/emr-serverless"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_emrserverless_application" "this" {
  name          = var.name
  release_label = var.release_label
  type          = "spark"

  maximum_capacity {
    cpu    = var.max_cpu
    memory = var.max_memory
  }

  auto_start_configuration {
    enabled = true
  }

  auto_stop_configuration {
    enabled              = true
    idle_timeout_minutes = var.idle_timeout_minutes
  }

  network_configuration {
    subnet_ids         = var.subnet_ids
    security_group_ids = var.security_group_ids
  }

  tags = var.tags
}

resource "aws_iam_role" "job" {
  name = "${var.name}-job"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "emr-serverless.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy" "job" {
  name   = "streaming-job"
  role   = aws_iam_role.job.id
  policy = jsonencode({ Version = "2012-10-17", Statement = local.statements })
}
