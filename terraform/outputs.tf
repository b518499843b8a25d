output "api_endpoint" {
  description = "Invoke URL of the API ($default stage); null when create_api = false."
  value       = try(module.api[0].api_endpoint, null)
}

output "api_id" {
  description = "ID of the HTTP API (the emulator also serves it at <edge>/_aws/execute-api/<id>/$default/...)."
  value       = try(module.api[0].api_id, null)
}

output "api_function_name" {
  description = "Name of the API Lambda function."
  value       = try(module.api[0].function_name, null)
}

output "app_environment" {
  description = "Non-secret SFMLOPS_* settings given to the deployed app."
  value       = local.app_environment
}

output "emr_job_environment" {
  description = "Non-secret SFMLOPS_* settings of the streaming job, given to each EMR Serverless job run by the daily DAG (MWAA option sfmlops.emr_job_environment; elsewhere set SFMLOPS_DAG_EMR_JOB_ENVIRONMENT to its JSON)."
  value       = local.emr_job_environment
}

output "bucket_names" {
  description = "Data bucket names keyed by role."
  value       = module.storage.bucket_names
}

output "kms_key_arn" {
  description = "ARN of the project KMS key."
  value       = module.storage.kms_key_arn
}

output "vpc_id" {
  description = "ID of the VPC; null when create_network = false."
  value       = try(module.network[0].vpc_id, null)
}

output "private_subnet_ids" {
  description = "Private subnets; empty when create_network = false."
  value       = local.subnet_ids
}

output "security_group_ids" {
  description = "Security group per component."
  value       = local.sg
}

output "database_address" {
  description = "Private host name of RDS; null when create_database = false."
  value       = try(module.database[0].address, null)
}

output "database_secret_arn" {
  description = "ARN of the RDS-managed master secret (never its value); only for terraform/scripts/bootstrap_db_roles.py."
  value       = local.db_secret_arn
}

output "database_role_secret_arns" {
  description = "Secret ARN of each component's least-privilege database role (component => ARN); empty without RDS."
  value       = local.db_role_secret_arns
}

output "database_roles" {
  description = "Component => {username, secret_arn}: input of terraform/scripts/bootstrap_db_roles.py; empty without RDS."
  value       = try(module.database[0].roles, {})
}

output "mlflow_client_secret_arns" {
  description = "Secret ARN of each MLflow client's basic-auth credentials (client => ARN); empty without MLflow."
  value       = local.mlflow_client_secret_arns
}

output "api_key_pepper_secret_arn" {
  description = "ARN of the API key pepper secret to put a value into once (never its value); null on the local profile."
  value       = try(module.api[0].api_key_pepper_secret_arn, null)
}

output "kafka_bootstrap_brokers" {
  description = "MSK bootstrap brokers (SASL/IAM, TLS); null when create_kafka = false."
  value       = try(module.kafka[0].bootstrap_brokers, null)
}

output "spark_application_id" {
  description = "EMR Serverless application ID; null when create_spark = false."
  value       = try(module.spark[0].application_id, null)
}

output "spark_job_role_arn" {
  description = "Execution role of Spark job runs; null when create_spark = false."
  value       = try(module.spark[0].job_role_arn, null)
}

output "mlflow_tracking_uri" {
  description = "Private MLflow URL; null when create_mlflow = false."
  value       = try(module.mlflow[0].tracking_uri, null)
}

output "mwaa_webserver_url" {
  description = "Private Airflow UI URL; null when create_orchestration = false."
  value       = try(module.orchestration[0].webserver_url, null)
}

output "ray_head_instance_profile_arn" {
  description = "Instance profile of the Ray head; null when create_ray = false."
  value       = try(module.ray[0].head_instance_profile_arn, null)
}

output "ray_worker_instance_profile_arn" {
  description = "Instance profile of the Ray workers; null when create_ray = false."
  value       = try(module.ray[0].worker_instance_profile_arn, null)
}

output "ray_cluster_yaml" {
  description = "Rendered `ray up` cluster file; written to ray_cluster/cluster.yaml by `make tf-ray-cluster`."
  value       = try(module.ray[0].cluster_yaml, null)
}

output "iam_policy_documents" {
  description = "Every inline IAM/key policy this deployment creates, as JSON keyed by owner (for audits and terraform test)."
  value = merge(
    { kms_key = module.storage.kms_key_policy },
    var.create_api ? { api = module.api[0].policy_json } : {},
    var.create_spark ? { spark_job = module.spark[0].policy_json } : {},
    var.create_ray ? { ray_head = module.ray[0].head_policy_json, ray_worker = module.ray[0].worker_policy_json } : {},
    var.create_orchestration ? { mwaa = module.orchestration[0].policy_json } : {},
  )
}

output "managed_policy_arns" {
  description = "AWS-managed policies attached to roles of this deployment."
  value = concat(
    try(module.api[0].managed_policy_arns, []),
    try(module.database[0].managed_policy_arns, []),
  )
}

output "wildcard_reasons" {
  description = "Why each policy statement with a bare \"*\" action/resource, and each attached AWS-managed policy, is needed (keyed by Sid or managed/<name>)."
  value = merge(
    module.storage.wildcard_reasons,
    try(module.api[0].wildcard_reasons, {}),
    try(module.database[0].wildcard_reasons, {}),
    try(module.ray[0].wildcard_reasons, {}),
    try(module.orchestration[0].wildcard_reasons, {}),
  )
}

output "monitoring" {
  description = "Alert SNS topic, AMP workspace and remote-write URL, alarm names, dashboard, the Ray head's Prometheus agent parameter and monitoring commands (null when create_monitoring = false)."
  value = var.create_monitoring ? {
    sns_topic_arn        = module.monitoring[0].sns_topic_arn
    amp_workspace_id     = module.monitoring[0].amp_workspace_id
    amp_remote_write_url = module.monitoring[0].amp_remote_write_url
    alarm_names          = module.monitoring[0].alarm_names
    dashboard_name       = module.monitoring[0].dashboard_name
    # the Ray head: the agent's config in SSM, and the commands that start the Pushgateway, the exporter and the agent
    prometheus_agent_parameter_name = module.monitoring[0].prometheus_agent_parameter_name
    head_setup_commands             = module.monitoring[0].head_setup_commands
  } : null
}
