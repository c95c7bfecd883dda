//! The full feature phase of a session (RFC 7143 §3.2, §4.2): commands, data transfer, status.
