locals {
  # Both the execution role (pulls the image, writes logs, reads the secret) and the task role (the
  # server itself) are assumed by ECS tasks.
  ecs_tasks_assume_role = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })

  namespace = "${var.name}.internal"
  port      = 5000

  # The tracking server runs MLflow's basic-auth app: the admin password comes from the
  # Secrets Manager secret below and is written to the auth config at start. The backend URI is built
  # with every credential percent-encoded (RDS-generated passwords contain '@', ':', '/', '%'...), and
  # '%' is doubled where the value goes into the ini file (configparser interpolation). `mlflow server`
  # reads the URI from MLFLOW_BACKEND_STORE_URI (not argv, where `ps` would show the password).
  backend_uri_command = "python -c \"import os, urllib.parse as u; q = lambda k: u.quote(os.environ[k], safe=''); print('postgresql://' + q('DB_USER') + ':' + q('DB_PASSWORD') + '@' + os.environ['DB_HOST'] + ':' + os.environ['DB_PORT'] + '/' + q('DB_NAME') + '?sslmode=require')\""
  start_command = join(" && ", [
    "export BACKEND_URI=\"$(${local.backend_uri_command})\"",
    "printf '[mlflow]\\ndefault_permission = NO_PERMISSIONS\\ndatabase_uri = %s\\nadmin_username = admin\\nadmin_password = %s\\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\\n' \"$(printf %s \"$BACKEND_URI\" | sed 's/%/%%/g')\" \"$(printf %s \"$MLFLOW_ADMIN_PASSWORD\" | sed 's/%/%%/g')\" > /tmp/basic_auth.ini",
    "export MLFLOW_AUTH_CONFIG_PATH=/tmp/basic_auth.ini MLFLOW_BACKEND_STORE_URI=\"$BACKEND_URI\"",
    "exec mlflow server --host 0.0.0.0 --port ${local.port} --app-name basic-auth --artifacts-destination s3://${var.artifact_bucket_name}/ --serve-artifacts",
  ])
}

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = var.tags
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/${var.name}/mlflow"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_secretsmanager_secret" "admin" {
  #checkov:skip=CKV2_AWS_57:The MLflow admin password lives in MLflow's auth database too, so rotation is an operator runbook (put-secret-value, then restart), not a rotation Lambda.
  name        = "${var.name}/mlflow-admin"
  description = "MLflow basic-auth admin password; its value is set out of band (never in Terraform state)."
  kms_key_id  = var.kms_key_arn
  tags        = var.tags
}

# Basic-auth credentials of MLflow's clients (the API Lambda, Ray jobs), one secret per client: JSON
# {username, password}. Terraform creates the secrets, never their values; the admin creates each user in
# MLflow (POST /api/2.0/mlflow/users/create) with the permissions it needs and puts the value (README).
resource "aws_secretsmanager_secret" "client" {
  #checkov:skip=CKV2_AWS_57:A client's MLflow password lives in MLflow's auth database too, so rotation is an operator runbook (users/update-password, then put-secret-value), not a rotation Lambda.
  for_each = toset(var.clients)

  name        = "${var.name}/mlflow-client/${each.key}"
  description = "MLflow basic-auth credentials of the ${each.key} client (JSON username/password), set out of band."
  kms_key_id  = var.kms_key_arn
  tags        = merge(var.tags, { "sfmlops:component" = each.key })
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-mlflow-execution"
  assume_role_policy = local.ecs_tasks_assume_role
  tags               = var.tags
}

resource "aws_iam_role_policy" "execution" {
  name = "pull-log-secrets"
  role = aws_iam_role.execution.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "WriteContainerLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = ["${aws_cloudwatch_log_group.this.arn}:*"]
      },
      {
        Sid      = "InjectSecrets"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = [aws_secretsmanager_secret.admin.arn, var.database_secret_arn]
      },
      {
        Sid      = "DecryptSecrets"
        Effect   = "Allow"
        Action   = ["kms:Decrypt"]
        Resource = [var.kms_key_arn]
      },
    ]
  })
}

resource "aws_iam_role" "task" {
  name               = "${var.name}-mlflow-task"
  assume_role_policy = local.ecs_tasks_assume_role
  tags               = var.tags
}

resource "aws_iam_role_policy" "task" {
  name = "artifacts"
  role = aws_iam_role.task.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ReadWriteArtifacts"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"]
        Resource = [var.artifact_bucket_arn, "${var.artifact_bucket_arn}/*"]
      },
      {
        Sid      = "UseDataKey"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource = [var.kms_key_arn]
      },
    ]
  })
}

locals {
  # Injected by ECS from Secrets Manager: the backend store role's credentials and the admin password.
  container_secrets = [
    { name = "DB_USER", valueFrom = "${var.database_secret_arn}:username::" },
    { name = "DB_PASSWORD", valueFrom = "${var.database_secret_arn}:password::" },
    { name = "MLFLOW_ADMIN_PASSWORD", valueFrom = aws_secretsmanager_secret.admin.arn },
  ]
}

resource "aws_ecs_task_definition" "this" {
  family                   = "${var.name}-mlflow"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([{
    name                   = "mlflow"
    image                  = var.image
    essential              = true
    readonlyRootFilesystem = true
    entryPoint             = ["sh", "-c"]
    command                = [local.start_command]
    portMappings           = [{ containerPort = local.port, protocol = "tcp" }]
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp" }]
    environment = [
      { name = "AWS_DEFAULT_REGION", value = var.region },
      { name = "DB_HOST", value = var.database_host },
      { name = "DB_PORT", value = tostring(var.database_port) },
      { name = "DB_NAME", value = var.database_name },
    ]
    secrets = local.container_secrets
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "mlflow"
      }
    }
  }])

  tags = var.tags
}

resource "aws_service_discovery_private_dns_namespace" "this" {
  name        = local.namespace
  description = "Private names of ${var.name} services"
  vpc         = var.vpc_id
  tags        = var.tags
}

resource "aws_service_discovery_service" "this" {
  name = "mlflow"

  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.this.id
    routing_policy = "MULTIVALUE"
    dns_records {
      type = "A"
      ttl  = 10
    }
  }

  tags = var.tags
}

resource "aws_ecs_service" "this" {
  name             = "mlflow"
  cluster          = aws_ecs_cluster.this.id
  task_definition  = aws_ecs_task_definition.this.arn
  desired_count    = var.desired_count
  launch_type      = "FARGATE"
  platform_version = "LATEST"

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = var.security_group_ids
    assign_public_ip = false
  }

  service_registries {
    registry_arn = aws_service_discovery_service.this.arn
  }

  tags = var.tags
}
