//! Key=value text segments (RFC 7143 §6): parsing, building and multi-PDU reassembly.
