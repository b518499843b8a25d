output "sns_topic_arn" {
  description = "SNS topic every alarm notifies (subscribe e-mail, chat or paging here)."
  value       = aws_sns_topic.this.arn
}

output "alarm_names" {
  description = "Names of every CloudWatch alarm created."
  value       = sort([for a in aws_cloudwatch_metric_alarm.this : a.alarm_name])
}

output "amp_workspace_id" {
  description = "ID of the Amazon Managed Service for Prometheus workspace."
  value       = aws_prometheus_workspace.this.id
}

output "amp_remote_write_url" {
  description = "Remote-write endpoint of the workspace (Prometheus agent / ADOT on the Ray head, the API's collector)."
  value       = "${aws_prometheus_workspace.this.prometheus_endpoint}api/v1/remote_write"
}

output "remote_write_policy_json" {
  description = "The inline policy attached to each remote-writing role (for audits and terraform test)."
  value       = local.remote_write_policy
}

output "dashboard_name" {
  description = "Name of the CloudWatch dashboard (body: dashboard.json.tftpl)."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}

output "prometheus_agent_parameter_name" {
  description = "SSM parameter (SecureString) holding the Ray head's Prometheus agent config."
  value       = aws_ssm_parameter.prometheus_agent.name
}

output "prometheus_agent_config" {
  description = "The rendered Prometheus agent config (remote_write to this workspace with SigV4; scrapes of the exporter, Pushgateway, Ray)."
  value       = local.prometheus_agent_config
}

output "prometheus_agent_read_policy_json" {
  description = "The inline policy that lets the agent's role read its SSM parameter (for audits and terraform test)."
  value       = local.prometheus_agent_read_policy
}

output "head_setup_commands" {
  description = "Commands the Ray head runs (the ray module's head_setup_commands): start the Pushgateway (release binary, sha256-pinned) and the sfmlops exporter (the job-code zip's app package), fetch the agent config from SSM and start Prometheus in agent mode (head_commands.tf)."
  value       = local.head_setup_commands
}

output "pushgateway_port" {
  description = "Port of the head's Pushgateway (of pushgateway_listen_address): pushers off the head use http://<head private address>:<this port>."
  value       = tonumber(element(split(":", var.pushgateway_listen_address), 1))
}
