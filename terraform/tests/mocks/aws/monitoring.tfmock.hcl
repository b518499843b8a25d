# Mock data for the monitoring module's resources (mock_provider "aws" { source = "./tests/mocks/aws" } in the test
# files that plan or apply it): ARNs the AWS provider validates, named as for the sfmlops-prod deployment.

mock_resource "aws_sns_topic" {
  defaults = {
    arn = "arn:aws:sns:eu-west-1:123456789012:sfmlops-prod-alerts"
  }
}

mock_resource "aws_prometheus_workspace" {
  defaults = {
    arn                 = "arn:aws:aps:eu-west-1:123456789012:workspace/ws-mock"
    prometheus_endpoint = "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-mock/"
  }
}

mock_resource "aws_ssm_parameter" {
  defaults = {
    arn = "arn:aws:ssm:eu-west-1:123456789012:parameter/sfmlops-prod/monitoring/prometheus-agent.yml"
  }
}
