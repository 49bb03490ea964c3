"""Senders: one adapter per vendor protocol (LINE Messaging API, SMTP, an SMS gateway, a
signed webhook), each behind ``Sender`` (``activities.senders.base``). A sender makes one
network call for one rendered message and says how it ended; it never touches the
database — what was attempted and what came back is the delivery activity's to record.
"""
