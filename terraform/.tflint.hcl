# tflint with the bundled Terraform ruleset only: plugin downloads (the AWS ruleset) come
# from GitHub releases, which this project's machines cannot reach.
config {
  call_module_type = "local"
}

plugin "terraform" {
  enabled = true
  preset  = "all"
}

# Module versions.tf pin a range, the root pins the exact provider of the mirror.
rule "terraform_standard_module_structure" {
  enabled = true
}
