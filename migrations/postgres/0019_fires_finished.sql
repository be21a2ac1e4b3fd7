-- A scheduled fire is claimed before anything happens and finished when its outcome is known
-- (the week's issue sending, nothing new, or an issue already there). A claim whose process
-- failed between the claim and the send (a full disk, a database restart) stays unfinished, so
-- the scheduler retries it within schedule.catch_up instead of losing the week's send.
-- `claimed_by` names the process holding an unfinished claim: it may retry at once, another
-- process only once the claim is stale.
ALTER TABLE schedule_fires ADD COLUMN done_at BIGINT;
ALTER TABLE schedule_fires ADD COLUMN claimed_by TEXT;
-- Fires claimed before this migration were handled as a whole.
UPDATE schedule_fires SET done_at = created_at;
