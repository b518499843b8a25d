output "sns_topic_arn" {
  description = "SNS topic every alarm notifies (subscribe e-mail, chat or paging here)."
  value       = aws_sns_topic.this.arn
}

output "alarm_names" {
  description = "Names of every CloudWatch alarm created."
  value = sort(concat(
    [for a in aws_cloudwatch_metric_alarm.lambda_errors : a.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.lambda_throttles : a.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.lambda_duration : a.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.db_cpu : a.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.db_storage : a.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.db_connections : a.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.kafka_disk : a.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.kafka_lag : a.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.emr_failures : a.alarm_name],
  ))
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
