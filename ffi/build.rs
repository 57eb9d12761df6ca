// The root package's build script: the same link flags, and the soname of libldctq.so.
include!("../build.rs");
