-- Readers in control: when a pending reader got their one reminder (NULL: not yet in this
-- signup; a new signup of the address clears it).
ALTER TABLE subscribers ADD COLUMN reminded_at BIGINT;
