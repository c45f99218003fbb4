-- `room_create` counts the rooms its caller owns (max_rooms_per_owner) inside its transaction: an index, so that
-- the count reads the owner's rooms only. `IF NOT EXISTS`: a database put back to an earlier version by hand
-- (as the migration tests do) still opens.
CREATE INDEX IF NOT EXISTS rooms_by_owner ON conversations(owner_id) WHERE kind = 'room';
