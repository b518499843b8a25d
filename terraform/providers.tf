# Credentials and, for an emulator, endpoints come from outside this code: the AWS SDK
# environment on AWS, and the generated localstack_override.tf (localstack/tf_override.py)
# or AWS_ENDPOINT_URL for MiniStack/LocalStack.
provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge(var.tags, {
      Project     = "sfmlops"
      Environment = var.environment
      ManagedBy   = "terraform"
    })
  }
}
