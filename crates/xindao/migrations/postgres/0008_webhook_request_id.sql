-- Webhooks: the id of the request (HTTP or WebSocket) whose commit made the event, sent as the delivery's
-- `request_id` so that a backend can find the request in xindao's logs. NULL for events no request caused.
ALTER TABLE webhook_outbox ADD COLUMN IF NOT EXISTS request_id TEXT;
ALTER TABLE webhook_dead ADD COLUMN IF NOT EXISTS request_id TEXT;
