-- Pruning deletes used-up tokens as well as expired ones; this partial index (normally empty: an
-- enrollment deletes a token when its last use is taken) keeps that delete off a table scan.
CREATE INDEX enrollment_tokens_used_up ON enrollment_tokens(remaining_uses) WHERE remaining_uses <= 0;
