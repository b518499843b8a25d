output "head_role_arn" {
  description = "IAM role of the head node (autoscaler permissions included)."
  value       = aws_iam_role.this.arn
}

output "head_instance_profile_arn" {
  description = "Instance profile of the head node."
  value       = aws_iam_instance_profile.this.arn
}

output "worker_role_arn" {
  description = "IAM role of the worker nodes."
  value       = aws_iam_role.worker.arn
}

output "worker_instance_profile_arn" {
  description = "Instance profile of the worker nodes."
  value       = aws_iam_instance_profile.worker.arn
}

output "cluster_yaml" {
  description = "The `ray up` cluster file rendered from this module's values (written to ray_cluster/cluster.yaml by terraform/scripts/render_cluster_yaml.py)."
  value       = local.cluster_yaml
}

output "head_policy_json" {
  description = "The head role's inline policy as JSON (for audits and terraform test)."
  value       = aws_iam_role_policy.this.policy
}

output "worker_policy_json" {
  description = "The worker role's inline policy as JSON (for audits and terraform test)."
  value       = aws_iam_role_policy.worker.policy
}

output "wildcard_reasons" {
  description = "Why each policy statement of this module with a bare \"*\" action or resource needs it, keyed by Sid."
  value       = local.wildcard_reasons
}
