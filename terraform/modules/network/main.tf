locals {
  public_cidrs  = [for i, _ in var.availability_zones : cidrsubnet(var.cidr_block, 8, i)]
  private_cidrs = [for i, _ in var.availability_zones : cidrsubnet(var.cidr_block, 8, 10 + i)]

  # Who may reach whom inside the VPC: target component => port => allowed source components.
  ingress = {
    database = { 5432 = ["api", "spark", "ray", "mlflow", "airflow"] }
    kafka    = { 9098 = ["spark", "api", "airflow", "ray"] } # ray: the monitoring exporter on the head (IAM: head role only)
    mlflow   = { 5000 = ["api", "ray", "airflow"] }
    # 8265: the head's Jobs API. 9091: the head's Pushgateway, which has no authentication: this rule is its only
    # guard. It admits the pushers that run off the head, the EMR Serverless streaming job (spark) and the MWAA
    # tasks (airflow); the API never pushes, and the Ray jobs' drivers push on the head itself.
    ray = { 8265 = ["api", "airflow"], 9091 = ["spark", "airflow"] }
  }
  ingress_rules = merge([
    for target, ports in local.ingress : merge([
      for port, sources in ports : {
        for source in sources : "${source}-to-${target}-${port}" => { target = target, source = source, port = tonumber(port) }
        if contains(var.components, source) && contains(var.components, target)
      }
    ]...)
  ]...)
}

resource "aws_vpc" "this" {
  cidr_block           = var.cidr_block
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = merge(var.tags, { Name = var.name })
}

# The default security group admits nothing; components use their own groups below.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = "${var.name}-default-deny" })
}

resource "aws_subnet" "public" {
  count = length(var.availability_zones)

  vpc_id                  = aws_vpc.this.id
  cidr_block              = local.public_cidrs[count.index]
  availability_zone       = var.availability_zones[count.index]
  map_public_ip_on_launch = false
  tags                    = merge(var.tags, { Name = "${var.name}-public-${var.availability_zones[count.index]}", Tier = "public" })
}

resource "aws_subnet" "private" {
  count = length(var.availability_zones)

  vpc_id            = aws_vpc.this.id
  cidr_block        = local.private_cidrs[count.index]
  availability_zone = var.availability_zones[count.index]
  tags              = merge(var.tags, { Name = "${var.name}-private-${var.availability_zones[count.index]}", Tier = "private" })
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = var.name })
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = "${var.name}-public" })
}

resource "aws_route" "public_internet" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this.id
}

resource "aws_route_table_association" "public" {
  count = length(var.availability_zones)

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

resource "aws_eip" "nat" {
  count = var.create_nat_gateway ? 1 : 0

  domain = "vpc"
  tags   = merge(var.tags, { Name = "${var.name}-nat" })
}

resource "aws_nat_gateway" "this" {
  count = var.create_nat_gateway ? 1 : 0

  allocation_id = aws_eip.nat[0].id
  subnet_id     = aws_subnet.public[0].id
  tags          = merge(var.tags, { Name = var.name })

  depends_on = [aws_internet_gateway.this]
}

resource "aws_route_table" "private" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = "${var.name}-private" })
}

resource "aws_route" "private_nat" {
  count = var.create_nat_gateway ? 1 : 0

  route_table_id         = aws_route_table.private.id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.this[0].id
}

resource "aws_route_table_association" "private" {
  count = length(var.availability_zones)

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private.id
}

data "aws_region" "current" {}

# S3 traffic from private subnets stays on the AWS network.
resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.this.id
  service_name      = "com.amazonaws.${data.aws_region.current.name}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.private.id]
  tags              = merge(var.tags, { Name = "${var.name}-s3" })
}

# --- flow logs ---------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "flow_logs" {
  name              = "/${var.name}/vpc-flow-logs"
  retention_in_days = var.flow_log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_iam_role" "flow_logs" {
  name = "${var.name}-vpc-flow-logs"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "vpc-flow-logs.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy" "flow_logs" {
  name = "write-flow-logs"
  role = aws_iam_role.flow_logs.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "WriteFlowLogs"
      Effect   = "Allow"
      Action   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
      Resource = "${aws_cloudwatch_log_group.flow_logs.arn}:*"
    }]
  })
}

resource "aws_flow_log" "this" {
  vpc_id          = aws_vpc.this.id
  traffic_type    = "ALL"
  iam_role_arn    = aws_iam_role.flow_logs.arn
  log_destination = aws_cloudwatch_log_group.flow_logs.arn
  tags            = var.tags
}

# --- security groups, one per component ---------------------------------------------------

resource "aws_security_group" "this" {
  #checkov:skip=CKV2_AWS_5:Groups are attached in the component modules through the security_group_ids output, which checkov's graph cannot follow across modules; groups of components disabled in an environment are kept so enabling one later does not reshuffle rules.
  for_each = toset(var.components)

  name        = "${var.name}-${each.key}"
  description = "${var.name} ${each.key}"
  vpc_id      = aws_vpc.this.id
  tags        = merge(var.tags, { Name = "${var.name}-${each.key}", Component = each.key })
}

resource "aws_vpc_security_group_ingress_rule" "this" {
  for_each = local.ingress_rules

  security_group_id            = aws_security_group.this[each.value.target].id
  referenced_security_group_id = aws_security_group.this[each.value.source].id
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
  description                  = "${each.value.source} to ${each.value.target} on ${each.value.port}"
}

# Ray nodes talk to each other on many ports (GCS, object manager, workers).
resource "aws_vpc_security_group_ingress_rule" "ray_intra_cluster" {
  #checkov:skip=CKV_AWS_24:The source is the ray security group itself (referenced_security_group_id), not 0.0.0.0/0; checkov reads a rule without cidr_ipv4 as open.
  #checkov:skip=CKV_AWS_25:The source is the ray security group itself (referenced_security_group_id), not 0.0.0.0/0; checkov reads a rule without cidr_ipv4 as open.
  #checkov:skip=CKV_AWS_260:The source is the ray security group itself (referenced_security_group_id), not 0.0.0.0/0; checkov reads a rule without cidr_ipv4 as open.
  count = contains(var.components, "ray") ? 1 : 0

  security_group_id            = aws_security_group.this["ray"].id
  referenced_security_group_id = aws_security_group.this["ray"].id
  ip_protocol                  = "tcp"
  from_port                    = 0
  to_port                      = 65535
  description                  = "Ray head and workers among themselves"
}

resource "aws_vpc_security_group_ingress_rule" "airflow_self" {
  count = contains(var.components, "airflow") ? 1 : 0

  security_group_id            = aws_security_group.this["airflow"].id
  referenced_security_group_id = aws_security_group.this["airflow"].id
  ip_protocol                  = "-1"
  description                  = "MWAA requires its security group to admit itself"
}

resource "aws_vpc_security_group_egress_rule" "https" {
  for_each = toset(var.components)

  security_group_id = aws_security_group.this[each.key].id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  description       = "HTTPS to AWS APIs and package mirrors"
}

resource "aws_vpc_security_group_egress_rule" "vpc" {
  for_each = toset(var.components)

  security_group_id = aws_security_group.this[each.key].id
  cidr_ipv4         = var.cidr_block
  ip_protocol       = "-1"
  description       = "Anything inside the VPC (targets admit by security group)"
}
