data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  account_id = data.aws_caller_identity.current.account_id

  # Statements whose Action or Resource is a bare "*" and why; asserted by terraform test.
  wildcard_reasons = {
    DescribeForAutoscaler = "EC2 Describe* actions do not support resource-level permissions; the autoscaler must list instances, subnets, images and instance types."
    LaunchRayWorkers      = "ec2:RunInstances authorizes the image, subnet, security group, volumes and network interfaces of the new instance, whose ARNs are not known in advance; limited to this region by a condition, and the instances can only carry the worker instance profile (iam:PassRole below)."
  }

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
    [for s in [{
      Sid      = "ReadDatabaseSecret"
      Effect   = "Allow"
      Action   = ["secretsmanager:GetSecretValue"]
      Resource = [var.database_secret_arn]
    }] : s if !(var.database_secret_arn == null)],
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
      Sid       = "LaunchRayWorkers"
      Effect    = "Allow"
      Action    = ["ec2:RunInstances", "ec2:CreateTags"]
      Resource  = "*"
      Condition = { StringEquals = { "aws:RequestedRegion" = var.region } }
    },
    {
      Sid       = "ControlRayNodes"
      Effect    = "Allow"
      Action    = ["ec2:StartInstances", "ec2:StopInstances", "ec2:TerminateInstances"]
      Resource  = "arn:${local.partition}:ec2:${var.region}:${local.account_id}:instance/*"
      Condition = { StringEquals = { "ec2:ResourceTag/ray-cluster-name" = var.name } }
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

resource "aws_iam_role_policy" "this" {
  name   = "ray-head"
  role   = aws_iam_role.this.id
  policy = jsonencode({ Version = "2012-10-17", Statement = concat(local.workload_statements, local.autoscaler_statements) })
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

locals {
  cluster_yaml = templatefile("${path.module}/templates/cluster.yaml.tftpl", {
    cluster_name         = var.name
    region               = var.region
    availability_zones   = join(",", var.availability_zones)
    subnet_ids           = var.subnet_ids
    security_group_id    = var.security_group_id
    head_profile_arn     = aws_iam_instance_profile.this.arn
    worker_profile_arn   = aws_iam_instance_profile.worker.arn
    image_id             = var.image_id
    head_instance_type   = var.head_instance_type
    worker_instance_type = var.worker_instance_type
    min_workers          = var.min_workers
    max_workers          = var.max_workers
    idle_timeout_minutes = var.idle_timeout_minutes
    ray_version          = var.ray_version
    pip_packages         = join(" ", [for p in var.pip_packages : "'${p}'"])
  })
}
