-- A schedule that was forced past a failed pre-send check (`issue schedule --force`, JSON
-- `force`, the console's box) stays forced: when it comes due, the checks run again and only a
-- forced schedule starts in spite of a failure (1); an unforced one goes back to `ready` with the
-- failed check as its reason (0).
ALTER TABLE issues ADD COLUMN scheduled_forced BIGINT NOT NULL DEFAULT 0;

-- "Will go to N recipients" leaves out the readers paused now: they are counted through this
-- index (only paused readers are in it), not by a scan of every subscriber.
CREATE INDEX subscribers_paused ON subscribers (paused_until) WHERE paused_until IS NOT NULL;
