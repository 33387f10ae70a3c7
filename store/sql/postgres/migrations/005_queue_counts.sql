-- Dead tasks per queue from an index: the queue counts (list_queues, the overview, metrics)
-- read each queue's share of the partial indexes instead of scanning the task table.
CREATE INDEX tasks_dead_queue_idx ON tasks (queue) WHERE state = 'dead';
