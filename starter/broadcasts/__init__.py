"""Broadcasts (issue 13, part 2): a template sent to a segment, once or on a schedule.

A broadcast is configured in the shop file (``[broadcasts.NAME]``: segment, template,
channel, holdout, cron schedule, rate). A run of it is one ``workflows.broadcast``
workflow: the audience frozen at its start, then each member requested once, through the
ingress, at the broadcast's rate; each member's own workflow decides its touch.

- ``runs``: the configured broadcasts, a run's input, starting one (refused if the run
  exists), and what each run did (``broadcast_runs``, ``broadcast_members``, ``touches``).
- ``schedules``: a Temporal Schedule per recurring broadcast, in the shop's timezone.
- ``cli``: ``goldenroute broadcast list | send | show | schedule | unschedule | cancel``.
"""
