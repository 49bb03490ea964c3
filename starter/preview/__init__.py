"""``goldenroute preview``: example members' events through the real MemberWorkflow, channels dry (SPEC §6, §7).

- ``inputs``: the event files, validated as the ingress validates them, one member each;
- ``clock``: the input's timeline and the test server's, whole days apart;
- ``run``: ``Previewer``, one time-skipping test server running member after member,
  each under a fixed configuration (the SPEC's defaults, or a shop file's rules);
- ``journey``: what a run reports, ``Preview`` and its ``PreviewTouch``es;
- ``render``: the table and the JSON;
- ``compare``: ``--compare OLD NEW``, the touches that appear, disappear or move;
- ``command``: the CLI command that ties them together.
"""

from starter.preview.clock import days_to_shift, shift, shift_occurrence
from starter.preview.inputs import (
    DEFAULT_TIMEZONE,
    ExampleMember,
    PreviewError,
    in_time_order,
    load_member_events,
    load_members,
    member_timezone,
    strip_contacts,
)
from starter.preview.journey import Preview, PreviewTouch
from starter.preview.render import report_problems, to_json, to_table
from starter.preview.run import DEFAULT_DAYS, Previewer, find_test_server, preview_text

__all__ = [
    "DEFAULT_DAYS", "DEFAULT_TIMEZONE", "ExampleMember", "Preview", "PreviewError", "PreviewTouch", "Previewer",
    "days_to_shift", "find_test_server", "in_time_order", "load_member_events", "load_members",
    "member_timezone", "preview_text", "report_problems", "shift", "shift_occurrence", "strip_contacts",
    "to_json", "to_table",
]
