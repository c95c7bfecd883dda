//! Negotiation of login keys (RFC 7143 §6.2, §13): per-key rules and the negotiation of one login.
