# The monitoring module (issue 18) on the mock provider: every alarm of the managed services notifies the one
# SNS topic, the topic and the AMP workspace are encrypted, remote write is exactly aps:RemoteWrite on the
# workspace for the listed roles, and the checked-in dashboard renders to valid JSON naming the resources.

mock_provider "aws" {
  source = "./tests/mocks/aws" # the monitoring module's resources
  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = {
      arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/prometheus/sfmlops-prod"
    }
  }
}

variables {
  name                 = "sfmlops-prod"
  region               = "eu-west-1"
  kms_key_arn          = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
  alarm_emails         = ["oncall@example.com"]
  lambda_function_name = "sfmlops-prod-api"
  db_instance_id       = "sfmlops-prod-db"
  kafka_cluster_name   = "sfmlops-prod-msk"
  kafka_broker_count   = 3
  emr_application_id   = "00fabc123"
  job_code_uri         = "s3://sfmlops-prod-code/ray/job.zip"
  exporter_environment = { SFMLOPS_PROFILE = "aws", SFMLOPS_PG_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-monitoring" }
  remote_write_role_arns_by_name = {
    ray_head   = "arn:aws:iam::123456789012:role/sfmlops-prod-ray-head"
    ray_worker = "arn:aws:iam::123456789012:role/sfmlops-prod-ray-worker"
    api        = "arn:aws:iam::123456789012:role/sfmlops-prod-api"
  }
}

run "every_managed_service_has_its_alarms" {
  command = apply

  module {
    source = "./modules/monitoring"
  }

  assert {
    condition = output.alarm_names == sort([
      "sfmlops-prod-emr-failed-jobs", "sfmlops-prod-lambda-duration-p99", "sfmlops-prod-lambda-errors",
      "sfmlops-prod-lambda-throttles", "sfmlops-prod-msk-consumer-lag", "sfmlops-prod-msk-disk-broker-1",
      "sfmlops-prod-msk-disk-broker-2", "sfmlops-prod-msk-disk-broker-3", "sfmlops-prod-rds-connections",
      "sfmlops-prod-rds-cpu", "sfmlops-prod-rds-free-storage",
    ])
    error_message = "Expected Lambda errors/throttles/duration, RDS CPU/storage/connections, MSK disk per broker + lag, EMR failures."
  }
  assert {
    condition     = alltrue([for a in values(aws_cloudwatch_metric_alarm.this) : a.alarm_actions == toset([aws_sns_topic.this.arn]) && a.ok_actions == toset([aws_sns_topic.this.arn])])
    error_message = "Every alarm must notify the SNS topic."
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.this["lambda-duration-p99"].extended_statistic == "p99" && aws_cloudwatch_metric_alarm.this["lambda-duration-p99"].statistic == null && aws_cloudwatch_metric_alarm.this["rds-free-storage"].comparison_operator == "LessThanThreshold"
    error_message = "Lambda duration alarms on p99; free storage alarms when it falls below the threshold."
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.this["msk-consumer-lag"].dimensions["Consumer Group"] == "sfmlops-ingest" && aws_cloudwatch_metric_alarm.this["msk-consumer-lag"].dimensions["Topic"] == "sales"
    error_message = "The MSK lag alarm watches the streaming job's consumer group on the sales topic."
  }
  assert {
    condition     = aws_sns_topic.this.kms_master_key_id == var.kms_key_arn && aws_prometheus_workspace.this.kms_key_arn == var.kms_key_arn
    error_message = "The SNS topic and the AMP workspace must be encrypted with the project key."
  }
  assert {
    condition     = jsondecode(aws_sns_topic_policy.this.policy).Statement[0].Principal.Service == "cloudwatch.amazonaws.com" && jsondecode(aws_sns_topic_policy.this.policy).Statement[0].Condition.StringEquals["aws:SourceAccount"] == "123456789012"
    error_message = "Only CloudWatch of this account may publish to the alert topic."
  }
  assert {
    condition     = length(aws_sns_topic_subscription.email) == 1
    error_message = "Each alarm e-mail gets a subscription."
  }
}

run "remote_write_is_least_privilege" {
  command = apply

  module {
    source = "./modules/monitoring"
  }

  assert {
    condition     = jsondecode(output.remote_write_policy_json).Statement[0].Action == ["aps:RemoteWrite"] && jsondecode(output.remote_write_policy_json).Statement[0].Resource == ["arn:aws:aps:eu-west-1:123456789012:workspace/ws-mock"]
    error_message = "Remote write must be exactly aps:RemoteWrite on this workspace."
  }
  assert {
    condition     = !strcontains(output.remote_write_policy_json, "*")
    error_message = "No wildcard in the remote-write policy."
  }
  assert {
    condition     = toset([for p in aws_iam_role_policy.remote_write : p.role]) == toset(["sfmlops-prod-ray-head", "sfmlops-prod-ray-worker", "sfmlops-prod-api"])
    error_message = "The Ray head, the Ray workers and the API role remote-write."
  }
  assert {
    condition     = output.amp_remote_write_url == "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-mock/api/v1/remote_write"
    error_message = "The remote-write URL is the workspace endpoint + api/v1/remote_write."
  }
}

run "prometheus_agent_remote_writes_with_sigv4_and_reads_only_its_parameter" {
  command = apply

  module {
    source = "./modules/monitoring"
  }

  assert {
    condition     = aws_ssm_parameter.prometheus_agent.type == "SecureString" && aws_ssm_parameter.prometheus_agent.key_id == var.kms_key_arn && aws_ssm_parameter.prometheus_agent.value == output.prometheus_agent_config
    error_message = "The agent config is a SecureString parameter under the module's KMS key."
  }
  assert {
    condition     = yamldecode(output.prometheus_agent_config).remote_write[0].url == output.amp_remote_write_url && yamldecode(output.prometheus_agent_config).remote_write[0].sigv4.region == "eu-west-1"
    error_message = "The agent remote-writes to this workspace, signing with SigV4 in the module's region."
  }
  assert {
    condition     = [for j in yamldecode(output.prometheus_agent_config).scrape_configs : j.job_name] == ["sfmlops_exporter", "pushgateway", "ray"]
    error_message = "The agent scrapes the exporter, the Pushgateway and Ray (the local stack's job names)."
  }
  assert {
    condition     = [for p in aws_iam_role_policy.prometheus_agent_read : p.role] == ["sfmlops-prod-ray-head"]
    error_message = "Only the Ray head's role may read the agent config."
  }
  assert {
    condition     = jsondecode(output.prometheus_agent_read_policy_json).Statement[0].Action == ["ssm:GetParameter"] && jsondecode(output.prometheus_agent_read_policy_json).Statement[0].Resource == ["arn:aws:ssm:eu-west-1:123456789012:parameter/sfmlops-prod/monitoring/prometheus-agent.yml"]
    error_message = "The head reads exactly this parameter."
  }
  assert {
    condition     = jsondecode(output.prometheus_agent_read_policy_json).Statement[1].Action == ["kms:Decrypt"] && jsondecode(output.prometheus_agent_read_policy_json).Statement[1].Condition.StringEquals["kms:ViaService"] == "ssm.eu-west-1.amazonaws.com" && !strcontains(output.prometheus_agent_read_policy_json, "*")
    error_message = "Decrypt only through SSM, with the module's key, no wildcard."
  }
}

run "dashboard_is_valid_json_naming_the_resources" {
  command = apply

  module {
    source = "./modules/monitoring"
  }

  assert {
    condition     = length(jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets) == 7
    error_message = "The checked-in dashboard must render to JSON with its 7 widgets."
  }
  assert {
    condition = alltrue([for s in ["sfmlops-prod-api", "sfmlops-prod-db", "sfmlops-prod-msk", "00fabc123", "eu-west-1"] :
    strcontains(aws_cloudwatch_dashboard.this.dashboard_body, s)])
    error_message = "The dashboard must chart this deployment's Lambda, RDS, MSK and EMR application."
  }
}

run "null_inputs_skip_their_alarms" {
  command = apply

  module {
    source = "./modules/monitoring"
  }

  variables {
    lambda_function_name           = null
    db_instance_id                 = null
    kafka_cluster_name             = null
    emr_application_id             = null
    alarm_emails                   = []
    remote_write_role_arns_by_name = {}
  }

  assert {
    condition     = length(output.alarm_names) == 0 && length(aws_iam_role_policy.remote_write) == 0 && length(aws_iam_role_policy.prometheus_agent_read) == 0
    error_message = "Without resources to watch there are no alarms and no role policies."
  }
}

run "ray_head_starts_pushgateway_exporter_and_agent" {
  command = apply

  module {
    source = "./modules/monitoring"
  }

  assert {
    condition     = length(output.head_setup_commands) == 7 && strcontains(output.head_setup_commands[0], "echo '${var.pushgateway_sha256}  pushgateway-1.11.1.linux-amd64.tar.gz' | sha256sum -c")
    error_message = "The head fetches the Pushgateway release and checks its pinned sha256."
  }
  assert {
    condition     = strcontains(output.head_setup_commands[1], "restart pushgateway $HOME/sfmlops-monitoring/pushgateway-1.11.1.linux-amd64/pushgateway --web.listen-address=0.0.0.0:9091 ")
    error_message = "The Pushgateway listens on every interface of the head (the EMR job and the MWAA tasks push at its private address)."
  }
  assert {
    condition     = yamldecode(output.prometheus_agent_config).scrape_configs[1].static_configs[0].targets == ["127.0.0.1:9091"] && output.pushgateway_port == 9091
    error_message = "The agent scrapes the Pushgateway on loopback, on the port it listens on."
  }
  assert {
    condition     = strcontains(output.head_setup_commands[2], "aws s3 cp s3://sfmlops-prod-code/ray/job.zip ") && strcontains(output.head_setup_commands[2], "'kafka-python==3.0.12'") && strcontains(output.head_setup_commands[2], "'aws-msk-iam-sasl-signer-python==1.0.2'")
    error_message = "The head fetches the job-code zip and the exporter's packages."
  }
  assert {
    condition     = strcontains(output.head_setup_commands[3], "SFMLOPS_BIND_HOST='127.0.0.1' SFMLOPS_EXPORTER_PORT='9188' SFMLOPS_PG_SECRET_ARN='arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-monitoring' SFMLOPS_PROFILE='aws' ") && endswith(output.head_setup_commands[3], "python3 -m app.monitoring.exporter")
    error_message = "The exporter runs with the given settings on the agent's exporter target."
  }
  assert {
    condition     = strcontains(output.head_setup_commands[5], "--name ${aws_ssm_parameter.prometheus_agent.name} ") && strcontains(output.head_setup_commands[6], "restart prometheus-agent prometheus --enable-feature=agent ")
    error_message = "The agent reads its config from this module's SSM parameter and starts in agent mode."
  }
}

run "pushgateway_listen_address_must_be_an_address_on_the_agents_port" {
  command = plan

  module {
    source = "./modules/monitoring"
  }

  variables {
    pushgateway_listen_address = "0.0.0.0:9092"
  }

  expect_failures = [var.pushgateway_listen_address]
}

run "pushgateway_listen_address_refuses_anything_but_ipv4_and_port" {
  command = plan

  module {
    source = "./modules/monitoring"
  }

  variables {
    pushgateway_listen_address = "0.0.0.0:9091 --web.enable-admin-api"
  }

  expect_failures = [var.pushgateway_listen_address]
}
