-- Dead tasks by id: a task listing filtered to dead tasks (the console's Tasks page, GET
-- /tasks?state=dead) reads them in id order without passing every older waiting task.
CREATE INDEX tasks_dead_id_idx ON tasks (id) WHERE state = 'dead';
