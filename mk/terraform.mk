# Terraform: static checks, mock-provider tests, checkov/tflint, and apply/destroy to the
# local emulator. Every terraform call uses the project's CLI config (provider mirror only).
TF_DIR        := terraform
TF            := TF_CLI_CONFIG_FILE=$(CURDIR)/terraform/terraformrc TF_IN_AUTOMATION=1 terraform -chdir=$(TF_DIR)
TF_LOCAL_DIR  := $(abspath $(or $(SFMLOPS_STATE_DIR),.local))/terraform
TF_LOCAL_VARS := -var-file=envs/local.tfvars -var-file=$(TF_LOCAL_DIR)/endpoints.tfvars.json
TOOLS_VENV    := .venv-tools
TFLINT_VERSION := v0.58.1
LAMBDA_ZIP    ?= $(CURDIR)/build/lambda.zip

# `make setup-dev` installs checkov and tflint too (the pipeline needs neither).
setup-dev: tools-setup

.PHONY: tools-setup tf-init tf-fmt tf-validate tf-test tf-lint tf-checkov tf-check tf-apply-local tf-destroy-local tf-ray-cluster

tools-setup: ## Create .venv-tools with checkov (requirements/tools.lock) and build tflint with Go
	@test -x $(TOOLS_VENV)/bin/python || python3.11 -m venv $(TOOLS_VENV)
	$(VENV)/bin/uv pip install --quiet --python $(TOOLS_VENV)/bin/python --require-hashes -r requirements/tools.lock
	@test -x $(TOOLS_VENV)/bin/tflint || { command -v go >/dev/null && \
	  GOBIN=$(CURDIR)/$(TOOLS_VENV)/bin GOFLAGS=-mod=mod GOSUMDB=off go install github.com/terraform-linters/tflint@$(TFLINT_VERSION) \
	  || echo "tflint not built (needs Go and the Go module proxy); its test will be skipped"; }

tf-init: ## terraform init (no backend) from the provider mirror
	$(TF) init -backend=false -input=false

tf-fmt: ## terraform fmt -check over terraform/
	$(TF) fmt -check -recursive -diff

tf-validate: tf-init ## terraform validate
	$(TF) validate

tf-test: tf-init ## terraform test: security invariants on the mock provider
	$(TF) test

tf-lint: ## tflint (bundled terraform ruleset) over every module
	cd $(TF_DIR) && TF_CLI_CONFIG_FILE=$(CURDIR)/terraform/terraformrc $(CURDIR)/$(TOOLS_VENV)/bin/tflint --recursive --config=$(CURDIR)/terraform/.tflint.hcl

tf-checkov: ## checkov over terraform/ (0 failed checks; skips carry reasons in code)
	$(TOOLS_VENV)/bin/checkov -d $(TF_DIR) --framework terraform --quiet --compact --skip-path .terraform

tf-check: tf-fmt tf-validate tf-test tf-lint tf-checkov ## every static Terraform check

tf-apply-local: ## apply terraform/ with envs/local.tfvars to the emulator of the local stack
	@test -f $(LAMBDA_ZIP) || { echo "missing $(LAMBDA_ZIP): run 'make lambda-package' first (or LAMBDA_ZIP=...)"; exit 1; }
	$(PY) localstack/tf_override.py --dir $(TF_DIR)
	$(TF) init -input=false -reconfigure
	@start=$$(date +%s); $(TF) apply -auto-approve -input=false $(TF_LOCAL_VARS) -var lambda_zip_path=$(LAMBDA_ZIP) \
	  && echo "terraform apply to the emulator: $$(( $$(date +%s) - start ))s"
	$(PY) terraform/scripts/render_cluster_yaml.py --dir $(TF_DIR) --out $(TF_LOCAL_DIR)/cluster.yaml
	@$(TF) output -raw api_endpoint; echo

tf-destroy-local: ## destroy what tf-apply-local created and remove the emulator override
	@test -f $(TF_DIR)/localstack_override.tf || $(PY) localstack/tf_override.py --dir $(TF_DIR)
	@start=$$(date +%s); $(TF) destroy -auto-approve -input=false $(TF_LOCAL_VARS) -var lambda_zip_path=$(LAMBDA_ZIP) \
	  && echo "terraform destroy on the emulator: $$(( $$(date +%s) - start ))s"
	$(PY) localstack/tf_override.py --dir $(TF_DIR) --remove

tf-ray-cluster: ## write ray_cluster/cluster.yaml from the applied Terraform outputs
	$(PY) terraform/scripts/render_cluster_yaml.py --dir $(TF_DIR) --out ray_cluster/cluster.yaml
