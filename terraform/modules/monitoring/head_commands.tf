# What the Ray head runs for monitoring: output head_setup_commands, the ray module's head_setup_commands (`ray up`
# runs them on the head after the setup commands, and again on every later `ray up`). This file reads only
# variables, so tests/monitoring/test_head_commands.py renders it with `terraform console`, without a deployment.
#
# * the Pushgateway: the official release binary (Debian's package is not on Amazon's AMIs), downloaded once and
#   checked against its pinned sha256, listening on pushgateway_listen_address (every interface by default: the
#   drivers of the Ray jobs push on the head itself, the EMR driver and the MWAA tasks at the head's private
#   address, which only their security groups may reach on this port; it has no authentication), on the port of
#   the agent's pushgateway target, which stays loopback;
# * the sfmlops exporter: the `app` package of the job-code zip on S3 (the code the API's Ray jobs run), its
#   Python dependencies pinned as in requirements/main.lock, the app's non-secret settings (exporter_environment),
#   listening on the agent's exporter target;
# * the Prometheus agent: its config fetched from SSM, remote-writing to the AMP workspace.
# Every daemon is (re)started through a pidfile, so a later `ray up` replaces it instead of failing on its port.
locals {
  prometheus_agent_parameter = "/${var.name}/monitoring/prometheus-agent.yml"
  head_dir                   = "$HOME/sfmlops-monitoring"
  pushgateway_release        = "pushgateway-${var.pushgateway_version}.linux-amd64"
  pushgateway_tarball        = "${local.pushgateway_release}.tar.gz"
  pushgateway_url            = "https://github.com/prometheus/pushgateway/releases/download/v${var.pushgateway_version}/${local.pushgateway_tarball}"
  exporter_address           = split(":", var.prometheus_agent_targets.exporter)
  exporter_env = merge(var.exporter_environment, {
    SFMLOPS_BIND_HOST     = local.exporter_address[0]
    SFMLOPS_EXPORTER_PORT = local.exporter_address[1]
  })
  # KEY='value' arguments of env(1), every value single-quoted for the shell.
  exporter_env_args = join(" ", [for k in sort(keys(local.exporter_env)) : "${k}='${replace(local.exporter_env[k], "'", "'\\''")}'"])
  # `restart NAME CMD...`: stop the instance its pidfile names (waiting up to 10 s for it to exit), then run CMD in
  # the background with its output in NAME.log and its pid in NAME.pid, both in head_dir.
  restart = join(" ", [
    "restart() { n=$1; shift; p=${local.head_dir}/$n.pid;",
    "if [ -f $p ]; then kill $(cat $p) 2>/dev/null; for i in $(seq 50); do kill -0 $(cat $p) 2>/dev/null || break; sleep 0.2; done; fi;",
    "nohup \"$@\" < /dev/null > ${local.head_dir}/$n.log 2>&1 & echo $! > $p; };",
  ])
  job_dir = "${local.head_dir}/sfmlops_job" # the zip's one top-level folder (app/jobs/package.py TOP)

  head_setup_commands = [
    # Pushgateway: the release binary, once, only if its sha256 is the pinned one.
    join(" ", [
      "mkdir -p ${local.head_dir} && cd ${local.head_dir} && if [ ! -x ${local.pushgateway_release}/pushgateway ]; then",
      "{ curl -fsSL -o ${local.pushgateway_tarball} ${local.pushgateway_url} && echo '${var.pushgateway_sha256}  ${local.pushgateway_tarball}' | sha256sum -c --quiet - && tar xzf ${local.pushgateway_tarball}; } ||",
      "{ rm -f ${local.pushgateway_tarball}; echo 'sfmlops monitoring: could not fetch ${local.pushgateway_url} with sha256 ${var.pushgateway_sha256}' >&2; exit 1; };",
      "rm -f ${local.pushgateway_tarball}; fi",
    ]),
    "${local.restart} restart pushgateway ${local.head_dir}/${local.pushgateway_release}/pushgateway --web.listen-address=${var.pushgateway_listen_address} --persistence.file=${local.head_dir}/pushgateway.store",
    # The exporter's code: the job-code zip (app/ and ray_cluster/) and the few packages the head lacks.
    join(" ", [
      "mkdir -p ${local.head_dir} && { aws s3 cp ${var.job_code_uri} ${local.head_dir}/job.zip --region ${var.region} --only-show-errors ||",
      "{ echo 'sfmlops monitoring: no job-code zip at ${var.job_code_uri}: upload it (make job-package with the deployment settings), then run ray up again' >&2; exit 1; }; }",
      "&& rm -rf ${local.job_dir} && python3 -m zipfile -e ${local.head_dir}/job.zip ${local.head_dir}",
      "&& python3 -m pip install --quiet ${join(" ", [for p in var.exporter_pip_packages : "'${p}'"])}",
    ]),
    # The exporter (it hashes no API keys, so it runs without the pepper: that stays the API role's alone).
    "${local.restart} cd ${local.job_dir} && restart exporter env ${local.exporter_env_args} python3 -m app.monitoring.exporter",
    # The Prometheus agent (agent mode needs Prometheus >= 2.32; Ubuntu 24.04's package is 2.45, Debian 12's 2.42).
    "command -v prometheus >/dev/null || (sudo apt-get update -qq && sudo apt-get install -y -qq prometheus && sudo systemctl disable --now prometheus)",
    "mkdir -p ${local.head_dir} && aws ssm get-parameter --region ${var.region} --with-decryption --name ${local.prometheus_agent_parameter} --query Parameter.Value --output text > ${local.head_dir}/agent.yml",
    "${local.restart} restart prometheus-agent prometheus --enable-feature=agent --config.file=${local.head_dir}/agent.yml --storage.agent.path=${local.head_dir}/agent-wal --web.listen-address=127.0.0.1:9095",
  ]
}
