-- Daily files for the print house (postal DM), the warehouse (package inserts) and the
-- call centre (tasks), and the agents' results (starter/exports.py, starter/calls.py).
--
-- An export takes the day's rows not yet exported and marks them in the transaction that
-- reads them, as one numbered batch; `export --again` renders a batch's rows again (a lost
-- download) and compares the file with the digest kept here. The batch keeps no copy of
-- the file: personal data stays in deliveries.body only, where erasure redacts it.
CREATE TABLE export_batches (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('dm', 'inserts', 'calls')),
    day         date NOT NULL,         -- the shop's calendar day whose rows it holds
    timezone    text NOT NULL,         -- the shop's timezone the day and times were read in
    created_at  timestamptz NOT NULL DEFAULT now(),
    row_count   int NOT NULL CHECK (row_count >= 0),
    encoding    text NOT NULL,         -- utf-8-sig, utf-8 or cp932
    digest      text NOT NULL          -- sha256 of the file as written
);
CREATE INDEX export_batches_day ON export_batches (kind, day);

-- Postal DM: a queued message leaves as state 'exported' with its batch.
ALTER TABLE deliveries
    ADD COLUMN exported_at  timestamptz,
    ADD COLUMN export_batch bigint REFERENCES export_batches (id);
CREATE INDEX deliveries_export_batch ON deliveries (export_batch) WHERE export_batch IS NOT NULL;

ALTER TABLE inserts
    ADD COLUMN exported_at  timestamptz,
    ADD COLUMN export_batch bigint REFERENCES export_batches (id);
CREATE INDEX inserts_to_export ON inserts (created_at) WHERE exported_at IS NULL;
CREATE INDEX inserts_export_batch ON inserts (export_batch) WHERE export_batch IS NOT NULL;

-- Call-centre tasks: a short number the agents type (`goldenroute calls done 42`), the
-- export, and how the call ended. Existing tasks are numbered in the order of their rows.
ALTER TABLE call_center_tasks
    ADD COLUMN task_id      bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    ADD COLUMN exported_at  timestamptz,
    ADD COLUMN export_batch bigint REFERENCES export_batches (id),
    ADD COLUMN result       text CHECK (result IN ('reached', 'no_answer', 'resumed', 'cancel_requested', 'declined')),
    ADD COLUMN closed_at    timestamptz,
    ADD COLUMN closed_by    text,
    ADD COLUMN note         text;
CREATE INDEX call_center_tasks_to_export ON call_center_tasks (created_at) WHERE exported_at IS NULL AND status = 'open';
CREATE INDEX call_center_tasks_export_batch ON call_center_tasks (export_batch) WHERE export_batch IS NOT NULL;
