data "aws_partition" "current" {}

locals {
  in_vpc = length(var.subnet_ids) > 0

  pepper_secret_arns = aws_secretsmanager_secret.api_key_pepper[*].arn
  secret_arns        = concat(var.secret_arns, local.pepper_secret_arns)
  # The app reads the pepper from the secret at start-up (app/config.py: SFMLOPS_API_KEY_PEPPER_SECRET_ARN).
  environment = merge(
    var.environment,
    var.create_pepper_secret ? { SFMLOPS_API_KEY_PEPPER_SECRET_ARN = local.pepper_secret_arns[0] } : {},
  )

  # AWS-managed policies attached to the role and why their "*" resources are acceptable.
  managed_policy_reasons = merge(
    {
      "managed/AWSXRayDaemonWriteAccess" = "X-Ray trace upload actions (xray:PutTraceSegments, PutTelemetryRecords) have no resource-level permissions."
    },
    local.in_vpc ? {
      "managed/AWSLambdaVPCAccessExecutionRole" = "Lambda needs ec2:CreateNetworkInterface/DescribeNetworkInterfaces/DeleteNetworkInterface to attach to the VPC; these actions have no resource-level permissions for this use."
    } : {},
  )

  statements = concat(
    [{
      Sid      = "WriteFunctionLogs"
      Effect   = "Allow"
      Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
      Resource = ["${aws_cloudwatch_log_group.this.arn}:*"]
    }],
    [for s in [{
      Sid      = "ReadAppSecrets"
      Effect   = "Allow"
      Action   = ["secretsmanager:GetSecretValue"]
      Resource = local.secret_arns
    }] : s if !(length(local.secret_arns) == 0)],
    [for s in [{
      Sid      = "ReadJobCode"
      Effect   = "Allow"
      Action   = ["s3:GetObject", "s3:ListBucket"]
      Resource = [var.code_bucket_arn, format("%s/*", coalesce(var.code_bucket_arn, "none"))]
    }] : s if !(var.code_bucket_arn == null)],
    [{
      Sid      = "UseKey"
      Effect   = "Allow"
      Action   = ["kms:Decrypt"]
      Resource = [var.kms_key_arn]
    }],
  )
}

# The server-side pepper of API key hashes. Terraform creates the secret, never its value (which would
# land in the state): put it once with
#   aws secretsmanager put-secret-value --secret-id <api_key_pepper_secret_arn> --secret-string "$(openssl rand -base64 48)"
# Until then the function fails at start-up naming SFMLOPS_API_KEY_PEPPER_SECRET_ARN.
resource "aws_secretsmanager_secret" "api_key_pepper" {
  #checkov:skip=CKV2_AWS_57:Rotating the pepper invalidates every issued API key hash, so it is an operator runbook (new keys, put-secret-value), not a rotation Lambda.
  count       = var.create_pepper_secret ? 1 : 0
  name        = "${var.name}/api-key-pepper"
  description = "Pepper of the API key hashes; its value is set out of band (never in Terraform state)."
  kms_key_id  = var.kms_key_arn
  tags        = var.tags
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/aws/lambda/${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_cloudwatch_log_group" "access" {
  name              = "/${var.name}/api-access"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_iam_role" "this" {
  name = "${var.name}-lambda"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy" "this" {
  name   = "api"
  role   = aws_iam_role.this.id
  policy = jsonencode({ Version = "2012-10-17", Statement = local.statements })
}

# ENI management for a function inside the VPC (AWS managed policy, scoped by AWS).
resource "aws_iam_role_policy_attachment" "vpc" {
  count = local.in_vpc ? 1 : 0

  role       = aws_iam_role.this.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}

resource "aws_iam_role_policy_attachment" "xray" {
  role       = aws_iam_role.this.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_116:Invoked synchronously by API Gateway only; a dead-letter queue applies to asynchronous invocations and would never receive anything.
  #checkov:skip=CKV_AWS_272:The zip is built reproducibly by `make lambda-package` from a lock file; code signing needs an AWS Signer profile, an organisation-level choice left to the deployer.
  #checkov:skip=CKV_AWS_117:VPC attachment is set by subnet_ids (the root module passes the private subnets whenever the network is created); checkov cannot resolve the dynamic vpc_config from module inputs.
  function_name    = var.name
  role             = aws_iam_role.this.arn
  filename         = var.lambda_zip_path
  source_code_hash = filebase64sha256(var.lambda_zip_path)
  handler          = var.handler
  runtime          = var.runtime
  architectures    = ["x86_64"]
  memory_size      = var.memory_size
  timeout          = var.timeout_seconds
  kms_key_arn      = var.kms_key_arn

  reserved_concurrent_executions = var.reserved_concurrency

  environment {
    variables = local.environment
  }

  tracing_config {
    mode = "Active"
  }

  dynamic "vpc_config" {
    for_each = local.in_vpc ? [1] : []
    content {
      subnet_ids         = var.subnet_ids
      security_group_ids = var.security_group_ids
    }
  }

  tags = var.tags

  depends_on = [aws_cloudwatch_log_group.this, aws_iam_role_policy.this]
}

resource "aws_apigatewayv2_api" "this" {
  name          = var.name
  protocol_type = "HTTP"
  description   = "sfmlops job-submission and forecast API"

  dynamic "cors_configuration" {
    for_each = length(var.cors_allow_origins) > 0 ? [1] : []
    content {
      allow_origins = var.cors_allow_origins
      allow_methods = ["GET", "POST"]
      allow_headers = ["authorization", "content-type", "idempotency-key", "x-api-key"]
      max_age       = 300
    }
  }

  tags = var.tags
}

resource "aws_apigatewayv2_integration" "this" {
  api_id                 = aws_apigatewayv2_api.this.id
  integration_type       = "AWS_PROXY"
  integration_uri        = aws_lambda_function.this.invoke_arn
  integration_method     = "POST"
  payload_format_version = "2.0"
  timeout_milliseconds   = var.timeout_seconds * 1000 + 500
}

resource "aws_apigatewayv2_route" "this" {
  #checkov:skip=CKV_AWS_309:Authentication is done by the app (hashed API keys, per-client limits) because /healthz and the OpenAPI docs must stay open; a gateway authorizer would have to duplicate that key store.
  api_id    = aws_apigatewayv2_api.this.id
  route_key = "$default"
  target    = "integrations/${aws_apigatewayv2_integration.this.id}"
}

resource "aws_apigatewayv2_stage" "this" {
  api_id      = aws_apigatewayv2_api.this.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_rate_limit  = var.throttling_rate_limit
    throttling_burst_limit = var.throttling_burst_limit
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.access.arn
    format = jsonencode({
      requestId      = "$context.requestId"
      ip             = "$context.identity.sourceIp"
      requestTime    = "$context.requestTime"
      httpMethod     = "$context.httpMethod"
      path           = "$context.path"
      status         = "$context.status"
      responseLength = "$context.responseLength"
      latencyMs      = "$context.responseLatency"
      integrationErr = "$context.integrationErrorMessage"
    })
  }

  tags = var.tags
}

resource "aws_lambda_permission" "this" {
  statement_id  = "AllowApiGatewayInvoke"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.this.execution_arn}/*/*"
}
