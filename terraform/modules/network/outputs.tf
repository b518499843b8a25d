output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "public_subnet_ids" {
  description = "IDs of the public subnets (NAT gateway only)."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "IDs of the private subnets where every component runs."
  value       = aws_subnet.private[*].id
}

output "security_group_ids" {
  description = "Security group ID per component."
  value       = { for k, sg in aws_security_group.this : k => sg.id }
}

output "ingress_rules" {
  description = "The ingress rules between components, keyed <source>-to-<target>-<port>: the target's and the source's security group and the port (for audits and terraform test)."
  value = {
    for k, r in aws_vpc_security_group_ingress_rule.this : k => {
      security_group_id            = r.security_group_id
      referenced_security_group_id = r.referenced_security_group_id
      from_port                    = r.from_port
      to_port                      = r.to_port
    }
  }
}

output "s3_endpoint_id" {
  description = "ID of the S3 gateway endpoint."
  value       = aws_vpc_endpoint.s3.id
}

output "wildcard_reasons" {
  description = "Why each policy statement of this module with a bare \"*\" action or resource needs it, keyed by Sid (none here)."
  value       = {}
}
