data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  account_id = data.aws_caller_identity.current.account_id

  # Statements whose Action or Resource is a bare "*" and why; asserted by terraform test.
  wildcard_reasons = {
    DescribeForAutoscaler = "EC2 Describe* actions do not support resource-level permissions; the autoscaler must list instances, subnets, images and instance types."
  }

  secret_arns = compact([var.database_secret_arn, var.mlflow_auth_secret_arn])

  ec2_arn = "arn:${local.partition}:ec2:${var.region}:${local.account_id}"
  # The tag Ray's autoscaler puts on every node it launches (ray/autoscaler/tags.py TAG_RAY_CLUSTER_NAME).
  cluster_tag = "ray-cluster-name"
  # Tags the autoscaler sets on its nodes (ray-node-status, ray-launch-config, ...) and Name.
  node_tag_keys = ["ray-*", "Name"]

  assume_ec2 = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })

  # What every node needs to run training jobs.
  workload_statements = concat(
    [
      {
        Sid      = "ReadJobCode"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:ListBucket"]
        Resource = [var.code_bucket_arn, "${var.code_bucket_arn}/*"]
      },
      {
        Sid      = "ReadWriteModelArtifacts"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:PutObject", "s3:ListBucket"]
        Resource = [var.artifact_bucket_arn, "${var.artifact_bucket_arn}/*"]
      },
      {
        Sid      = "UseDataKey"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource = [var.kms_key_arn]
      },
    ],
    # Only the Ray jobs' own secrets: their database role and their MLflow credentials.
    [for s in [{
      Sid      = "ReadJobSecrets"
      Effect   = "Allow"
      Action   = ["secretsmanager:GetSecretValue"]
      Resource = local.secret_arns
    }] : s if length(local.secret_arns) > 0],
  )

  # What the head needs on top: the autoscaler launches and stops workers.
  autoscaler_statements = [
    {
      Sid    = "DescribeForAutoscaler"
      Effect = "Allow"
      Action = [
        "ec2:DescribeInstances", "ec2:DescribeInstanceStatus", "ec2:DescribeImages", "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups", "ec2:DescribeKeyPairs", "ec2:DescribeInstanceTypes", "ec2:DescribeAvailabilityZones",
      ]
      Resource = "*"
    },
    {
      # What a new instance uses (image, subnet, security group, volumes, interfaces): ARNs not known in
      # advance, so by type and region; the instance itself is the next statement.
      Sid    = "LaunchRayWorkersUse"
      Effect = "Allow"
      Action = ["ec2:RunInstances"]
      Resource = [
        "arn:${local.partition}:ec2:${var.region}::image/*",
        "${local.ec2_arn}:subnet/*",
        "${local.ec2_arn}:security-group/*",
        "${local.ec2_arn}:network-interface/*",
        "${local.ec2_arn}:volume/*",
        "${local.ec2_arn}:key-pair/*",
      ]
      Condition = { StringEquals = { "aws:RequestedRegion" = var.region } }
    },
    {
      # Only instances that carry this cluster's tag from their launch (Ray tags them in RunInstances).
      Sid       = "LaunchRayWorkers"
      Effect    = "Allow"
      Action    = ["ec2:RunInstances"]
      Resource  = "${local.ec2_arn}:instance/*"
      Condition = { StringEquals = { "aws:RequestTag/${local.cluster_tag}" = var.name } }
    },
    {
      # Tags in the RunInstances call itself (ec2:CreateAction), only with this cluster's tag.
      Sid      = "TagAtLaunch"
      Effect   = "Allow"
      Action   = ["ec2:CreateTags"]
      Resource = "${local.ec2_arn}:instance/*"
      Condition = {
        StringEquals = { "ec2:CreateAction" = "RunInstances", "aws:RequestTag/${local.cluster_tag}" = var.name }
      }
    },
    {
      # Later tag updates (node status, launch config) only on this cluster's instances, only Ray's keys,
      # and never moving an instance to another cluster.
      Sid      = "RetagClusterNodes"
      Effect   = "Allow"
      Action   = ["ec2:CreateTags"]
      Resource = "${local.ec2_arn}:instance/*"
      Condition = {
        StringEquals              = { "ec2:ResourceTag/${local.cluster_tag}" = var.name }
        StringEqualsIfExists      = { "aws:RequestTag/${local.cluster_tag}" = var.name }
        "ForAllValues:StringLike" = { "aws:TagKeys" = local.node_tag_keys }
      }
    },
    {
      Sid       = "ControlRayNodes"
      Effect    = "Allow"
      Action    = ["ec2:StartInstances", "ec2:StopInstances", "ec2:TerminateInstances"]
      Resource  = "${local.ec2_arn}:instance/*"
      Condition = { StringEquals = { "ec2:ResourceTag/${local.cluster_tag}" = var.name } }
    },
    {
      Sid      = "PassWorkerRole"
      Effect   = "Allow"
      Action   = ["iam:PassRole", "iam:GetInstanceProfile"]
      Resource = [aws_iam_role.worker.arn, aws_iam_instance_profile.worker.arn]
    },
  ]
}

resource "aws_iam_role" "this" {
  name               = "${var.name}-head"
  assume_role_policy = local.assume_ec2
  tags               = var.tags
}

# Secrets only the head reads (the monitoring exporter's database role), and the MSK access of the exporter it runs:
# never the workers.
locals {
  # MSK IAM resource ARNs: arn:...:cluster/<name>/<uuid> -> arn:...:topic/<name>/<uuid>/<topic>.
  head_kafka_topic_arns = var.head_kafka_cluster_arn == null ? [] : [
    for t in var.head_kafka_topics : "${replace(var.head_kafka_cluster_arn, ":cluster/", ":topic/")}/${t}"
  ]
  head_only_statements = concat(
    [for s in [{
      Sid      = "ReadHeadSecrets"
      Effect   = "Allow"
      Action   = ["secretsmanager:GetSecretValue"]
      Resource = var.head_secret_arns
    }] : s if length(var.head_secret_arns) > 0],
    # The exporter's Kafka source: metadata and end offsets of the topics (Metadata and ListOffsets need DESCRIBE on
    # the topic; MSK IAM's DescribeTopic), after authenticating (Connect). It reads no records and no group.
    [for s in [
      {
        Sid      = "ConnectToKafka"
        Effect   = "Allow"
        Action   = ["kafka-cluster:Connect"]
        Resource = [var.head_kafka_cluster_arn]
      },
      {
        Sid      = "DescribeKafkaTopics"
        Effect   = "Allow"
        Action   = ["kafka-cluster:DescribeTopic"]
        Resource = local.head_kafka_topic_arns
      },
    ] : s if length(local.head_kafka_topic_arns) > 0],
  )
}

resource "aws_iam_role_policy" "this" {
  name   = "ray-head"
  role   = aws_iam_role.this.id
  policy = jsonencode({ Version = "2012-10-17", Statement = concat(local.workload_statements, local.autoscaler_statements, local.head_only_statements) })
}

resource "aws_iam_instance_profile" "this" {
  name = "${var.name}-head"
  role = aws_iam_role.this.name
  tags = var.tags
}

resource "aws_iam_role" "worker" {
  name               = "${var.name}-worker"
  assume_role_policy = local.assume_ec2
  tags               = var.tags
}

resource "aws_iam_role_policy" "worker" {
  name   = "ray-worker"
  role   = aws_iam_role.worker.id
  policy = jsonencode({ Version = "2012-10-17", Statement = local.workload_statements })
}

resource "aws_iam_instance_profile" "worker" {
  name = "${var.name}-worker"
  role = aws_iam_role.worker.name
  tags = var.tags
}

# What the cluster file (cluster_yaml.tf) takes from the resources; everything else it reads from variables.
locals {
  head_profile_arn   = aws_iam_instance_profile.this.arn
  worker_profile_arn = aws_iam_instance_profile.worker.arn
}
