//! Low-dose CT simulation (being written).
