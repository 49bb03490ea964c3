-- Broadcasts (issue 13): each run of a broadcast and the audience it froze when it started.
-- A run is written by workflows.broadcast (activities/broadcast.py): its audience is taken
-- in one transaction (a retry finds it taken and changes nothing), then each member is
-- requested once, in member id order, through the ingress's accept (event id
-- bc:{broadcast}:{run}:{member_id}); the touches it led to are in `touches` (scenario 'BC',
-- step = broadcast, occurrence = run).
CREATE TABLE broadcast_runs (
    broadcast     text NOT NULL,
    run           text NOT NULL,
    workflow_id   text NOT NULL,  -- the one workflow that sends this run: another is refused
    -- As sent: segment name and criteria, template, channel, holdout, rate (BroadcastInput).
    definition    jsonb NOT NULL CHECK (jsonb_typeof(definition) = 'object'),
    requested_at  timestamptz NOT NULL,  -- the run's time: its events' occurred_at
    as_of         timestamptz NOT NULL,  -- the moment the segment was evaluated at
    audience      int NOT NULL CHECK (audience >= 0),
    status        text NOT NULL DEFAULT 'sending' CHECK (status IN ('sending', 'finished', 'cancelled')),
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    PRIMARY KEY (broadcast, run)
);
CREATE INDEX broadcast_runs_started ON broadcast_runs (broadcast, started_at DESC);

-- The audience of a run, frozen at its start. verdict: what the ingress said of the member's
-- event (NULL: not reached yet): requested (accepted, or already in the log from an attempt
-- a crash interrupted) or refused (the member was erased since the snapshot; or no valid
-- event could be made, refused_reason says why).
CREATE TABLE broadcast_members (
    broadcast       text NOT NULL,
    run             text NOT NULL,
    member_id       text NOT NULL,
    verdict         text CHECK (verdict IN ('requested', 'refused')),
    refused_reason  text,
    PRIMARY KEY (broadcast, run, member_id),
    FOREIGN KEY (broadcast, run) REFERENCES broadcast_runs (broadcast, run) ON DELETE CASCADE
);
