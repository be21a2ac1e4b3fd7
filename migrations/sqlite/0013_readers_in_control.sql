-- Readers in control: when a pending reader got their one reminder (NULL: not yet in this
-- signup; a new signup of the address clears it).
ALTER TABLE subscribers ADD COLUMN reminded_at BIGINT;
-- A reader's pause from the manage page: no issue is sent to them before this time (NULL: not
-- paused); they come back by themselves when it passes.
ALTER TABLE subscribers ADD COLUMN paused_until BIGINT;
