"""What ships to Ray: the job-code zip (:mod:`app.jobs.package`); the job entrypoints live in ``ray_cluster/jobs/``."""
