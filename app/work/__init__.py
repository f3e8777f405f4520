"""Work carried out in worker processes: the worker, the intake and delivery lanes, one delivery's
attempt, and the RQ job functions (app.work.jobs), which RQ finds by their dotted names."""
