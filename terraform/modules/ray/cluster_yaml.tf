# The `ray up` cluster file: templates/cluster.yaml.tftpl rendered with this module's variables and the two
# instance profile ARNs (locals in main.tf). This file reads nothing else, so app/stack/terraform.py renders it
# with placeholder ids and no deployment (the node types that the fake multinode cluster and the tests read).
locals {
  cluster_yaml = templatefile("${path.module}/templates/cluster.yaml.tftpl", {
    cluster_name         = var.name
    region               = var.region
    availability_zones   = join(",", var.availability_zones)
    subnet_ids           = var.subnet_ids
    security_group_id    = var.security_group_id
    head_profile_arn     = local.head_profile_arn
    worker_profile_arn   = local.worker_profile_arn
    image_id             = var.image_id
    head_instance_type   = var.head_instance_type
    worker_instance_type = var.worker_instance_type
    min_workers          = var.min_workers
    max_workers          = var.max_workers
    idle_timeout_minutes = var.idle_timeout_minutes
    ray_version          = var.ray_version
    pip_packages         = join(" ", [for p in var.pip_packages : "'${p}'"])
    head_setup_commands  = var.head_setup_commands
  })
}
