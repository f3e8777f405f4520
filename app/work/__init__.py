"""Work carried out in worker processes: the worker, the intake pump, the delivery lane, one delivery's
attempt, and the RQ job functions (app.work.jobs), which RQ finds by their dotted names."""
