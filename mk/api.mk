# API middle man (issue 6): FastAPI app in app/api/, Lambda wrapper in lambda/, job-code zip for Ray.

.PHONY: lambda-package job-package api test-api

lambda-package: $(VENV)/.installed ## Build build/lambda.zip from manylinux wheels; prints zipped/unzipped MB and cold import s
	nice -n 10 $(PY) lambda/build.py --out build/lambda.zip

job-package: $(VENV)/.installed ## Build build/job.zip (app/ + ray_cluster/) and upload it to s3://SFMLOPS_BUCKET_CODE/SFMLOPS_JOB_CODE_KEY
	$(PY) -m app.api.job_package --out build/job.zip

api: $(VENV)/.installed ## Serve the API with uvicorn on 127.0.0.1:SFMLOPS_API_PORT (development)
	$(PY) -c "from app.api.main import run_api; run_api()"

test-api: $(VENV)/.installed ## API tests: Lambda events, Postgres + Ray integration, schemathesis
	$(PY) -m pytest tests/api $(PYTEST_ARGS)
