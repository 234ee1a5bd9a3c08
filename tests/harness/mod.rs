//! Test harness (to come).
