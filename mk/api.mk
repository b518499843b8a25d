# API middle man (issue 6): FastAPI app in app/api/, Lambda wrapper in lambda/, job-code zip for Ray.

.PHONY: lambda-package job-package api test-api

lambda-package: $(VENV)/.installed ## Build build/lambda.zip from manylinux wheels; prints zipped/unzipped MB and cold import s
	nice -n 10 $(PY) lambda/build.py --out build/lambda.zip

job-package: $(VENV)/.installed ## Build build/job.zip (app/ + ray_cluster/) and upload it to s3://SFMLOPS_BUCKET_CODE/SFMLOPS_JOB_CODE_KEY
	$(PY) -m app.jobs.package --out build/job.zip

api: $(VENV)/.installed ## Serve the API with uvicorn on 127.0.0.1:SFMLOPS_API_PORT (development)
	$(PY) -c "from app.api.main import run_api; run_api()"

test-api: $(VENV)/.dev-installed ## API tests: Lambda events, Postgres + Ray integration, schemathesis
	$(PY) -m pytest tests/api $(PYTEST_ARGS)

# Load generator of `sfmlops bench api` (issue 15): vegeta built from source with `go install` (Go module proxy).
VEGETA_VERSION ?= v12.13.0
GO_BIN := $(CURDIR)/.cache/go-bin

.PHONY: vegeta bench-api
vegeta: $(GO_BIN)/vegeta ## Build the vegeta load generator into .cache/go-bin (needs Go)

$(GO_BIN)/vegeta:
	@command -v go >/dev/null || { echo "vegeta needs Go (apt-get install golang-go, or go.dev): go install builds it"; exit 1; }
	GOBIN=$(GO_BIN) GOPATH=$(CURDIR)/.cache/go GOFLAGS=-modcacherw go install github.com/tsenart/vegeta/v12@$(VEGETA_VERSION)

bench-api: $(VENV)/.installed $(GO_BIN)/vegeta ## The API under vegeta at 200/500/1000 req/s vs a lean FastAPI+psycopg service, then Lambda
	$(VENV)/bin/sfmlops bench api
