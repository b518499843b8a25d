# Security invariants of the full AWS deployment (envs/aws.tfvars), on the mock provider:
# nothing here reaches AWS or the emulator. `command = apply` on mocks makes every computed
# value known, so policies and wiring can be asserted.

mock_provider "aws" {
  source = "./tests/mocks/aws" # the monitoring module's resources
  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }
  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }
  mock_data "aws_region" {
    defaults = {
      name = "eu-west-1"
    }
  }
  mock_resource "aws_kms_key" {
    defaults = {
      arn = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = {
      arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/mock"
    }
  }
  mock_resource "aws_iam_role" {
    defaults = {
      arn = "arn:aws:iam::123456789012:role/mock"
    }
  }
  mock_resource "aws_iam_instance_profile" {
    defaults = {
      arn = "arn:aws:iam::123456789012:instance-profile/mock"
    }
  }
  mock_resource "aws_msk_configuration" {
    defaults = {
      arn = "arn:aws:kafka:eu-west-1:123456789012:configuration/mock/11111111-2222-3333-4444-555555555555-1"
    }
  }
  # No default ARN for secrets: the mock generates a distinct value per secret, so the per-component
  # secrets below can be told apart (override_resource cannot target one for_each instance).
  mock_resource "aws_s3_bucket" {
    defaults = {
      arn = "arn:aws:s3:::mock-bucket"
    }
  }
  mock_resource "aws_lambda_function" {
    defaults = {
      arn        = "arn:aws:lambda:eu-west-1:123456789012:function:mock"
      invoke_arn = "arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/arn:aws:lambda:eu-west-1:123456789012:function:mock/invocations"
    }
  }
  mock_resource "aws_apigatewayv2_api" {
    defaults = {
      arn           = "arn:aws:apigateway:eu-west-1::/apis/mockapi"
      execution_arn = "arn:aws:execute-api:eu-west-1:123456789012:mockapi"
      api_endpoint  = "https://mockapi.execute-api.eu-west-1.amazonaws.com"
    }
  }
  mock_resource "aws_ecs_task_definition" {
    defaults = {
      arn = "arn:aws:ecs:eu-west-1:123456789012:task-definition/mock:1"
    }
  }
  mock_resource "aws_ecs_cluster" {
    defaults = {
      arn = "arn:aws:ecs:eu-west-1:123456789012:cluster/mock"
    }
  }
  mock_resource "aws_service_discovery_service" {
    defaults = {
      arn = "arn:aws:servicediscovery:eu-west-1:123456789012:service/srv-mock"
    }
  }
  mock_resource "aws_service_discovery_private_dns_namespace" {
    defaults = {
      arn = "arn:aws:servicediscovery:eu-west-1:123456789012:namespace/ns-mock"
    }
  }
  mock_resource "aws_mwaa_environment" {
    defaults = {
      arn = "arn:aws:airflow:eu-west-1:123456789012:environment/mock"
    }
  }
  mock_resource "aws_db_subnet_group" {
    defaults = {
      arn = "arn:aws:rds:eu-west-1:123456789012:subgrp:mock"
    }
  }
  mock_resource "aws_db_parameter_group" {
    defaults = {
      arn = "arn:aws:rds:eu-west-1:123456789012:pg:mock"
    }
  }
  mock_resource "aws_msk_cluster" {
    defaults = {
      arn = "arn:aws:kafka:eu-west-1:123456789012:cluster/sfmlops-prod/11111111-2222-3333-4444-555555555555-1"
    }
  }
  mock_resource "aws_db_instance" {
    defaults = {
      arn                = "arn:aws:rds:eu-west-1:123456789012:db:mock"
      address            = "mock.abc.eu-west-1.rds.amazonaws.com"
      port               = 5432
      master_user_secret = [{ secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-abc", kms_key_id = "k", secret_status = "active" }]
    }
  }
  mock_resource "aws_emrserverless_application" {
    defaults = {
      arn = "arn:aws:emr-serverless:eu-west-1:123456789012:/applications/00abc"
    }
  }
}

# The prod deployment every run plans unless it says otherwise (the local and rejection runs set their own).
variables {
  lambda_zip_path = "tests/fixtures/handler.zip"

  name        = "sfmlops-prod"
  environment = "prod"
  aws_region  = "eu-west-1"

  availability_zones = ["eu-west-1a", "eu-west-1b"]
  buckets = {
    raw         = { name = "t-raw", versioning = true, noncurrent_expiration_days = 30 }
    checkpoints = { name = "t-checkpoints", versioning = true, noncurrent_expiration_days = 7 }
    mlflow      = { name = "t-mlflow", versioning = true, noncurrent_expiration_days = 90 }
    code        = { name = "t-code", versioning = true, noncurrent_expiration_days = 90 }
    dags        = { name = "t-dags", versioning = true, noncurrent_expiration_days = 90 }
  }
  access_log_bucket_name = "t-access-logs"
}

run "aws_profile_is_secure" {
  command = apply

  # --- RDS: private, encrypted, password managed by RDS in Secrets Manager -----------------
  assert {
    condition     = module.database[0].publicly_accessible == false
    error_message = "RDS must not be publicly accessible."
  }
  assert {
    condition     = module.database[0].storage_encrypted && module.database[0].manage_master_user_password
    error_message = "RDS must be encrypted and keep its master password in Secrets Manager."
  }
  assert {
    condition     = module.database[0].password_in_config == false
    error_message = "No database password may be set in Terraform configuration."
  }

  # --- S3: every public access block on, KMS encryption on every data bucket ----------------
  assert {
    condition     = alltrue([for b in module.storage.public_access_blocks : b.block_public_acls && b.block_public_policy && b.ignore_public_acls && b.restrict_public_buckets])
    error_message = "Every bucket needs all four public access block settings."
  }
  assert {
    condition     = length(module.storage.public_access_blocks) == 6
    error_message = "Every bucket (5 data + access logs) must have a public access block."
  }
  assert {
    condition     = alltrue([for a in values(module.storage.encryption_algorithms) : a == "aws:kms"])
    error_message = "Every data bucket must use SSE-KMS."
  }
  assert {
    condition     = module.storage.kms_rotation_enabled
    error_message = "KMS key rotation must be on."
  }

  # --- MSK: TLS in transit, IAM auth, no public access ---------------------------------------
  assert {
    condition     = module.kafka[0].client_broker_encryption == "TLS" && module.kafka[0].iam_auth_enabled && !module.kafka[0].unauthenticated_allowed
    error_message = "MSK must use TLS between clients and brokers and IAM authentication only."
  }

  # --- IAM: no "*" action or resource in an Allow statement without a written reason ---------
  assert {
    condition = alltrue(flatten([
      for owner, doc in output.iam_policy_documents : [
        for st in jsondecode(doc).Statement :
        st.Effect != "Allow" || (
          !anytrue([for a in flatten([st.Action]) : strcontains(a, "*")]) &&
          !contains(flatten([st.Resource]), "*")
        ) || length(lookup(output.wildcard_reasons, lookup(st, "Sid", ""), "")) >= 40
      ]
    ]))
    error_message = "An Allow statement uses \"*\" in Action or Resource without a reason in wildcard_reasons (keyed by its Sid)."
  }
  assert {
    condition = alltrue([
      for arn in output.managed_policy_arns :
      length(lookup(output.wildcard_reasons, "managed/${element(split("/", arn), length(split("/", arn)) - 1)}", "")) >= 40
    ])
    error_message = "Every attached AWS-managed policy needs a reason in wildcard_reasons (managed/<name>)."
  }
  assert {
    condition     = length(output.iam_policy_documents) == 6
    error_message = "Expected policies of kms_key, api, spark_job, ray_head, ray_worker and mwaa."
  }

  # --- secrets never travel in variables or outputs -------------------------------------------
  assert {
    condition = alltrue([
      for k, v in output.app_environment :
      !can(regex("(PASSWORD|SECRET|TOKEN|PEPPER|PRIVATE_KEY)", k)) || endswith(k, "_ARN")
    ])
    error_message = "The app environment carries something that looks like a secret."
  }
  assert {
    condition     = startswith(output.database_secret_arn, "arn:aws:secretsmanager:")
    error_message = "The database credential must be referenced by its Secrets Manager ARN."
  }

  # --- API wiring: $default stage, Lambda proxy integration, throttling, access logs ----------
  assert {
    condition     = module.api[0].stage_name == "$default" && module.api[0].integration_type == "AWS_PROXY" && module.api[0].payload_format_version == "2.0"
    error_message = "The HTTP API must route $default to the Lambda with payload format 2.0."
  }
  assert {
    condition     = module.api[0].throttling_rate_limit > 0 && module.api[0].access_log_destination != null
    error_message = "The API stage needs throttling and access logs."
  }
  assert {
    condition     = output.app_environment["SFMLOPS_PG_HOST"] == module.database[0].address
    error_message = "The Lambda must point at the RDS instance when create_database = true."
  }
  assert {
    condition     = output.app_environment["SFMLOPS_PUSHGATEWAY_URL"] == "off"
    error_message = "Without create_monitoring there is no Pushgateway on the head: the EMR job must not push."
  }
  assert {
    condition     = output.app_environment["SFMLOPS_KAFKA_AUTH"] == "aws-msk-iam" && output.app_environment["SFMLOPS_KAFKA_BOOTSTRAP_SERVERS"] == module.kafka[0].bootstrap_brokers
    error_message = "With MSK (IAM auth only) the app's Kafka clients must use its IAM listener with SFMLOPS_KAFKA_AUTH=aws-msk-iam."
  }

  # --- Ray cluster file carries the profiles from the ray module ------------------------------
  assert {
    condition     = strcontains(output.ray_cluster_yaml, module.ray[0].head_instance_profile_arn) && strcontains(output.ray_cluster_yaml, "ray.worker.default")
    error_message = "cluster.yaml must be rendered from the ray module's outputs."
  }
}

# Least privilege between components (issue 13, item 15): each component's own database role and secret,
# MLflow credentials for its clients, and the Ray head's tagging limited to its own cluster's instances.
run "components_have_their_own_secrets_and_the_ray_head_tags_only_its_nodes" {
  command = apply

  # --- a database role and secret per component, none of them the master -----------------------
  assert {
    condition     = length(distinct(values(output.database_role_secret_arns))) == 6 && length(distinct([for r in values(output.database_roles) : r.username])) == 6
    error_message = "The API, Ray, Spark, MLflow, the DAGs and the monitoring exporter need a database role and secret each."
  }
  assert {
    condition     = !contains(values(output.database_role_secret_arns), output.database_secret_arn) && !contains([for r in values(output.database_roles) : r.username], "sfmlops_admin")
    error_message = "No component may use the RDS master user or its secret."
  }
  assert {
    condition     = output.app_environment["SFMLOPS_PG_SECRET_ARN"] == output.database_role_secret_arns["api"] && output.app_environment["SFMLOPS_JOB_PG_SECRET_ARN"] == output.database_role_secret_arns["ray"]
    error_message = "The Lambda must connect with the api role's secret and hand the ray role's secret to its jobs."
  }

  # --- each role's IAM policy reads exactly its own secrets ---------------------------------------
  assert {
    condition = alltrue([
      for owner, own in {
        api        = [output.database_role_secret_arns["api"], output.mlflow_client_secret_arns["api"], output.api_key_pepper_secret_arn]
        ray_head   = [output.database_role_secret_arns["ray"], output.mlflow_client_secret_arns["ray"]]
        ray_worker = [output.database_role_secret_arns["ray"], output.mlflow_client_secret_arns["ray"]]
        spark_job  = [output.database_role_secret_arns["spark"]]
      } :
      sort(distinct(flatten([
        for st in jsondecode(output.iam_policy_documents[owner]).Statement : [
          for r in flatten([st.Resource]) : r
        ] if contains(flatten([st.Action]), "secretsmanager:GetSecretValue")
      ]))) == sort(own)
    ])
    error_message = "The API, Ray and Spark roles must read exactly their own database (and MLflow) secrets."
  }
  assert {
    condition = alltrue([
      for doc in values(output.iam_policy_documents) :
      !strcontains(doc, output.database_secret_arn)
    ])
    error_message = "No runtime IAM policy may grant the RDS master secret."
  }
  assert {
    condition     = module.mlflow[0].injected_env_refs["DB_PASSWORD"] == "${output.database_role_secret_arns["mlflow"]}:password::"
    error_message = "The MLflow server must use the mlflow role's secret, not the master's."
  }

  # --- MLflow basic auth: the API and Ray jobs get credentials from Secrets Manager -------------
  assert {
    condition     = output.app_environment["SFMLOPS_MLFLOW_AUTH_SECRET_ARN"] == output.mlflow_client_secret_arns["api"] && output.app_environment["SFMLOPS_JOB_MLFLOW_AUTH_SECRET_ARN"] == output.mlflow_client_secret_arns["ray"]
    error_message = "The Lambda needs its MLflow credentials secret, and hands the Ray jobs' one to its jobs."
  }

  # --- Ray head: CreateTags only at its own launches or on its cluster's instances ------------------
  assert {
    condition = alltrue([
      for st in jsondecode(output.iam_policy_documents["ray_head"]).Statement :
      !contains(flatten([st.Action]), "ec2:CreateTags") || (
        !contains(flatten([st.Resource]), "*") && alltrue([for r in flatten([st.Resource]) : endswith(r, ":instance/*")]) && (
          (try(st.Condition.StringEquals["ec2:CreateAction"], "") == "RunInstances" && try(st.Condition.StringEquals["aws:RequestTag/ray-cluster-name"], "") == "sfmlops-prod-ray") ||
          (try(st.Condition.StringEquals["ec2:ResourceTag/ray-cluster-name"], "") == "sfmlops-prod-ray" && try(st.Condition.StringEqualsIfExists["aws:RequestTag/ray-cluster-name"], "") == "sfmlops-prod-ray")
        )
      )
    ])
    error_message = "ec2:CreateTags must be conditioned on the cluster's tag: at RunInstances (ec2:CreateAction) or on instances already tagged with it."
  }
  assert {
    condition = length([
      for st in jsondecode(output.iam_policy_documents["ray_head"]).Statement : st
      if contains(flatten([st.Action]), "ec2:CreateTags")
    ]) == 2
    error_message = "Expected the two CreateTags statements (at launch, on the cluster's nodes)."
  }
  assert {
    condition = alltrue([
      for st in jsondecode(output.iam_policy_documents["ray_head"]).Statement :
      !contains(flatten([st.Action]), "ec2:RunInstances") || !contains(flatten([st.Resource]), "*") && (
        !anytrue([for r in flatten([st.Resource]) : endswith(r, ":instance/*")]) ||
        try(st.Condition.StringEquals["aws:RequestTag/ray-cluster-name"], "") == "sfmlops-prod-ray"
      )
    ])
    error_message = "ec2:RunInstances may create only instances tagged with the cluster's name, and no bare \"*\" resource."
  }
}

run "the_exporter_on_the_ray_head_reads_msk_offsets_with_iam_and_nothing_more" {
  command = apply

  variables {
    create_monitoring = true
  }

  assert {
    condition     = strcontains(module.monitoring[0].head_setup_commands[3], "SFMLOPS_KAFKA_AUTH='aws-msk-iam'") && strcontains(module.monitoring[0].head_setup_commands[2], "'aws-msk-iam-sasl-signer-python==1.0.2'")
    error_message = "The exporter on the head must authenticate to MSK with IAM tokens (SFMLOPS_KAFKA_AUTH, the signer package)."
  }
  assert {
    condition = jsonencode({
      for st in jsondecode(output.iam_policy_documents["ray_head"]).Statement :
      join(",", flatten([st.Action])) => sort(flatten([st.Resource]))
      if anytrue([for a in flatten([st.Action]) : startswith(a, "kafka-cluster:")])
      }) == jsonencode({
      "kafka-cluster:Connect"       = [module.kafka[0].cluster_arn]
      "kafka-cluster:DescribeTopic" = ["arn:aws:kafka:eu-west-1:123456789012:topic/sfmlops-prod/11111111-2222-3333-4444-555555555555-1/sales"]
    })
    error_message = "The Ray head may only connect to the MSK cluster and describe the sales topic (metadata, end offsets)."
  }
  assert {
    condition     = !strcontains(output.iam_policy_documents["ray_worker"], "kafka-cluster:")
    error_message = "Ray workers need no Kafka permission."
  }
}

# Issue 18: the pushers off the Ray head (the EMR Serverless job, the MWAA tasks) reach its Pushgateway, which has
# no authentication: only their security groups may, at the head's address from ray_dashboard_url.
run "only_spark_and_airflow_reach_the_head_pushgateway_at_the_heads_address" {
  command = apply

  variables {
    create_monitoring = true
    ray_dashboard_url = "http://ip-10-40-10-12.eu-west-1.compute.internal:8265"
  }

  assert {
    condition = sort([
      for r in values(module.network[0].ingress_rules) : r.referenced_security_group_id
      if r.security_group_id == module.network[0].security_group_ids["ray"] && r.from_port <= 9091 && r.to_port >= 9091
    ]) == sort([module.network[0].security_group_ids["spark"], module.network[0].security_group_ids["airflow"]])
    error_message = "The ray security group must admit 9091 (the Pushgateway, unauthenticated) from the spark and airflow groups only (not the api)."
  }
  assert {
    condition     = output.app_environment["SFMLOPS_PUSHGATEWAY_URL"] == "http://ip-10-40-10-12.eu-west-1.compute.internal:9091"
    error_message = "The EMR job's SFMLOPS_PUSHGATEWAY_URL must be the Pushgateway on the head's host (of ray_dashboard_url), port 9091."
  }
  assert {
    condition     = nonsensitive(module.orchestration[0].airflow_configuration_options)["sfmlops.pushgateway_url"] == output.app_environment["SFMLOPS_PUSHGATEWAY_URL"]
    error_message = "MWAA must carry the Pushgateway URL as the configuration option sfmlops.pushgateway_url (AIRFLOW__SFMLOPS__PUSHGATEWAY_URL)."
  }
  assert {
    condition     = strcontains(module.monitoring[0].head_setup_commands[1], "--web.listen-address=0.0.0.0:9091 ") && yamldecode(module.monitoring[0].prometheus_agent_config).scrape_configs[1].static_configs[0].targets == ["127.0.0.1:9091"]
    error_message = "The head's Pushgateway listens on every interface, while its agent scrapes it on loopback."
  }
}

# Issue 18: nothing scrapes a Lambda function, so the API writes its metrics to the AMP workspace, with the role
# that may aps:RemoteWrite there (monitoring.tftest.hcl: remote_write_is_least_privilege); no one else is told to.
run "the_lambda_api_remote_writes_to_the_amp_workspace" {
  command = apply

  variables {
    create_monitoring = true
  }

  assert {
    condition     = module.api[0].environment["SFMLOPS_METRICS_REMOTE_WRITE_URL"] == module.monitoring[0].amp_remote_write_url && endswith(module.monitoring[0].amp_remote_write_url, "/api/v1/remote_write")
    error_message = "The Lambda API's SFMLOPS_METRICS_REMOTE_WRITE_URL must be the AMP workspace's remote-write endpoint."
  }
  assert {
    condition     = !contains(keys(output.app_environment), "SFMLOPS_METRICS_REMOTE_WRITE_URL") && !contains(keys(output.emr_job_environment), "SFMLOPS_METRICS_REMOTE_WRITE_URL")
    error_message = "Only the API writes remotely (the jobs push to the head's Pushgateway, which the head's agent remote-writes)."
  }
}

run "no_remote_write_without_monitoring" {
  command = apply

  variables {
    create_monitoring = false
  }

  assert {
    condition     = !contains(keys(module.api[0].environment), "SFMLOPS_METRICS_REMOTE_WRITE_URL")
    error_message = "Without the monitoring module there is no workspace to write to."
  }
}

run "no_pushgateway_url_without_the_heads_address" {
  command = apply

  variables {
    create_monitoring = true
    ray_dashboard_url = null
  }

  assert {
    condition     = output.app_environment["SFMLOPS_PUSHGATEWAY_URL"] == "off" && nonsensitive(module.orchestration[0].airflow_configuration_options)["sfmlops.pushgateway_url"] == "off"
    error_message = "Before `ray up` (no ray_dashboard_url) the EMR job and the DAG tasks must not push (off, not the app's loopback default)."
  }
}

# EMR Serverless has no environment of its own: the streaming job's settings travel from Terraform through MWAA's
# configuration option sfmlops.emr_job_environment (AIRFLOW__SFMLOPS__EMR_JOB_ENVIRONMENT) to the daily DAG, which
# gives them to each job run as driver and executor environment (spark-defaults). Only non-secret values, and of the
# secret ARNs only the spark role's, which the job role may read.
run "the_emr_job_gets_its_settings_through_mwaa_without_secrets" {
  command = apply

  variables {
    create_monitoring = true
    ray_dashboard_url = "http://ip-10-40-10-12.eu-west-1.compute.internal:8265"
  }

  assert {
    condition     = jsondecode(nonsensitive(module.orchestration[0].airflow_configuration_options)["sfmlops.emr_job_environment"]) == output.emr_job_environment
    error_message = "MWAA must carry the EMR job's settings as the JSON configuration option sfmlops.emr_job_environment (AIRFLOW__SFMLOPS__EMR_JOB_ENVIRONMENT)."
  }
  assert {
    condition = alltrue([for k in [
      "SFMLOPS_PROFILE", "SFMLOPS_AWS_REGION", "SFMLOPS_AWS_ENDPOINT_URL", "SFMLOPS_BUCKET_CHECKPOINTS", "SFMLOPS_PG_HOST", "SFMLOPS_PG_PORT",
      "SFMLOPS_PG_SECRET_ARN", "SFMLOPS_KAFKA_BOOTSTRAP_SERVERS", "SFMLOPS_KAFKA_AUTH", "SFMLOPS_KAFKA_TOPIC", "SFMLOPS_KAFKA_CONSUMER_GROUP",
      "SFMLOPS_PUSHGATEWAY_URL",
    ] : contains(keys(output.emr_job_environment), k)])
    error_message = "The EMR job needs its profile, region, endpoint, checkpoint bucket, Postgres, Kafka and Pushgateway settings."
  }
  assert {
    condition = (
      output.emr_job_environment["SFMLOPS_PG_HOST"] == module.database[0].address &&
      output.emr_job_environment["SFMLOPS_KAFKA_BOOTSTRAP_SERVERS"] == module.kafka[0].bootstrap_brokers &&
      output.emr_job_environment["SFMLOPS_KAFKA_AUTH"] == "aws-msk-iam" &&
      output.emr_job_environment["SFMLOPS_PROFILE"] == "aws" &&
      output.emr_job_environment["SFMLOPS_AWS_ENDPOINT_URL"] == "" &&
      output.emr_job_environment["SFMLOPS_PUSHGATEWAY_URL"] == "http://ip-10-40-10-12.eu-west-1.compute.internal:9091"
    )
    error_message = "The EMR job must reach RDS, MSK's IAM listener and the head's Pushgateway, on real AWS (empty endpoint: not the emulator)."
  }
  assert {
    condition     = [for k in keys(output.emr_job_environment) : k if endswith(k, "_SECRET_ARN")] == ["SFMLOPS_PG_SECRET_ARN"] && output.emr_job_environment["SFMLOPS_PG_SECRET_ARN"] == output.database_role_secret_arns["spark"]
    error_message = "Of the secret ARNs the EMR job gets only the spark database role's, as SFMLOPS_PG_SECRET_ARN (not the API's, Ray's or MLflow's)."
  }
  assert {
    condition = setintersection(toset(values(output.emr_job_environment)), toset(compact(concat(
      values(output.database_role_secret_arns), values(output.mlflow_client_secret_arns), [output.database_secret_arn, output.api_key_pepper_secret_arn],
    )))) == toset([output.database_role_secret_arns["spark"]])
    error_message = "No other secret may be named to the EMR job."
  }
  assert {
    condition = alltrue([
      for k, v in output.emr_job_environment :
      startswith(k, "SFMLOPS_") && (!can(regex("(PASSWORD|SECRET|TOKEN|PEPPER|PRIVATE_KEY)", k)) || endswith(k, "_ARN"))
    ])
    error_message = "The EMR job's environment carries something that looks like a secret (or a name outside SFMLOPS_*)."
  }
  assert {
    condition = contains(flatten([
      for st in jsondecode(output.iam_policy_documents["spark_job"]).Statement : flatten([st.Resource])
      if contains(flatten([st.Action]), "secretsmanager:GetSecretValue")
    ]), output.emr_job_environment["SFMLOPS_PG_SECRET_ARN"])
    error_message = "The EMR job role must be allowed to read the database secret whose ARN the job gets."
  }
  assert {
    condition = (
      length(output.emr_job_environment) <= 50 && alltrue([for v in values(output.emr_job_environment) : length(v) <= 1024]) &&
      length(nonsensitive(module.orchestration[0].airflow_configuration_options)["sfmlops.emr_job_environment"]) <= 65536 &&
      can(regex("^[ -~]+$", nonsensitive(module.orchestration[0].airflow_configuration_options)["sfmlops.emr_job_environment"]))
    )
    error_message = "Within the limits: EMR Serverless 100 spark-defaults properties (two per name), 1,024 characters a value; MWAA 65,536 printable ASCII characters an option."
  }
}

run "rejects_a_ray_dashboard_url_without_scheme" {
  command = plan

  variables {
    name                 = "sfmlops-bad"
    environment          = "test"
    create_network       = false
    create_database      = false
    create_kafka         = false
    create_spark         = false
    create_ray           = false
    create_mlflow        = false
    create_orchestration = false
    ray_dashboard_url    = "10.40.10.12:8265"
  }

  expect_failures = [var.ray_dashboard_url]
}

run "local_profile_gates_unsupported_services" {
  command = plan

  variables {
    name                 = "sfmlops-local"
    environment          = "local"
    create_kafka         = false
    create_database      = false
    create_spark         = false
    create_mlflow        = false
    create_orchestration = false
    create_nat_gateway   = false
    app_profile          = "local"
    local_endpoints = {
      aws_endpoint_url        = "http://127.0.0.1:4566"
      pg_host                 = "127.0.0.1"
      pg_port                 = 5432
      kafka_bootstrap_servers = "127.0.0.1:9092"
      mlflow_tracking_uri     = "http://127.0.0.1:5000"
      ray_address             = "http://127.0.0.1:8265"
    }
    buckets = {
      raw         = { name = "l-raw", versioning = false, noncurrent_expiration_days = 1 }
      checkpoints = { name = "l-checkpoints", versioning = false, noncurrent_expiration_days = 1 }
      mlflow      = { name = "l-mlflow", versioning = true, noncurrent_expiration_days = 7 }
      code        = { name = "l-code", versioning = true, noncurrent_expiration_days = 7 }
      dags        = { name = "l-dags", versioning = true, noncurrent_expiration_days = 7 }
    }
    access_log_bucket_name = "l-access-logs"
  }

  assert {
    condition     = length(module.kafka) == 0 && length(module.database) == 0 && length(module.spark) == 0 && length(module.mlflow) == 0 && length(module.orchestration) == 0
    error_message = "The local profile must not plan MSK, RDS, EMR, ECS or MWAA."
  }
  assert {
    condition     = output.app_environment["SFMLOPS_PG_HOST"] == "127.0.0.1" && output.app_environment["SFMLOPS_KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092" && output.app_environment["SFMLOPS_KAFKA_AUTH"] == "none"
    error_message = "Without RDS/MSK the app must point at the local stand-ins."
  }
}

run "rejects_a_database_without_network" {
  command = plan

  variables {
    name                 = "sfmlops-bad"
    environment          = "test"
    create_network       = false
    create_database      = true
    create_kafka         = false
    create_spark         = false
    create_ray           = false
    create_mlflow        = false
    create_orchestration = false
  }

  expect_failures = [var.create_database]
}

run "rejects_secrets_in_app_environment" {
  command = plan

  variables {
    name                 = "sfmlops-bad"
    environment          = "test"
    create_network       = false
    create_database      = false
    create_kafka         = false
    create_spark         = false
    create_ray           = false
    create_mlflow        = false
    create_orchestration = false
    app_environment      = { SFMLOPS_PG_PASSWORD = "hunter2" }
  }

  expect_failures = [var.app_environment]
}
