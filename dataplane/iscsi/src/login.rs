//! The login phase of one connection (RFC 7143 §6.3, §11.12, §11.13).
