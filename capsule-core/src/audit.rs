//! The audit log: refusals stored append-only in the registry database, chained by BLAKE3.
