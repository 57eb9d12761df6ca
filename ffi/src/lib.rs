//! C ABI of ldctq: thin translation over the core crate (filled in by the C ABI issue).
