locals {
  # Every component gets a security group even when it runs elsewhere, so enabling one later
  # does not reshuffle rules.
  components = ["api", "database", "kafka", "spark", "ray", "mlflow", "airflow"]

  sg         = var.create_network ? module.network[0].security_group_ids : {}
  subnet_ids = var.create_network ? module.network[0].private_subnet_ids : []

  # The RDS master secret serves only terraform/scripts/bootstrap_db_roles.py; every component connects
  # as its own least-privilege role with its own secret.
  db_secret_arn       = var.create_database ? module.database[0].master_user_secret_arn : null
  db_role_secret_arns = var.create_database ? module.database[0].role_secret_arns : {}
  # MLflow basic-auth credentials per client (the API Lambda, Ray jobs).
  mlflow_client_secret_arns = var.create_mlflow ? module.mlflow[0].client_secret_arns : {}

  # The Ray head's host (private DNS name or IP) from its Jobs API URL, known after `ray up` (null before).
  ray_head_host = try(regex("^https?://(\\[[^\\]]+\\]|[^/:]+)", trimspace(var.ray_dashboard_url))[0], null)
  # Where the pushers off the head (the EMR Serverless job, the MWAA tasks) push their metrics: the head's
  # Pushgateway at its private address (the network module's 9091 rule admits only spark and airflow). "off"
  # while monitoring is off or the head is unknown: the app then pushes nothing, where an empty value would
  # mean its local default (http://127.0.0.1:9091) and a failed push, logged, at every micro-batch.
  pushgateway_url = (
    var.create_monitoring && local.ray_head_host != null
    ? "http://${local.ray_head_host}:${module.monitoring[0].pushgateway_port}" : "off"
  )

  # Non-secret settings of the app (app/config.py, prefix SFMLOPS_). Components that are not
  # created point at their local stand-ins from var.local_endpoints.
  app_environment_all = merge(
    {
      SFMLOPS_PROFILE            = var.app_profile
      SFMLOPS_AWS_REGION         = var.aws_region
      SFMLOPS_AWS_ENDPOINT_URL   = try(coalesce(var.local_endpoints.aws_endpoint_url), "")
      SFMLOPS_BUCKET_RAW         = module.storage.bucket_names["raw"]
      SFMLOPS_BUCKET_CHECKPOINTS = module.storage.bucket_names["checkpoints"]
      SFMLOPS_BUCKET_MLFLOW      = module.storage.bucket_names["mlflow"]
      SFMLOPS_BUCKET_CODE        = module.storage.bucket_names["code"]
      SFMLOPS_KAFKA_TOPIC        = var.kafka_topic
      # The streaming job commits its progress for this group (MSK's lag metrics; the alarm watches it too).
      SFMLOPS_KAFKA_CONSUMER_GROUP = var.kafka_consumer_group
      SFMLOPS_PG_HOST              = var.create_database ? module.database[0].address : var.local_endpoints.pg_host
      SFMLOPS_PG_PORT              = tostring(var.create_database ? module.database[0].port : var.local_endpoints.pg_port)
      SFMLOPS_PG_SECRET_ARN        = lookup(local.db_role_secret_arns, "api", null)
      # Ray jobs get their own secrets' ARNs (their instance role may read them; the API's role may not).
      SFMLOPS_JOB_PG_SECRET_ARN          = lookup(local.db_role_secret_arns, "ray", null)
      SFMLOPS_MLFLOW_AUTH_SECRET_ARN     = lookup(local.mlflow_client_secret_arns, "api", null)
      SFMLOPS_JOB_MLFLOW_AUTH_SECRET_ARN = lookup(local.mlflow_client_secret_arns, "ray", null)
      SFMLOPS_KAFKA_BOOTSTRAP_SERVERS = (
        var.create_kafka ? module.kafka[0].bootstrap_brokers : var.local_endpoints.kafka_bootstrap_servers
      )
      # The kafka-python clients (producer, exporter) authenticate with IAM tokens on MSK's IAM listener; the local
      # stand-in broker is plaintext.
      SFMLOPS_KAFKA_AUTH = var.create_kafka ? (module.kafka[0].iam_auth_enabled ? "aws-msk-iam" : "none") : "none"
      SFMLOPS_MLFLOW_TRACKING_URI = (
        var.create_mlflow ? module.mlflow[0].tracking_uri : var.local_endpoints.mlflow_tracking_uri
      )
      SFMLOPS_RAY_ADDRESS     = try(coalesce(var.ray_dashboard_url, var.local_endpoints.ray_address), "")
      SFMLOPS_PUSHGATEWAY_URL = local.pushgateway_url
    },
    var.app_environment,
  )
  # Lambda rejects null values; empty strings mean "use the app's default".
  app_environment = { for k, v in local.app_environment_all : k => v if v != null }

  # The API in Lambda, which nothing can scrape, remote-writes its metrics to the AMP workspace itself
  # (app/monitoring/remote_write.py: SigV4 for aps with its role, which the monitoring module lets aps:RemoteWrite to
  # this workspace only; over the NAT gateway). An SFMLOPS_METRICS_REMOTE_WRITE_URL in var.app_environment wins.
  api_environment = merge(
    var.create_monitoring ? { SFMLOPS_METRICS_REMOTE_WRITE_URL = module.monitoring[0].amp_remote_write_url } : {},
    local.app_environment,
  )

  # The streaming job's settings on EMR Serverless, which has no environment of its own: the daily DAG gives them to
  # each job run as the driver's and executors' environment (spark-defaults spark.emr-serverless.driverEnv.* and
  # spark.executorEnv.*; dags/sfmlops_dag_utils/config.py emr_job_environment), from MWAA's option below. The app's
  # settings (the job reads the Postgres, Kafka, bucket, table and Pushgateway ones; the rest are harmless addresses),
  # but of the secret ARNs only the spark role's database secret as its SFMLOPS_PG_SECRET_ARN: the job role may read
  # no other (the API's, Ray's, MLflow's, the pepper), and the app would read an MLflow or pepper secret named to it at
  # start-up. Empty values stay (an empty SFMLOPS_AWS_ENDPOINT_URL means real AWS; unset, the app's default is the
  # emulator).
  emr_job_environment = { for k, v in merge(
    { for k, v in local.app_environment : k => v if !endswith(k, "_SECRET_ARN") },
    { SFMLOPS_PG_SECRET_ARN = lookup(local.db_role_secret_arns, "spark", null) },
  ) : k => v if v != null }
}

module "storage" {
  source = "./modules/storage"

  name                     = var.name
  buckets                  = var.buckets
  access_log_bucket_name   = var.access_log_bucket_name
  force_destroy            = var.force_destroy
  kms_deletion_window_days = var.kms_deletion_window_days
  tags                     = var.tags
}

module "network" {
  source = "./modules/network"
  count  = var.create_network ? 1 : 0

  name                    = var.name
  cidr_block              = var.vpc_cidr
  availability_zones      = var.availability_zones
  create_nat_gateway      = var.create_nat_gateway
  kms_key_arn             = module.storage.kms_key_arn
  flow_log_retention_days = var.log_retention_days
  components              = local.components
  tags                    = var.tags
}

module "kafka" {
  source = "./modules/kafka"
  count  = var.create_kafka ? 1 : 0

  name                 = var.name
  subnet_ids           = local.subnet_ids
  security_group_ids   = [local.sg["kafka"]]
  kms_key_arn          = module.storage.kms_key_arn
  broker_instance_type = var.kafka_broker_instance_type
  log_retention_days   = var.log_retention_days
  tags                 = var.tags
}

module "database" {
  source = "./modules/database"
  count  = var.create_database ? 1 : 0

  name                = var.name
  subnet_ids          = local.subnet_ids
  security_group_ids  = [local.sg["database"]]
  kms_key_arn         = module.storage.kms_key_arn
  instance_class      = var.db_instance_class
  multi_az            = var.db_multi_az
  deletion_protection = var.db_deletion_protection
  skip_final_snapshot = var.force_destroy
  tags                = var.tags
}

module "spark" {
  source = "./modules/spark"
  count  = var.create_spark ? 1 : 0

  name                  = "${var.name}-streaming"
  subnet_ids            = local.subnet_ids
  security_group_ids    = [local.sg["spark"]]
  code_bucket_arn       = module.storage.bucket_arns["code"]
  checkpoint_bucket_arn = module.storage.bucket_arns["checkpoints"]
  kms_key_arn           = module.storage.kms_key_arn
  kafka_cluster_arn     = var.create_kafka ? module.kafka[0].cluster_arn : null
  kafka_topic           = var.kafka_topic
  database_secret_arn   = lookup(local.db_role_secret_arns, "spark", null)
  log_retention_days    = var.log_retention_days
  tags                  = var.tags
}

module "ray" {
  source = "./modules/ray"
  count  = var.create_ray ? 1 : 0

  name                   = "${var.name}-ray"
  region                 = var.aws_region
  availability_zones     = var.availability_zones
  subnet_ids             = local.subnet_ids
  security_group_id      = local.sg["ray"]
  code_bucket_arn        = module.storage.bucket_arns["code"]
  artifact_bucket_arn    = module.storage.bucket_arns["mlflow"]
  kms_key_arn            = module.storage.kms_key_arn
  database_secret_arn    = lookup(local.db_role_secret_arns, "ray", null)
  mlflow_auth_secret_arn = lookup(local.mlflow_client_secret_arns, "ray", null)
  image_id               = var.ray_image_id
  min_workers            = var.ray_min_workers
  max_workers            = var.ray_max_workers
  # The head runs the Pushgateway and the exporter, and the agent that scrapes them and Ray and remote-writes to AMP;
  # only the head reads the exporter's database secret (the monitoring role).
  head_setup_commands = var.create_monitoring ? module.monitoring[0].head_setup_commands : []
  head_secret_arns    = var.create_monitoring ? compact([lookup(local.db_role_secret_arns, "monitoring", null)]) : []
  # The exporter's Kafka source on MSK: Connect, and DescribeTopic on the sales topic (metadata and end offsets).
  head_kafka_cluster_arn = var.create_monitoring && var.create_kafka ? module.kafka[0].cluster_arn : null
  head_kafka_topics      = [var.kafka_topic]
  tags                   = var.tags
}

module "mlflow" {
  source = "./modules/mlflow"
  count  = var.create_mlflow ? 1 : 0

  name                 = var.name
  region               = var.aws_region
  vpc_id               = module.network[0].vpc_id
  subnet_ids           = local.subnet_ids
  security_group_ids   = [local.sg["mlflow"]]
  image                = var.mlflow_image
  artifact_bucket_name = module.storage.bucket_names["mlflow"]
  artifact_bucket_arn  = module.storage.bucket_arns["mlflow"]
  kms_key_arn          = module.storage.kms_key_arn
  database_host        = module.database[0].address
  database_port        = module.database[0].port
  database_secret_arn  = module.database[0].role_secret_arns["mlflow"]
  log_retention_days   = var.log_retention_days
  tags                 = var.tags
}

module "api" {
  source = "./modules/api"
  count  = var.create_api ? 1 : 0

  name                   = "${var.name}-api"
  lambda_zip_path        = var.lambda_zip_path
  environment            = local.api_environment
  secret_arns            = compact([lookup(local.db_role_secret_arns, "api", null), lookup(local.mlflow_client_secret_arns, "api", null)])
  create_pepper_secret   = var.app_profile != "local"
  kms_key_arn            = module.storage.kms_key_arn
  subnet_ids             = var.create_network ? local.subnet_ids : []
  security_group_ids     = var.create_network ? [local.sg["api"]] : []
  code_bucket_arn        = module.storage.bucket_arns["code"]
  reserved_concurrency   = var.lambda_reserved_concurrency
  throttling_rate_limit  = var.api_throttling_rate_limit
  throttling_burst_limit = var.api_throttling_burst_limit
  log_retention_days     = var.log_retention_days
  tags                   = var.tags
}

module "orchestration" {
  source = "./modules/orchestration"
  count  = var.create_orchestration ? 1 : 0

  name                = var.name
  region              = var.aws_region
  airflow_version     = var.mwaa_airflow_version
  dags_bucket_arn     = module.storage.bucket_arns["dags"]
  subnet_ids          = local.subnet_ids
  security_group_ids  = [local.sg["airflow"]]
  kms_key_arn         = module.storage.kms_key_arn
  emr_application_arn = var.create_spark ? module.spark[0].application_arn : null
  emr_job_role_arn    = var.create_spark ? module.spark[0].job_role_arn : null
  airflow_configuration_options = {
    "core.default_timezone" = "utc"
    # MWAA sets no environment variables of our naming (SFMLOPS_DAG_*), but each option becomes
    # AIRFLOW__<SECTION>__<KEY> on its components, this one AIRFLOW__SFMLOPS__PUSHGATEWAY_URL: the DAG setting pushgateway_url reads the [sfmlops]
    # section after the environment and the Variables (dags/sfmlops_dag_utils/config.py). The app's value, so an
    # override in var.app_environment reaches the EMR job and the DAG tasks alike.
    "sfmlops.pushgateway_url" = local.app_environment["SFMLOPS_PUSHGATEWAY_URL"]
    # The streaming job's SFMLOPS_* settings (a JSON object, no secret values: ARNs only), which the daily DAG's
    # emr_job_environment reads from AIRFLOW__SFMLOPS__EMR_JOB_ENVIRONMENT and gives to every EMR job run.
    "sfmlops.emr_job_environment" = jsonencode(local.emr_job_environment)
  }
  tags = var.tags
}

# Issue 18: CloudWatch alarms -> SNS, the AMP workspace the Ray cluster and the API remote-write to, the dashboard.
module "monitoring" {
  source = "./modules/monitoring"
  count  = var.create_monitoring ? 1 : 0

  name                 = var.name
  region               = var.aws_region
  kms_key_arn          = module.storage.kms_key_arn
  alarm_emails         = var.alarm_emails
  lambda_function_name = var.create_api ? module.api[0].function_name : null
  db_instance_id       = var.create_database ? element(split(":", module.database[0].arn), 6) : null
  kafka_cluster_name   = var.create_kafka ? module.kafka[0].cluster_name : null
  kafka_topic          = var.kafka_topic
  kafka_consumer_group = var.kafka_consumer_group
  emr_application_id   = var.create_spark ? module.spark[0].application_id : null
  # The exporter on the Ray head: the app's settings, the monitoring role's database secret, the job-code zip
  # (app.jobs.package uploads it to Settings.job_code_key of the code bucket).
  job_code_uri = "s3://${module.storage.bucket_names["code"]}/ray/job.zip"
  exporter_environment = { for k, v in merge(
    { for k, v in local.app_environment : k => v if !contains(["SFMLOPS_PG_SECRET_ARN", "SFMLOPS_JOB_PG_SECRET_ARN", "SFMLOPS_MLFLOW_AUTH_SECRET_ARN", "SFMLOPS_JOB_MLFLOW_AUTH_SECRET_ARN"], k) },
    { SFMLOPS_PG_SECRET_ARN = lookup(local.db_role_secret_arns, "monitoring", null) },
  ) : k => v if v != null }
  remote_write_role_arns_by_name = merge(
    var.create_ray ? { ray_head = module.ray[0].head_role_arn, ray_worker = module.ray[0].worker_role_arn } : {},
    var.create_api ? { api = module.api[0].role_arn } : {},
  )
  tags = var.tags
}
