-- The command center lists the newest failed notifications of a time range, whatever their
-- channel. The indexes led by status went on by next attempt or by channel, so the query read
-- every failed notification ever kept and sorted them. This one answers it in order, from the
-- newest, and stops at the page.
CREATE INDEX notifications_status_created_at_id ON notifications(status, created_at DESC, id DESC);
