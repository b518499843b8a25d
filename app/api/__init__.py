"""The job-submission middle man and forecast API (FastAPI; runs in Lambda via Mangum or under uvicorn).

Only light dependencies are imported here (fastapi, pydantic, httpx, psycopg 3, psycopg_pool): the Lambda package must
not contain ray, torch, pandas or mlflow. ``create_app`` lives in :mod:`app.api.main`.
"""
