output "cluster_arn" {
  description = "ARN of the MSK cluster (IAM policies for kafka-cluster:* actions are scoped to it)."
  value       = aws_msk_cluster.this.arn
}

output "cluster_name" {
  description = "Name of the MSK cluster."
  value       = aws_msk_cluster.this.cluster_name
}

output "bootstrap_brokers" {
  description = "Bootstrap brokers for SASL/IAM over TLS (port 9098)."
  value       = aws_msk_cluster.this.bootstrap_brokers_sasl_iam
}

output "wildcard_reasons" {
  description = "Why each policy statement of this module with a bare \"*\" action or resource needs it, keyed by Sid (none here)."
  value       = {}
}

output "client_broker_encryption" {
  description = "Encryption between clients and brokers (TLS)."
  value       = aws_msk_cluster.this.encryption_info[0].encryption_in_transit[0].client_broker
}

output "iam_auth_enabled" {
  description = "Whether SASL/IAM client authentication is on."
  value       = aws_msk_cluster.this.client_authentication[0].sasl[0].iam
}

output "unauthenticated_allowed" {
  description = "Whether unauthenticated clients are admitted (false)."
  value       = aws_msk_cluster.this.client_authentication[0].unauthenticated
}
