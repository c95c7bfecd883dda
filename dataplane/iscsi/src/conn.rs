//! One iSCSI connection: login phase, then full feature phase, as a sans-I/O state machine.
