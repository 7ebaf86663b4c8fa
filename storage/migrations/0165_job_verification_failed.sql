-- The command center lists the jobs whose latest verification failed; a partial index keeps
-- that read off a scan of every job's verification row (storage/queryplan_test.go).
CREATE INDEX job_verification_failed ON job_verification(last_verified_at) WHERE last_verify_status = 'failed';
