-- The last failure of the transport while an issue was sending (a refused login, a TLS failure,
-- a server that cannot be reached) and since when it has been failing, so `issue status` and the
-- admin API can say why a send makes no progress. Cleared by the next accepted message.
ALTER TABLE issues ADD COLUMN transport_error TEXT;
ALTER TABLE issues ADD COLUMN transport_error_since BIGINT;
