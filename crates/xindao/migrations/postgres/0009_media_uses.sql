-- The messages that carry each medium, so that recalling or removing the last one deletes the medium
-- (docs/protocol.md, "Media"): one row per live media message, dropped when the message becomes a tombstone.
CREATE TABLE IF NOT EXISTS media_uses (
    conversation_id BIGINT NOT NULL,
    seq             BIGINT NOT NULL,
    media_id        TEXT NOT NULL REFERENCES media(id),
    PRIMARY KEY (conversation_id, seq)
);
CREATE INDEX IF NOT EXISTS media_uses_by_media ON media_uses(media_id);
-- A medium whose last message was recalled or removed: its bytes are deleted from media storage and it is
-- no longer served; the row stays so that the upload quota still counts it.
ALTER TABLE media ADD COLUMN IF NOT EXISTS deleted_at BIGINT;
-- The media messages sent before this table existed.
INSERT INTO media_uses (conversation_id, seq, media_id)
SELECT m.conversation_id, m.seq, media.id
-- (the CASE keeps the cast away from other kinds, whatever order the planner picks)
FROM messages m JOIN media
  ON media.id = CASE WHEN m.kind IN ('image', 'voice', 'file') THEN m.content::jsonb ->> 'media_id' END
WHERE m.kind IN ('image', 'voice', 'file') AND m.state IS NULL
ON CONFLICT DO NOTHING;
